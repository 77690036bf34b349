"""Settings of every component, read from the environment once per process.

One pydantic-settings class per component, each with its own ``QI_<COMPONENT>_`` prefix, composed
in :class:`Settings`. All are frozen: a process reads its configuration at start and never changes
it. Credentials are :class:`~pydantic.SecretStr` so they never show in reprs or logs.

Variables (defaults in brackets):

- ``QI_ENV`` [production]: ``development`` lets the worker and the API start with the published
  development key and short HS256 secrets (see :mod:`processors.startup`)
- ``QI_KAFKA_BOOTSTRAP_SERVERS`` [127.0.0.1:9092], ``QI_KAFKA_CLIENT_ID`` [queast-integrations]
- ``QI_KAFKA_SECURITY_PROTOCOL`` [PLAINTEXT], ``QI_KAFKA_SASL_MECHANISM`` /
  ``QI_KAFKA_SASL_USERNAME`` / ``QI_KAFKA_SASL_PASSWORD``, ``QI_KAFKA_SSL_CAFILE`` /
  ``QI_KAFKA_SSL_CERTFILE`` / ``QI_KAFKA_SSL_KEYFILE`` / ``QI_KAFKA_SSL_KEY_PASSWORD``: see
  :class:`KafkaSettings`
- ``QI_REDIS_URL`` [redis://127.0.0.1:6379/0], ``QI_REDIS_KEY_PREFIX`` [qi:],
  ``QI_REDIS_CONNECT_TIMEOUT_SECONDS`` [2], ``QI_REDIS_SOCKET_TIMEOUT_SECONDS`` [5],
  ``QI_REDIS_HEALTH_CHECK_INTERVAL_SECONDS`` [15], ``QI_REDIS_RETRIES`` [3],
  ``QI_REDIS_RETRY_BACKOFF_CAP_SECONDS`` [1] (see :mod:`processors.redis_client`)
- ``QI_TOPIC_PREFIX`` [empty], ``QI_TOPIC_PARTITIONS`` [8], ``QI_TOPIC_REPLICATION_FACTOR`` [1],
  ``QI_TOPIC_MIN_INSYNC_REPLICAS`` [the broker's default], ``QI_TOPIC_RETENTION_<FAMILY>_DAYS``
  [exports 30, delivery records 30, dlq 14, match review 30, others the broker's]: see
  :class:`TopicSettings`
- ``QI_ROUTING_MAX_EVENT_BYTES`` [524288], ``QI_ROUTING_BATCH_SIZE`` [500],
  ``QI_ROUTING_BATCH_WITHIN_SECONDS`` [0.2], ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` [true]
- ``QI_SECRETS_KEYS`` [the published development key], ``QI_SECRETS_ACTIVE_KEY_ID`` [the last
  key]; see :mod:`processors.secrets.keyring`
- ``QI_AUTH_JWT_SECRET`` / ``QI_AUTH_JWKS_URL`` / ``QI_AUTH_ISSUER`` / ``QI_AUTH_AUDIENCE``
  (issuer and audience are required with a JWKS URL)
- ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` [false]
- ``QI_LOG_THIRD_PARTY_LEVEL`` [warning]
- ``QI_METRICS_LAG_INTERVAL_SECONDS`` [15]: see :mod:`processors.consumerlag`
- ``QI_DELIVERY_*``: see :class:`DeliverySettings`
- ``QI_<CONNECTOR>_BASE_URL`` [the partner's own]: for each registered connector whose config
  has a ``base_url`` (the connector's name upper-cased); see :class:`PartnerSettings`
- ``QI_WORKER_APP_ID`` [queast-integrations], ``QI_WORKER_DELIVERY_CONNECTORS`` [every
  registered connector], ``QI_WORKER_DATADIR`` [``<app_id>-data`` in the system's temporary
  directory], ``QI_METRICS_PORT`` [9101], ``QI_METRICS_HOST`` [127.0.0.1]
- ``QI_PUBLIC_BASE_URL``, ``QI_TRUSTED_PROXIES`` [none], ``QI_INBOUND_*``: partner webhooks, see
  :class:`IntakeSettings`
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.registry import registered
from processors.secrets import SecretsSettings
from processors.topics import DEFAULT_RETENTION_DAYS, TopicFamily

__all__ = [
    "AuthSettings",
    "DeliverySettings",
    "IntakeSettings",
    "KafkaSettings",
    "LogSettings",
    "MetricsSettings",
    "PartnerSettings",
    "RedisSettings",
    "ReplaySettings",
    "RoutingSettings",
    "RuntimeSettings",
    "Settings",
    "TopicSettings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
]


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(BaseSettings):
    """Where the Kafka cluster is, how clients identify themselves and authenticate.

    Security (every client the project creates gets the same: the Faust worker's, and the
    confluent-kafka admin, producers and consumers of :mod:`processors.kafka`):

    - ``security_protocol``: ``PLAINTEXT`` (default), ``SSL``, ``SASL_PLAINTEXT``, ``SASL_SSL``;
    - ``sasl_mechanism`` (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``), ``sasl_username``
      and ``sasl_password``: required with a ``SASL_*`` protocol, refused without one;
    - ``ssl_cafile`` (the brokers' CA; the system's store when unset), ``ssl_certfile`` and
      ``ssl_keyfile`` (client certificate, both or neither) and ``ssl_key_password``: only
      with ``SSL`` or ``SASL_SSL``; the files must exist.

    Passwords are ``SecretStr``: the settings' repr and logs never show them.
    """

    model_config = SettingsConfigDict(
        env_prefix="QI_KAFKA_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "queast-integrations"
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: FilePath | None = None
    ssl_certfile: FilePath | None = None
    ssl_keyfile: FilePath | None = None
    ssl_key_password: SecretStr | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @model_validator(mode="after")
    def _consistent_security(self) -> KafkaSettings:
        sasl = {
            "QI_KAFKA_SASL_MECHANISM": self.sasl_mechanism,
            "QI_KAFKA_SASL_USERNAME": self.sasl_username,
            "QI_KAFKA_SASL_PASSWORD": self.sasl_password,
        }
        tls = {
            "QI_KAFKA_SSL_CAFILE": self.ssl_cafile,
            "QI_KAFKA_SSL_CERTFILE": self.ssl_certfile,
            "QI_KAFKA_SSL_KEYFILE": self.ssl_keyfile,
            "QI_KAFKA_SSL_KEY_PASSWORD": self.ssl_key_password,
        }
        protocol = self.security_protocol
        if self.uses_sasl:
            missing = [name for name, value in sasl.items() if not value]
            if missing:
                msg = f"{', '.join(missing)} required with QI_KAFKA_SECURITY_PROTOCOL={protocol}"
                raise ValueError(msg)
        elif given := [name for name, value in sasl.items() if value is not None]:
            msg = f"{', '.join(given)} only apply to the SASL_* security protocols"
            raise ValueError(msg)
        if not self.uses_ssl and (given := [n for n, value in tls.items() if value is not None]):
            msg = f"{', '.join(given)} only apply to the SSL and SASL_SSL security protocols"
            raise ValueError(msg)
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            msg = "QI_KAFKA_SSL_CERTFILE and QI_KAFKA_SSL_KEYFILE go together"
            raise ValueError(msg)
        return self


class RedisSettings(BaseSettings):
    """The Redis that holds working state and query indexes (AOF persistence expected)."""

    model_config = SettingsConfigDict(env_prefix="QI_REDIS_", frozen=True, extra="ignore")

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="qi:", pattern=r"^[A-Za-z0-9:._-]*$", max_length=100)
    connect_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    socket_timeout_seconds: float = Field(default=5.0, gt=0, le=300)
    health_check_interval_seconds: int = Field(default=15, ge=0, le=3600)
    retries: int = Field(default=3, ge=0, le=20)
    retry_backoff_cap_seconds: float = Field(default=1.0, gt=0, le=30)


class TopicSettings(BaseSettings):
    """Topic naming, sizing and retention. Every topic of a family has the same partition count.

    ``retention_<family>_days`` (``QI_TOPIC_RETENTION_EXPORTS_DAYS``, ``..._DELIVERY_RECORDS_``,
    ``..._DLQ_``, ``..._RETRY_``, ``..._DOMAIN_EVENTS_``, ``..._INBOUND_``, ``..._MATCH_REVIEW_``,
    ``..._BOOKMARKS_DAYS``): how long each family keeps its records, ``-1`` forever, ``0`` the
    broker's default. Defaults and why: :mod:`processors.topics` (exports 30, delivery records
    30, dead letters 14, match review 30, the others the broker's). ``topics ensure`` creates
    topics with them and brings existing topics' ``retention.ms`` in line.
    """

    model_config = SettingsConfigDict(env_prefix="QI_TOPIC_", frozen=True, extra="ignore")

    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    min_insync_replicas: int | None = Field(default=None, ge=1, le=16)
    """``min.insync.replicas`` of new topics; unset: the broker's default. With the producers'
    ``acks=all`` a write is acknowledged once this many replicas have it. Production:
    replication factor 3, min.insync.replicas 2."""
    retention_domain_events_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.DOMAIN_EVENTS], ge=-1, le=36_500
    )
    retention_exports_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.EXPORTS], ge=-1, le=36_500
    )
    retention_retry_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.RETRY], ge=-1, le=36_500
    )
    retention_dlq_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.DLQ], ge=-1, le=36_500
    )
    retention_delivery_records_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.DELIVERY_RECORDS], ge=-1, le=36_500
    )
    retention_inbound_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.INBOUND], ge=-1, le=36_500
    )
    retention_match_review_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.MATCH_REVIEW], ge=-1, le=36_500
    )
    retention_bookmarks_days: int = Field(
        default=DEFAULT_RETENTION_DAYS[TopicFamily.BOOKMARKS], ge=-1, le=36_500
    )

    @model_validator(mode="after")
    def _insync_within_replication(self) -> TopicSettings:
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            msg = "min_insync_replicas cannot exceed replication_factor"
            raise ValueError(msg)
        return self

    def retention_days(self) -> dict[TopicFamily, int]:
        """Each family's retention in days (``-1`` forever, ``0`` the broker's default)."""
        return {
            TopicFamily.DOMAIN_EVENTS: self.retention_domain_events_days,
            TopicFamily.EXPORTS: self.retention_exports_days,
            TopicFamily.RETRY: self.retention_retry_days,
            TopicFamily.DLQ: self.retention_dlq_days,
            TopicFamily.DELIVERY_RECORDS: self.retention_delivery_records_days,
            TopicFamily.INBOUND: self.retention_inbound_days,
            TopicFamily.MATCH_REVIEW: self.retention_match_review_days,
            TopicFamily.BOOKMARKS: self.retention_bookmarks_days,
        }


class RoutingSettings(BaseSettings):
    """The routing agent: input limits, batching, and what dead-letter records carry."""

    model_config = SettingsConfigDict(env_prefix="QI_ROUTING_", frozen=True, extra="ignore")

    max_event_bytes: int = Field(default=512 * 1024, ge=1024)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_within_seconds: float = Field(default=0.2, gt=0, le=10)
    dlq_include_payload: bool = True
    dlq_max_payload_bytes: int = Field(default=512 * 1024, ge=0, le=1_000_000)
    """The most key and value bytes a dead letter copies; a larger record's are left out.

    Well under Kafka's default 1 MB message limit, so a dead letter is never too large to produce.
    """


class WorkerSettings(BaseSettings):
    """The Faust worker process."""

    model_config = SettingsConfigDict(env_prefix="QI_WORKER_", frozen=True, extra="ignore")

    app_id: str = Field(default="queast-integrations", pattern=r"^[A-Za-z0-9._-]+$")
    delivery_connectors: tuple[str, ...] = Field(default_factory=lambda: tuple(registered()))
    """Connectors this worker delivers for, every registered one unless told otherwise
    (``QI_WORKER_DELIVERY_CONNECTORS='["webhook"]'``: that one only)."""
    gc_freeze_after_seconds: float = Field(default=5.0, ge=0, le=3600)
    """Seconds after start when long-lived objects leave full GC collections (0: never)."""
    datadir: str | None = Field(default=None, min_length=1, pattern=r"^[^{}]+$")
    """Faust's data directory; unset: ``<app_id>-data`` in the system's temporary directory,
    never the working directory (which may be read-only). The worker keeps no tables there (its
    store is in memory) but Faust creates it at start; its parent must exist. No braces: Faust
    would expand them as a format string."""

    @property
    def data_dir(self) -> Path:
        """:attr:`datadir`, or its default under the system's temporary directory."""
        if self.datadir is not None:
            return Path(self.datadir)
        return Path(tempfile.gettempdir()) / f"{self.app_id}-data"


class MetricsSettings(BaseSettings):
    """The Prometheus endpoint of the worker (the API serves its own ``/metrics``)."""

    model_config = SettingsConfigDict(env_prefix="QI_METRICS_", frozen=True, extra="ignore")

    port: int = Field(default=9101, ge=0, le=65535)
    host: str = "127.0.0.1"
    lag_interval_seconds: float = Field(default=15.0, ge=1, le=3600)
    """How often the worker samples its consumer group's lag (``qi_consumer_lag``)."""


class AuthSettings(BaseSettings):
    """Bearer JWTs of the API: HS256 with a shared secret (local use) or RS256 from a JWKS URL."""

    model_config = SettingsConfigDict(
        env_prefix="QI_AUTH_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = Field(default=30, ge=0, le=300)

    @model_validator(mode="after")
    def _jwks_needs_issuer_and_audience(self) -> AuthSettings:
        """Tokens from an identity provider are only ours if they name our issuer and audience."""
        if self.jwks_url and not (self.issuer and self.audience):
            msg = "QI_AUTH_ISSUER and QI_AUTH_AUDIENCE are required when QI_AUTH_JWKS_URL is set"
            raise ValueError(msg)
        return self


class WebhookSettings(BaseSettings):
    """Outbound webhooks. Private, loopback and link-local destinations are refused unless
    ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is true (tests and the local demo set it; the worker
    and the API log ``settings.webhook.private_networks_allowed`` at start when it is). It
    applies to tenants' webhook endpoints only, never to the partner connectors' host pins."""

    model_config = SettingsConfigDict(env_prefix="QI_WEBHOOK_", frozen=True, extra="ignore")

    allow_private_networks: bool = False


class LogSettings(BaseSettings):
    """Logging: the level third-party libraries (httpx, aiohttp, uvicorn, ...) log at; see
    :mod:`processors.logs`. Their INFO lines carry full URLs, so the default is WARNING."""

    model_config = SettingsConfigDict(env_prefix="QI_LOG_", frozen=True, extra="ignore")

    third_party_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"


def _base_urls_from_environment() -> dict[str, str]:
    found: dict[str, str] = {}
    for name, spec in registered().items():
        variable = spec.base_url_setting
        if variable is not None and os.environ.get(variable):
            found[name] = os.environ[variable]
    return found


class PartnerSettings(BaseModel):
    """Partner API base URLs, for pointing connectors at sandboxes (a connection's own
    ``base_url`` wins): ``QI_<CONNECTOR>_BASE_URL`` for each registered connector whose config
    class has a ``base_url`` (the spec's ``base_url_setting``), read when the settings are.
    The variables are named by the registry, so this is a plain model read by hand, not a
    settings class with a prefix of its own."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_urls: dict[str, str] = Field(default_factory=_base_urls_from_environment)

    def base_url(self, connector: str) -> str | None:
        """The base URL the environment sets for ``connector``, if any."""
        return self.base_urls.get(connector)


class DeliverySettings(BaseSettings):
    """Delivery policy, per worker (Kafka Connect's ``errors.*`` vocabulary where it fits).

    ``retry_max_attempts`` and ``retry_timeout_seconds`` form the retry budget (whichever is
    spent first); delays grow exponentially from ``retry_base_delay_seconds`` up to
    ``retry_max_delay_seconds`` with full jitter, and never undercut a partner's Retry-After.
    ``lane_capacity`` bounds the records waiting per connection (split evenly over its
    ``lane_concurrency`` queues, each holding at least ``lane_batches`` of the connector's
    full batches); past it, records are deferred to the retry topic.
    ``dedupe_ttl_seconds`` is how long a delivered idempotency key is remembered.
    ``retry_hold_seconds`` is the longest a retry record waits in memory (its offset
    uncommitted) before it is re-queued on the retry topic (see ``processors.agents.deliver``).
    ``claim_lease_seconds`` is the lease of a send claim (renewed every third of it while a
    batch is with the partner): how long a worker that died holding claims delays others.
    ``breaker_*`` is the failing-destination breaker (``processors.deliveries.breaker``): a
    destination trips after ``breaker_threshold`` consecutive transiently failed batches or
    ``breaker_window_seconds`` of nothing but transient failures, is probed every
    ``breaker_probe_initial_seconds`` doubling to ``breaker_probe_max_seconds``, and is
    disabled after ``breaker_disable_after_seconds`` of failing.
    """

    model_config = SettingsConfigDict(env_prefix="QI_DELIVERY_", frozen=True, extra="ignore")

    retry_max_attempts: int = Field(default=8, ge=1, le=100)
    retry_timeout_seconds: float = Field(default=27 * 3600, gt=0)
    retry_base_delay_seconds: float = Field(default=5.0, gt=0)
    retry_max_delay_seconds: float = Field(default=10 * 3600, gt=0)
    dlq_include_payload: bool = True
    """Whether this worker's dead letters keep the contract. Off, they hold the envelope and
    the error only, and ``dlq redrive`` reads the contract back from the export (see
    :mod:`processors.operations.deadletters`)."""
    lane_capacity: int = Field(default=200, ge=1, le=100_000)
    lane_concurrency: int = Field(default=4, ge=1, le=256)
    lane_batches: int = Field(default=10, ge=1, le=1000)
    defer_min_seconds: float = Field(default=1.0, gt=0)
    defer_max_seconds: float = Field(default=60.0, gt=0)
    park_recheck_seconds: float = Field(default=30.0, gt=0)
    max_rate_limit_wait_seconds: float = Field(default=1.0, ge=0)
    global_rate_per_second: float = Field(default=2000.0, gt=0)
    dedupe_ttl_seconds: int = Field(default=30 * 86400, ge=60)
    records_retention_seconds: int = Field(default=30 * 86400, ge=60)
    retry_buffer_max: int = Field(default=100_000, ge=100)
    retry_hold_seconds: float = Field(default=300.0, gt=0, le=3600)
    claim_lease_seconds: float = Field(default=30.0, ge=1, le=3600)
    breaker_threshold: int = Field(default=20, ge=1, le=100_000)
    breaker_window_seconds: float = Field(default=15 * 60, gt=0)
    breaker_probe_initial_seconds: float = Field(default=30.0, gt=0)
    breaker_probe_max_seconds: float = Field(default=15 * 60, gt=0)
    breaker_disable_after_seconds: float = Field(default=3 * 86400, gt=0)


class ReplaySettings(BaseSettings):
    """Bounds of operator replays (:mod:`processors.operations.replay`): the longest window
    (``max_window_seconds``), the window when ``since`` is not given (``default_window_seconds``
    before ``until``), runs a tenant may start through the API per hour (``runs_per_hour``),
    how long a run's record and counters are kept (``run_ttl_seconds``), after how long without
    a heartbeat a run counts as failed (``heartbeat_stale_seconds``), and the Kafka timeout of
    each history read (``kafka_timeout_seconds``)."""

    model_config = SettingsConfigDict(env_prefix="QI_REPLAY_", frozen=True, extra="ignore")

    max_window_seconds: int = Field(default=31 * 86400, ge=60)
    default_window_seconds: int = Field(default=3600, ge=60)
    runs_per_hour: int = Field(default=10, ge=1, le=10_000)
    run_ttl_seconds: int = Field(default=7 * 86400, ge=3600)
    heartbeat_stale_seconds: float = Field(default=60.0, ge=5)
    kafka_timeout_seconds: float = Field(default=10.0, gt=0, le=300)


class IntakeSettings(BaseSettings):
    """Partner webhooks received by the API (``POST /webhooks/{connector}/{tenant_id}``, see
    :mod:`processors.inbound.intake`).

    - ``QI_PUBLIC_BASE_URL``: the scheme, host (and any path prefix a proxy strips) partners
      call, for example ``https://hooks.example.com``; the URL handed to a connector's verifier
      is it plus the request's path and query as received (a partner may sign the full URI). Unset:
      the URL the API itself received (right only without a proxy in front).
    - ``QI_TRUSTED_PROXIES``: a JSON list of the networks of the proxies whose
      ``X-Forwarded-For`` the IP allowlists believe (``'["10.0.0.0/8"]'``); none by default,
      and then the client address is the connection's peer.
    - ``QI_INBOUND_MAX_BODY_BYTES`` [262144]: larger bodies are refused 413 (a partner's batch of
      100 events is about 50 KiB).
    - ``QI_INBOUND_DEDUPE_TTL_SECONDS`` [259200, 72 h]: how long a partner event id is
      remembered; longer than the partners' retry windows (the longest is 24 h).
    - ``QI_INBOUND_PRODUCE_TIMEOUT_SECONDS`` [5]: the longest a request waits for Kafka to
      acknowledge its events before it is answered 503 (the partner retries).
    """

    model_config = SettingsConfigDict(env_prefix="QI_", frozen=True, extra="ignore")

    public_base_url: str | None = Field(default=None, max_length=300)
    trusted_proxies: tuple[IPvAnyNetwork, ...] = Field(default=(), max_length=100)
    inbound_max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=8 * 1024 * 1024)
    inbound_dedupe_ttl_seconds: int = Field(default=72 * 3600, ge=3600, le=90 * 86400)
    inbound_produce_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        scheme, _, rest = url.partition("://")
        if scheme.lower() not in ("http", "https") or not rest or any(c in rest for c in "?#"):
            msg = "QI_PUBLIC_BASE_URL must be an http(s) URL without a query or fragment"
            raise ValueError(msg)
        return url


class RuntimeSettings(BaseSettings):
    """Where the process runs: ``QI_ENV=development`` relaxes the start-up checks of
    :mod:`processors.startup` (the published development key, short HS256 secrets). Any other
    value, or none, is treated as production."""

    model_config = SettingsConfigDict(env_prefix="QI_", frozen=True, extra="ignore")

    env: str = "production"

    @property
    def is_development(self) -> bool:
        return self.env.strip().lower() == "development"


class Settings(BaseSettings):
    """The root: one instance per process, composed of the component settings."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    secrets: SecretsSettings = Field(default_factory=SecretsSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    partners: PartnerSettings = Field(default_factory=PartnerSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    intake: IntakeSettings = Field(default_factory=IntakeSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
