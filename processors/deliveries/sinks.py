"""Building a connection's sink: open its sealed settings, validate them, set the sink up.

The connector's block of a connection's settings is validated with the connector's own
``config_class``:

- webhook: ``settings["webhook"]`` plus the connection-level ``rate_limit_per_second`` and
  ``max_concurrency`` when set;
- HubSpot and Pipedrive: the connection's settings without its ``webhook`` block (which is for
  the tenant's own endpoint) and ``match_policy`` (which is the service's), with ``base_url``
  from ``QI_HUBSPOT_BASE_URL`` / ``QI_PIPEDRIVE_BASE_URL`` unless the connection sets one. Their
  sinks get the connection's identity resolver.

Invalid stored settings or a secret that no longer opens make the connection unusable
(``PermanentError``), which parks it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from connectors.base import BaseSink, PermanentError, SinkContext
from connectors.registry import get_connector
from processors.identity.repository import IdentityRepository
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import open_settings

__all__ = ["ConnectorSinkFactory"]

_CONNECTION_LEVEL_KEYS = ("rate_limit_per_second", "max_concurrency")


_SERVICE_KEYS = ("webhook", "match_policy")


def _config_block(
    connector: str, settings: dict[str, Any], *, base_url: str | None
) -> dict[str, Any]:
    extra = {k: settings[k] for k in _CONNECTION_LEVEL_KEYS if settings.get(k) is not None}
    if connector == "webhook":
        block = settings.get("webhook")
        if not isinstance(block, dict):
            msg = "connection settings have no 'webhook' block"
            raise PermanentError(msg, partner=connector)
        return {**block, **extra}
    partner = {k: v for k, v in settings.items() if k not in _SERVICE_KEYS and v is not None}
    if base_url is not None:
        partner.setdefault("base_url", base_url)
    return partner


class ConnectorSinkFactory:
    """Creates and sets up sinks for one connector, from stored connections."""

    def __init__(
        self,
        connector: str,
        *,
        box: SecretBox,
        allow_private_networks: bool,
        identity: IdentityRepository | None = None,
        base_url: str | None = None,
    ) -> None:
        self._spec = get_connector(connector)
        self._box = box
        self._allow_private = allow_private_networks
        self._identity = identity
        self._base_url = base_url

    async def __call__(self, connection: ConnectionRecord) -> BaseSink[Any]:
        name = self._spec.name
        try:
            opened = open_settings(
                connection.settings,
                box=self._box,
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
            )
        except SecretDecryptionError as exc:
            msg = "a stored secret of the connection does not open"
            raise PermanentError(msg, partner=name) from exc
        try:
            config = self._spec.config_class.validate_for_connection(
                _config_block(name, opened, base_url=self._base_url),
                allow_private_networks=self._allow_private,
            )
            policy = MatchPolicy.model_validate(opened.get("match_policy") or {})
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:5]
            )
            msg = f"stored connection settings are invalid: {fields}"
            raise PermanentError(msg, partner=name) from exc
        resolver = (
            None
            if self._identity is None or name == "webhook"
            else ConnectionIdentityResolver(
                self._identity,
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
                policy=policy,
            )
        )
        context: SinkContext[Any] = SinkContext(
            tenant_id=connection.tenant_id,
            connection_id=connection.connection_id,
            connector=name,
            config=config,
            allow_private_networks=self._allow_private,
            identity=resolver,
        )
        sink = self._spec.sink_class(context)
        try:
            await sink.setup()
        except BaseException:
            await sink.close()
            raise
        return sink
