"""Every connector the service can run, declared explicitly (no import-time discovery).

The service (``processors``) learns about connectors from here only: it derives its topics,
API routes and bodies, settings and sink construction from the :class:`ConnectorSpec` of each
registered connector, and never names one. Adding a connector is one new package under
``connectors/`` and one entry in :data:`CONNECTORS` (see the README, "Adding a connector").

A spec must agree with its sink's class attributes (``name``, ``config_class``,
``max_batch_size``, ``default_rate_limit``); that is checked when the spec is built.

Inbound webhooks (``inbound``): a connector that receives partner webhooks names its
:class:`~connectors.base.inbound.InboundAdapter` (verify, then parse into interest highlights;
see :mod:`connectors.base.inbound`), and its connection config carries an ``inbound`` block
(a subclass of :class:`~connectors.base.inbound.InboundSettings`). A connector without an
adapter has no inbound endpoint. Its spec's ``inbound_options`` is that block as the
connection body takes it (secrets optional on a replace, like ``auth``'s); the service stores
it at ``settings["inbound"]``, for the carrier of webhook copies too, whose ``api_options``
are the endpoint block every connection shares.

Tests that need another connector build their spec and run inside :func:`extended`, which
adds it to what :func:`registered` and :func:`get_connector` return (the built-in
:data:`CONNECTORS` stay as they are); nothing else has to change for the service to route,
serve and deliver for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from connectors.base.api import ApiModel, ConnectionOptions, EndpointOptions
from connectors.base.config import ConnectionConfig
from connectors.base.inbound import InboundAdapter
from connectors.base.preview import PreviewAnswer
from connectors.base.ratelimit import RateLimit
from connectors.base.sink import BaseSink
from connectors.hubspot import HubSpotSink
from connectors.hubspot.api import HubSpotInboundIn, HubSpotOptions
from connectors.hubspot.preview import preview_answer as hubspot_preview_answer
from connectors.hubspot.webhooks import HubSpotInboundAdapter
from connectors.pipedrive import PipedriveSink
from connectors.pipedrive.api import PipedriveInboundIn, PipedriveOptions
from connectors.pipedrive.preview import preview_answer as pipedrive_preview_answer
from connectors.pipedrive.webhooks import PipedriveInboundAdapter
from connectors.webhook.api import WebhookEndpointIn, WebhookInboundIn
from connectors.webhook.sink import WebhookSink
from connectors.webhook.webhooks import WebhookInboundAdapter

__all__ = [
    "CONNECTORS",
    "ConnectorSpec",
    "UnknownConnectorError",
    "extended",
    "get_connector",
    "registered",
    "webhook_copy_carrier",
]


class UnknownConnectorError(LookupError):
    """No connector is registered under that name."""


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class ConnectorSpec:
    """What the service needs to know to run one connector.

    - ``name``: the connector's name in paths, topics (``integrations.exports.<name>``, and
      its retry and dead-letter topics), metrics and stored connections;
    - ``sink_class`` and ``config_class``: the sink and the connection settings it validates;
    - ``max_batch_size``: the partner's bulk limit (records per ``write``);
      ``default_rate_limit`` sizes a connection's token bucket when its config sets none;
    - ``title``: how the API names the connector in summaries (default: ``name``);
    - ``api_options``: the connector's part of the connection body (see
      :mod:`connectors.base.api`); its fields but ``auth`` are the connector's options
      (:attr:`option_names`), stored at the top of the connection's settings;
      ``api_body_name`` names the composed body in the OpenAPI document (default:
      ``<Title>ConnectionIn``);
    - ``carries_webhook_copies``: the connector delivers to endpoints tenants name (so
      ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` governs its destinations), its connections'
      settings are their ``webhook`` block, and it delivers the webhook copies of other
      connections (delivery mode ``webhook`` or ``both``); its ``api_options`` is that
      block (an :class:`~connectors.base.api.EndpointOptions`). Exactly one registered
      connector carries them;
    - ``resolves_identities``: its sink links Queast entities to partner objects, so it gets
      the connection's identity resolver and its body takes a ``match_policy``;
    - ``inbound``: the connector's inbound webhook adapter, if it has one, and
      ``inbound_options`` the body's ``inbound`` block (see the module docstring);
    - ``preview_answer``: what the service's preview answers the sink's requests with, in
      the partner's shape (see :mod:`connectors.base.preview`); without it every request is
      answered ``200`` with an empty JSON object.

    Specs compare by identity (the service keeps per-spec state, such as its body model).
    A config class with a ``base_url`` field is pointed at a sandbox by the environment
    variable :attr:`base_url_setting` (``QI_<NAME>_BASE_URL``).
    """

    name: str
    sink_class: type[BaseSink[Any]]
    config_class: type[ConnectionConfig]
    max_batch_size: int
    default_rate_limit: RateLimit | None
    title: str = ""
    api_options: type[ConnectionOptions] = ConnectionOptions
    api_body_name: str = ""
    carries_webhook_copies: bool = False
    resolves_identities: bool = False
    inbound: InboundAdapter[Any] | None = None
    inbound_options: type[ApiModel] | None = None
    preview_answer: PreviewAnswer | None = None

    def __post_init__(self) -> None:
        sink = self.sink_class
        mismatches = [
            attribute
            for attribute, declared in (
                ("name", self.name),
                ("config_class", self.config_class),
                ("max_batch_size", self.max_batch_size),
                ("default_rate_limit", self.default_rate_limit),
            )
            if getattr(sink, attribute) != declared
        ]
        if mismatches:
            msg = f"connector spec {self.name!r} disagrees with {sink.__name__} on {mismatches}"
            raise ValueError(msg)
        if self.max_batch_size < 1:
            msg = "max_batch_size must be at least 1"
            raise ValueError(msg)
        if self.carries_webhook_copies and not issubclass(self.api_options, EndpointOptions):
            msg = "the connector that carries webhook copies takes an EndpointOptions block"
            raise ValueError(msg)
        if "inbound" in self.option_names:
            # Options are stored as dumped, which would write a SecretStr as its mask.
            msg = f"connector spec {self.name!r}: name the inbound block as inbound_options"
            raise ValueError(msg)
        unknown = sorted(self.option_names - set(self.config_class.model_fields))
        if unknown:
            msg = f"connector spec {self.name!r}: options {unknown} are not fields of its config"
            raise ValueError(msg)

    @classmethod
    def of(
        cls,
        sink_class: type[BaseSink[Any]],
        api_options: type[ConnectionOptions],
        *,
        title: str = "",
        api_body_name: str = "",
        carries_webhook_copies: bool = False,
        resolves_identities: bool = False,
        inbound: InboundAdapter[Any] | None = None,
        inbound_options: type[ApiModel] | None = None,
        preview_answer: PreviewAnswer | None = None,
    ) -> ConnectorSpec:
        """The spec of ``sink_class``, taking ``name``, ``config_class``, ``max_batch_size`` and
        ``default_rate_limit`` from the sink's class attributes."""
        return cls(
            name=sink_class.name,
            sink_class=sink_class,
            config_class=sink_class.config_class,
            max_batch_size=sink_class.max_batch_size,
            default_rate_limit=sink_class.default_rate_limit,
            title=title,
            api_options=api_options,
            api_body_name=api_body_name,
            carries_webhook_copies=carries_webhook_copies,
            resolves_identities=resolves_identities,
            inbound=inbound,
            inbound_options=inbound_options,
            preview_answer=preview_answer,
        )

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def body_name(self) -> str:
        """The OpenAPI name of the connection body: ``api_body_name``, else
        ``<title>ConnectionIn`` (``title`` without spaces or dashes, else the name,
        capitalised)."""
        if self.api_body_name:
            return self.api_body_name
        title = self.title.replace(" ", "").replace("-", "") or self.name.capitalize()
        return f"{title}ConnectionIn"

    @property
    def option_names(self) -> frozenset[str]:
        """The connector's options in a body, stored at the top of the settings block."""
        if self.carries_webhook_copies:
            return frozenset()
        return frozenset(self.api_options.model_fields) - {"auth"}

    @property
    def base_url_setting(self) -> str | None:
        """The environment variable that points the connector at a sandbox, if it has one."""
        if "base_url" not in self.config_class.model_fields:
            return None
        return f"QI_{self.name.upper()}_BASE_URL"

    @property
    def endpoint_options(self) -> type[EndpointOptions]:
        """The endpoint block of a carrier of webhook copies."""
        options = self.api_options
        if not issubclass(options, EndpointOptions):
            msg = f"connector {self.name!r} does not carry webhook copies"
            raise TypeError(msg)
        return options


def _by_name(*specs: ConnectorSpec) -> Mapping[str, ConnectorSpec]:
    return MappingProxyType({spec.name: spec for spec in specs})


CONNECTORS: Mapping[str, ConnectorSpec] = _by_name(
    ConnectorSpec.of(
        WebhookSink,
        WebhookEndpointIn,
        title="signed-webhook",
        api_body_name="WebhookConnectionIn",
        carries_webhook_copies=True,
        inbound=WebhookInboundAdapter(),
        inbound_options=WebhookInboundIn,
    ),
    ConnectorSpec.of(
        HubSpotSink,
        HubSpotOptions,
        title="HubSpot",
        resolves_identities=True,
        inbound=HubSpotInboundAdapter(),
        inbound_options=HubSpotInboundIn,
        preview_answer=hubspot_preview_answer,
    ),
    ConnectorSpec.of(
        PipedriveSink,
        PipedriveOptions,
        title="Pipedrive",
        resolves_identities=True,
        inbound=PipedriveInboundAdapter(),
        inbound_options=PipedriveInboundIn,
        preview_answer=pipedrive_preview_answer,
    ),
)
"""The built-in connectors."""

_stack: list[Mapping[str, ConnectorSpec]] = [CONNECTORS]
"""The registries in force, innermost :func:`extended` last."""


def registered() -> Mapping[str, ConnectorSpec]:
    """Every connector the service runs now: :data:`CONNECTORS`, plus any :func:`extended`
    adds."""
    return _stack[-1]


def get_connector(name: str) -> ConnectorSpec:
    """The spec registered under ``name``; raises :class:`UnknownConnectorError`."""
    try:
        return registered()[name]
    except KeyError:
        msg = f"unknown connector {name!r}"
        raise UnknownConnectorError(msg) from None


def webhook_copy_carrier() -> ConnectorSpec:
    """The registered connector that carries webhook copies (``carries_webhook_copies``)."""
    carriers = [spec for spec in registered().values() if spec.carries_webhook_copies]
    if len(carriers) != 1:
        msg = f"exactly one connector must carry webhook copies, found {len(carriers)}"
        raise LookupError(msg)
    return carriers[0]


@contextmanager
def extended(*specs: ConnectorSpec) -> Iterator[Mapping[str, ConnectorSpec]]:
    """Run with ``specs`` registered besides the current connectors (for tests).

    Yields the extended registry; the previous one is back when the block ends. A name that
    is already registered is refused. The registry is process-wide: use it in tests, around
    everything that should see the extra connectors (build the API app inside it).
    """
    current = registered()
    taken = [spec.name for spec in specs if spec.name in current]
    if taken or len({spec.name for spec in specs}) != len(specs):
        msg = f"connector names already registered or repeated: {taken or [s.name for s in specs]}"
        raise ValueError(msg)
    _stack.append(MappingProxyType({**current, **{spec.name: spec for spec in specs}}))
    try:
        yield _stack[-1]
    finally:
        _stack.pop()
