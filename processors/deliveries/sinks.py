"""Building a connection's sink: open its sealed settings, validate them, set the sink up.

The connector's block of a connection's settings is validated with the connector's own
``config_class``; for webhooks it is ``settings["webhook"]`` plus the connection-level
``rate_limit_per_second`` and ``max_concurrency`` when set. Invalid stored settings or a
secret that no longer opens make the connection unusable (``PermanentError``), which parks it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from connectors.base import BaseSink, PermanentError, SinkContext
from connectors.registry import get_connector
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.models import ConnectionRecord
from processors.tenants.secret_fields import open_settings

__all__ = ["ConnectorSinkFactory"]

_CONNECTION_LEVEL_KEYS = ("rate_limit_per_second", "max_concurrency")


def _config_block(connector: str, settings: dict[str, Any]) -> dict[str, Any]:
    block = settings.get(connector)
    if not isinstance(block, dict):
        msg = f"connection settings have no {connector!r} block"
        raise PermanentError(msg, partner=connector)
    extra = {k: settings[k] for k in _CONNECTION_LEVEL_KEYS if settings.get(k) is not None}
    return {**block, **extra}


class ConnectorSinkFactory:
    """Creates and sets up sinks for one connector, from stored connections."""

    def __init__(self, connector: str, *, box: SecretBox, allow_private_networks: bool) -> None:
        self._spec = get_connector(connector)
        self._box = box
        self._allow_private = allow_private_networks

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
                _config_block(name, opened), allow_private_networks=self._allow_private
            )
        except ValidationError as exc:
            fields = ", ".join(
                ".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:5]
            )
            msg = f"stored connection settings are invalid: {fields}"
            raise PermanentError(msg, partner=name) from exc
        context: SinkContext[Any] = SinkContext(
            tenant_id=connection.tenant_id,
            connection_id=connection.connection_id,
            connector=name,
            config=config,
            allow_private_networks=self._allow_private,
        )
        sink = self._spec.sink_class(context)
        try:
            await sink.setup()
        except BaseException:
            await sink.close()
            raise
        return sink
