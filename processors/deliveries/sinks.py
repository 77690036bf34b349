"""Building a connection's sink: open its sealed settings, validate them, set the sink up.

What a connector needs comes from its registry spec (:mod:`connectors.registry`); this module
names none. The connector's block of a connection's settings is validated with the spec's
``config_class``:

- the connector that carries webhook copies (``carries_webhook_copies``):
  ``settings["webhook"]`` plus the connection-level ``rate_limit_per_second`` and
  ``max_concurrency`` when set;
- every other connector: the connection's settings without its ``webhook`` block (which is
  for the tenant's own endpoint) and ``match_policy`` (which is the service's), with
  ``base_url`` from the connector's ``QI_<CONNECTOR>_BASE_URL`` (the spec's
  ``base_url_setting``) unless the connection sets one. Sinks of connectors that resolve
  identities (``resolves_identities``) get the connection's identity resolver.

Invalid stored settings or a secret that no longer opens make the connection unusable
(``PermanentError``), which parks it.

Private networks: ``allow_private_networks`` (``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS``) is for
the carrier of webhook copies only, whose destinations tenants name. Every other connector
keeps its own host pin (for example https on the partner's hosts, for ``base_url``, OAuth
``token_url`` and ``api_domain``) whatever that flag says; the pin is relaxed only when the
operator points the connector at a local sandbox, that is when its ``base_url`` setting is
plain HTTP or names a loopback or private host.

OAuth connections (any connector whose ``auth.type`` is ``"oauth"``) with a token store: the
sink starts from the connection's latest renewed grant in the store (access token, its
expiry, the refresh token the partner may have rotated, the ``api_domain`` the partner may
have assigned) when it descends from the credentials stored on the connection, and its
context's ``grant_store`` is that connection's store (see :mod:`processors.oauthgrants`
and :mod:`connectors.base.oauth`): the token source saves every renewal there, and reloads
the latest grant when the partner refuses a refresh, so a sink whose refresh token another
sink of the connection, or the connection's inbound reader (:mod:`processors.inbound.readers`),
has rotated picks up the new one instead of parking the connection.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from connectors.base import BaseSink, Clock, HttpClientFactory, PermanentError, SinkContext
from connectors.registry import ConnectorSpec, get_connector
from processors.identity.repository import IdentityRepository
from processors.identity.resolver import ConnectionIdentityResolver, MatchPolicy
from processors.oauthgrants import ConnectionGrants, OAuthTokenStore, credentials_fingerprint
from processors.partner_blocks import (
    is_sandbox_url,
    opened_settings,
    partner_block,
    resume_block,
)
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.models import ConnectionRecord

__all__ = ["ConnectorSinkFactory"]

_CONNECTION_LEVEL_KEYS = ("rate_limit_per_second", "max_concurrency")


def _config_block(
    spec: ConnectorSpec, settings: dict[str, Any], *, base_url: str | None
) -> dict[str, Any]:
    extra = {k: settings[k] for k in _CONNECTION_LEVEL_KEYS if settings.get(k) is not None}
    if spec.carries_webhook_copies:
        block = settings.get("webhook")
        if not isinstance(block, dict):
            msg = "connection settings have no 'webhook' block"
            raise PermanentError(msg, partner=spec.name)
        return {**block, **extra}
    return partner_block(settings, base_url=base_url)


class ConnectorSinkFactory:
    """Creates and sets up sinks for one connector, from stored connections.

    ``tokens`` keeps OAuth renewals between sinks (see the module docstring); ``clock`` and
    ``http_client_factory`` replace the real ones in every sink's context (tests).
    ``allow_private_networks`` applies to the carrier of webhook copies only; another
    connector's pin is relaxed by a sandbox ``base_url`` alone (see the module docstring).
    """

    def __init__(
        self,
        connector: str,
        *,
        box: SecretBox,
        allow_private_networks: bool,
        identity: IdentityRepository | None = None,
        base_url: str | None = None,
        tokens: OAuthTokenStore | None = None,
        clock: Clock | None = None,
        http_client_factory: HttpClientFactory | None = None,
    ) -> None:
        self._spec = get_connector(connector)
        self._box = box
        self._allow_private = (
            allow_private_networks
            if self._spec.carries_webhook_copies
            else is_sandbox_url(base_url)
        )
        self._identity = identity
        self._base_url = base_url
        self._tokens = tokens
        self._context_overrides: dict[str, Any] = {}
        if clock is not None:
            self._context_overrides["clock"] = clock
        if http_client_factory is not None:
            self._context_overrides["http_client_factory"] = http_client_factory

    async def __call__(self, connection: ConnectionRecord) -> BaseSink[Any]:
        name = self._spec.name
        try:
            opened = opened_settings(connection, self._box)
        except SecretDecryptionError as exc:
            msg = "a stored secret of the connection does not open"
            raise PermanentError(msg, partner=name) from exc
        block = _config_block(self._spec, opened, base_url=self._base_url)
        grants: ConnectionGrants | None = None
        credentials = credentials_fingerprint(block.get("auth"))
        if (
            self._tokens is not None
            and credentials is not None
            and not self._spec.carries_webhook_copies
        ):
            grants = self._tokens.for_connection(
                tenant_id=connection.tenant_id,
                connection_id=connection.connection_id,
                credentials=credentials,
            )
            block = await self._resume(grants, block)
        try:
            config = self._spec.config_class.validate_for_connection(
                block, allow_private_networks=self._allow_private
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
            if self._identity is None or not self._spec.resolves_identities
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
            grant_store=grants,
            **self._context_overrides,
        )
        sink = self._spec.sink_class(context)
        try:
            await sink.setup()
        except BaseException:
            await sink.close()
            raise
        return sink

    async def _resume(self, grants: ConnectionGrants, block: dict[str, Any]) -> dict[str, Any]:
        """``block`` continuing from the connection's stored grant, if it has a usable one."""

        def validate(resumed: dict[str, Any]) -> object:
            return self._spec.config_class.validate_for_connection(
                resumed, allow_private_networks=self._allow_private
            )

        return await resume_block(grants, block, validate)
