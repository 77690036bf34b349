"""Connections and the allowlist: the rules the configuration API enforces.

Called by :mod:`processors.tenants.endpoints` once the caller is authenticated and allowed to
act on the tenant (see :mod:`processors.auth`). Every method raises a
:class:`~processors.errors.ServiceError` to end the request with its status:

- :class:`~processors.errors.Forbidden` (``tenant_not_allowlisted``): a tenant admin saves a
  connection while its tenant is not on the allowlist (platform admins bootstrap and override);
- :class:`~processors.errors.NotFound` (``connection_not_found``): no connection for that
  connector;
- :class:`~processors.errors.ValidationFailed`: the webhook URL or secret is refused by the
  config class of the connector that carries webhook copies, a private address is named while
  private networks are not allowed, a secret is missing (left out with nothing stored to
  keep), or the block of a connection that delivers through its connector (with ``auth``, or
  for a connector without credentials with delivery mode ``api`` or ``both``) is refused by
  the connector's own config class (for example a connection without an option that class
  requires); ``details`` name the body field;
- :class:`~processors.errors.Conflict` (``stored_secret_unreadable``): a kept webhook secret
  cannot be opened (its key left the ring); the caller must send it again.

Saving a connection: one per connector per tenant. A replace keeps ``connection_id``,
``created_at`` and the mapping policy version; secrets left out of the body are carried over
sealed, as they are (they stay bound to the same tenant, connection and field). New secrets
are sealed with :func:`~processors.tenants.secret_fields.seal_settings` before they are stored.

Stored ``settings`` (secret fields sealed; ``?``: only when given)::

    carrier of webhook copies: {"webhook": {"url", "secret"}, "rate_limit_per_second"?,
                                "max_concurrency"?}
    every other connector:     {"auth"?: {"type", ...the auth kind's fields},
                                <the connector's options>?,
                                "match_policy"?: {"company_strategies"?, "person_strategies"?,
                                                  "auto_link_threshold"?, "ambiguity_margin"?},
                                "webhook"?: {"url", "secret"}, "rate_limit_per_second"?,
                                "max_concurrency"?}
    either, when its connector takes one: "inbound"?: {the inbound block's fields}

The ``auth`` block is what the body's auth kind makes of itself
(:meth:`connectors.base.api.AuthInput.settings`), with each secret either new or kept from
the stored block of the same ``type``. Options sit at the top of the block under the names
of the connector's config class, so the sink factory (:mod:`processors.deliveries.sinks`)
hands everything but ``webhook`` and ``match_policy`` to that class unchanged, and
``match_policy`` to :class:`~processors.identity.resolver.MatchPolicy`. Only what the body
gives is stored (the defaults stay the connector's), and a replace stores exactly the new
body's options.

Delivery health: with a :class:`~processors.tenants.health.ConnectionHealthView`, the service
reports each connection's delivery ``state`` (:meth:`ConnectionService.status`), and saving or
deleting a connection forgets the health and failing-breaker of its destinations, so a save
re-enables a ``disabled`` or ``parked`` connection and lets a ``failing`` one send at once.

The ``inbound`` block is stored as given, each secret new or kept from the stored ``inbound``
block (:meth:`_SettingsBuilder.inbound`); its model checks a new secret's format.

Logs (``connection.saved``, ``connection.deleted``, ``allowlist.changed``) carry ids and the
actor's ``sub`` only.
"""

from __future__ import annotations

import ipaddress
import logging
from datetime import UTC, datetime
from typing import Any, Final, get_args

from pydantic import SecretStr, ValidationError

from connectors.base.api import ApiModel, AuthInput, EndpointOptions
from connectors.registry import ConnectorSpec, get_connector, webhook_copy_carrier
from processors.auth.principal import Principal
from processors.errors import Conflict, ErrorDetail, Forbidden, NotFound, ValidationFailed, found
from processors.secrets import SecretBox, SecretDecryptionError
from processors.tenants.health import ConnectionHealthView, ConnectionStatus, connection_status
from processors.tenants.models import (
    SERVICE_KEYS,
    ConnectionRecord,
    Connector,
    DeliveryMode,
    new_connection_id,
)
from processors.tenants.repository import ConnectionRepository
from processors.tenants.schemas import ConnectionBody, connection_body
from processors.tenants.secret_fields import SEALED_PREFIX, seal_settings

__all__ = ["ConnectionService"]

_log = logging.getLogger(__name__)

_LOCAL_HOST_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})


def _is_private_host(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name in _LOCAL_HOST_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _is_secret(annotation: object) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(argument) for argument in get_args(annotation))


class _SettingsBuilder:
    """Builds one connection's ``settings`` block from a request body and the stored block.

    New secrets go in as plaintext (sealed later); left-out secrets are taken over sealed from
    the stored block; a secret neither sent nor stored is collected as a missing field.
    """

    def __init__(
        self,
        stored: dict[str, Any],
        *,
        box: SecretBox,
        tenant_id: str,
        connection_id: str,
        allow_private_networks: bool,
    ) -> None:
        self._stored = stored
        self._box = box
        self._tenant_id = tenant_id
        self._connection_id = connection_id
        self._allow_private_networks = allow_private_networks
        self.missing: list[ErrorDetail] = []

    def secret(
        self, value: SecretStr | None, stored_block: object, field: str, loc: tuple[str, ...]
    ) -> str:
        if value is not None:
            return value.get_secret_value()
        if isinstance(stored_block, dict):
            kept = stored_block.get(field)
            if isinstance(kept, str) and kept.startswith(SEALED_PREFIX):
                return kept
        self.missing.append({"loc": ["body", *loc, field], "msg": "Field required"})
        return ""

    def webhook(self, endpoint: EndpointOptions) -> dict[str, Any]:
        stored = self._stored.get("webhook")
        secret = self.secret(endpoint.secret, stored, "secret", ("webhook",))
        if not secret:
            return {"url": endpoint.url, "secret": secret}
        plain = secret
        if secret.startswith(SEALED_PREFIX):
            try:
                plain = self._box.decrypt(
                    secret,
                    tenant_id=self._tenant_id,
                    connection_id=self._connection_id,
                    purpose="webhook.secret",
                )
            except SecretDecryptionError:
                raise Conflict(
                    "the stored webhook secret cannot be opened; send it again",
                    code="stored_secret_unreadable",
                ) from None
        try:
            config = webhook_copy_carrier().config_class.validate_for_connection(
                {"url": endpoint.url, "secret": plain},
                allow_private_networks=self._allow_private_networks,
            )
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(exc, loc_prefix=("body", "webhook")) from None
        url = config.model_dump(include={"url"})["url"]  # the carrier's validated HttpUrl
        if not self._allow_private_networks and _is_private_host(url.host or ""):
            raise ValidationFailed(
                details=[
                    {
                        "loc": ["body", "webhook", "url"],
                        "msg": "webhook URL must not name a private, loopback or local address",
                    }
                ]
            )
        return {"url": str(url), "secret": secret}

    def auth(self, auth: AuthInput) -> dict[str, Any]:
        """The ``auth`` block of ``auth``: new secrets, or those kept from the same kind."""
        stored = self._same_type_auth(auth.type)
        return auth.settings(lambda value, field: self.secret(value, stored, field, ("auth",)))

    def inbound(self, block: ApiModel) -> dict[str, Any]:
        """The ``inbound`` block: its fields given, each secret new or kept from the stored
        block."""
        stored = self._stored.get("inbound")
        settings = block.model_dump(mode="json", exclude_none=True)
        for name, field in type(block).model_fields.items():
            value = getattr(block, name)
            if isinstance(value, SecretStr) or (value is None and _is_secret(field.annotation)):
                settings[name] = self.secret(value, stored, name, ("inbound",))
        return settings

    def _same_type_auth(self, auth_type: str) -> dict[str, Any] | None:
        stored = self._stored.get("auth")
        if isinstance(stored, dict) and stored.get("type") == auth_type:
            return stored
        return None


class ConnectionService:
    """The allowlist and the connections of every tenant."""

    def __init__(
        self,
        repository: ConnectionRepository,
        *,
        box: SecretBox,
        allow_private_networks: bool = False,
        health: ConnectionHealthView | None = None,
    ) -> None:
        self._repository = repository
        self._box = box
        self._allow_private_networks = allow_private_networks
        self._health = health

    async def set_allowlisted(self, tenant_id: str, allowlisted: bool, *, actor: Principal) -> None:
        """Put the tenant on the allowlist or take it off (idempotent)."""
        if allowlisted:
            await self._repository.allow(tenant_id)
        else:
            await self._repository.disallow(tenant_id)
        _log.info(
            "allowlist.changed",
            extra={"tenant_id": tenant_id, "allowlisted": allowlisted, "actor_sub": actor.sub},
        )

    async def is_allowlisted(self, tenant_id: str) -> bool:
        return await self._repository.is_allowed(tenant_id)

    async def list_connections(self, tenant_id: str) -> list[ConnectionRecord]:
        return await self._repository.list(tenant_id)

    async def status(self, connection: ConnectionRecord) -> ConnectionStatus:
        """The connection's delivery state (``enabled`` without a health view, unless the
        tenant disabled it); see :mod:`processors.tenants.health`."""
        if self._health is None:
            return connection_status(connection, [])
        return await self._health.status(connection)

    async def get_connection(self, tenant_id: str, connector: Connector) -> ConnectionRecord:
        """The tenant's connection for ``connector``; raises :class:`NotFound` if none."""
        connection = await self._repository.get(tenant_id, connector)
        return found(connection, "no connection for this connector", code="connection_not_found")

    async def delete_connection(
        self, tenant_id: str, connector: Connector, *, actor: Principal
    ) -> None:
        """Remove the connection and every key kept for it (its sealed OAuth grant, identity
        links and delivery state: see :mod:`processors.tenants.repository`); raises
        :class:`NotFound` if there is none."""
        connection = await self.get_connection(tenant_id, connector)
        if not await self._repository.delete(tenant_id, connector):
            raise NotFound("no connection for this connector", code="connection_not_found")
        forgotten = await self._repository.forget_connection(connection.connection_id)
        await self._changed("connection.deleted", connection, actor, keys_deleted=forgotten)

    async def save_connection(
        self, tenant_id: str, connector: Connector, body: ConnectionBody, *, actor: Principal
    ) -> tuple[ConnectionRecord, bool]:
        """Create or replace the tenant's connection; returns it and whether it was created.

        Raises:
            Forbidden: a tenant admin's tenant is not on the allowlist.
            ValidationFailed: see the module docstring.
            Conflict: a kept webhook secret does not open.
        """
        if not actor.is_platform_admin and not await self._repository.is_allowed(tenant_id):
            raise Forbidden(
                "this tenant is not allowed to use integrations", code="tenant_not_allowlisted"
            )
        existing = await self._repository.get(tenant_id, connector)
        connection_id = existing.connection_id if existing else new_connection_id()
        builder = _SettingsBuilder(
            existing.settings if existing else {},
            box=self._box,
            tenant_id=tenant_id,
            connection_id=connection_id,
            allow_private_networks=self._allow_private_networks,
        )
        spec = get_connector(connector)
        if not isinstance(body, connection_body(connector)):
            msg = f"body {type(body).__name__} does not belong to connector {connector}"
            raise TypeError(msg)
        block = self._settings_block(spec, body, builder)
        if builder.missing:
            raise ValidationFailed(details=builder.missing)
        self._check_partner_block(spec, body, block)
        now = datetime.now(UTC)
        record = ConnectionRecord(
            tenant_id=tenant_id,
            connector=connector,
            connection_id=connection_id,
            enabled=body.enabled,
            delivery_mode=body.delivery_mode,
            event_types=dict(body.event_types),
            export_non_strict_signals=body.export_non_strict_signals,
            mapping_policy_version=existing.mapping_policy_version if existing else 1,
            settings=seal_settings(
                block, box=self._box, tenant_id=tenant_id, connection_id=connection_id
            ),
            created_at=existing.created_at if existing else now,
            updated_at=now,
        )
        await self._repository.put(record)
        await self._changed("connection.saved", record, actor, is_new=existing is None)
        return record, existing is None

    async def _changed(
        self, event: str, connection: ConnectionRecord, actor: Principal, **facts: object
    ) -> None:
        """After a connection was saved or deleted: forget its delivery health (a failing or
        parked state was about the old configuration) and log ``event``."""
        if self._health is not None:
            await self._health.forget(connection)
        _log.info(
            event,
            extra={
                "tenant_id": connection.tenant_id,
                "connector": connection.connector.value,
                "connection_id": connection.connection_id,
                **facts,
                "actor_sub": actor.sub,
            },
        )

    def _check_partner_block(
        self, spec: ConnectorSpec, body: ConnectionBody, block: dict[str, Any]
    ) -> None:
        """Validate a block that will reach the connector's sink, as the sink will.

        Connections that do not deliver through their connector are not checked: their options
        are stored for later and checked when an auth block comes. That is a connection
        without ``auth`` when the connector takes one, else one whose delivery mode is
        ``webhook``; the carrier of webhook copies is checked by :meth:`_SettingsBuilder.webhook`.
        """
        if spec.carries_webhook_copies:
            return
        if "auth" in spec.api_options.model_fields:
            if "auth" not in block:
                return
        elif body.delivery_mode is DeliveryMode.WEBHOOK:
            return
        partner = {k: v for k, v in block.items() if k not in SERVICE_KEYS}
        try:
            spec.config_class.validate_for_connection(
                partner, allow_private_networks=self._allow_private_networks
            )
        except ValidationError as exc:
            raise ValidationFailed.from_pydantic(exc, loc_prefix=("body",)) from None

    @staticmethod
    def _settings_block(
        spec: ConnectorSpec, body: ConnectionBody, builder: _SettingsBuilder
    ) -> dict[str, Any]:
        block: dict[str, Any] = {}
        auth = body.auth_input
        if auth is not None:
            block["auth"] = builder.auth(auth)
        block.update(
            body.model_dump(mode="json", include=set(spec.option_names), exclude_none=True)
        )
        match_policy = body.match_policy_settings()
        if match_policy is not None:
            block["match_policy"] = match_policy
        if body.webhook is not None:
            block["webhook"] = builder.webhook(body.webhook)
        inbound = body.inbound_block()
        if inbound is not None:
            block["inbound"] = builder.inbound(inbound)
        if body.rate_limit_per_second is not None:
            block["rate_limit_per_second"] = body.rate_limit_per_second
        if body.max_concurrency is not None:
            block["max_concurrency"] = body.max_concurrency
        return block
