"""Settings of every component, read from the environment once per process.

One pydantic-settings class per component, each with its own ``QI_<COMPONENT>_`` prefix, composed
in :class:`Settings`. All are frozen: a process reads its configuration at start and never changes
it. Credentials are :class:`~pydantic.SecretStr` so they never show in reprs or logs.

Variables (defaults in brackets):

- ``QI_KAFKA_BOOTSTRAP_SERVERS`` [127.0.0.1:9092], ``QI_KAFKA_CLIENT_ID`` [queast-integrations]
- ``QI_REDIS_URL`` [redis://127.0.0.1:6379/0], ``QI_REDIS_KEY_PREFIX`` [qi:]
- ``QI_TOPIC_PREFIX`` [empty], ``QI_TOPIC_PARTITIONS`` [8], ``QI_TOPIC_REPLICATION_FACTOR`` [1],
  ``QI_TOPIC_MIN_INSYNC_REPLICAS`` [the broker's default]
- ``QI_ROUTING_MAX_EVENT_BYTES`` [524288], ``QI_ROUTING_BATCH_SIZE`` [500],
  ``QI_ROUTING_BATCH_WITHIN_SECONDS`` [0.2], ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` [true]
- ``QI_SECRETS_KEYS`` [the published development key; see :mod:`processors.secrets`]
- ``QI_AUTH_JWT_SECRET`` / ``QI_AUTH_JWKS_URL`` / ``QI_AUTH_ISSUER`` / ``QI_AUTH_AUDIENCE``
- ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` [false]
- ``QI_DELIVERY_*``: see :class:`DeliverySettings`
- ``QI_HUBSPOT_BASE_URL`` / ``QI_PIPEDRIVE_BASE_URL`` [the partners' own]
- ``QI_WORKER_APP_ID`` [queast-integrations], ``QI_METRICS_PORT`` [9101],
  ``QI_METRICS_HOST`` [127.0.0.1]
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.secrets import SecretsSettings

__all__ = [
    "AuthSettings",
    "DeliverySettings",
    "KafkaSettings",
    "MetricsSettings",
    "PartnerSettings",
    "RedisSettings",
    "RoutingSettings",
    "Settings",
    "TopicSettings",
    "WebhookSettings",
    "WorkerSettings",
    "get_settings",
]


class KafkaSettings(BaseSettings):
    """Where the Kafka cluster is and how clients identify themselves."""

    model_config = SettingsConfigDict(env_prefix="QI_KAFKA_", frozen=True, extra="ignore")

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "queast-integrations"


class RedisSettings(BaseSettings):
    """The Redis that holds working state and query indexes (AOF persistence expected)."""

    model_config = SettingsConfigDict(env_prefix="QI_REDIS_", frozen=True, extra="ignore")

    url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = Field(default="qi:", pattern=r"^[A-Za-z0-9:._-]*$", max_length=100)


class TopicSettings(BaseSettings):
    """Topic naming and sizing. Every topic of a family has the same partition count."""

    model_config = SettingsConfigDict(env_prefix="QI_TOPIC_", frozen=True, extra="ignore")

    prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$", max_length=100)
    partitions: int = Field(default=8, ge=1, le=1024)
    replication_factor: int = Field(default=1, ge=1, le=16)
    min_insync_replicas: int | None = Field(default=None, ge=1, le=16)
    """``min.insync.replicas`` of new topics; unset: the broker's default. With the producers'
    ``acks=all`` a write is acknowledged once this many replicas have it. Production:
    replication factor 3, min.insync.replicas 2."""

    @model_validator(mode="after")
    def _insync_within_replication(self) -> TopicSettings:
        if self.min_insync_replicas is not None and (
            self.min_insync_replicas > self.replication_factor
        ):
            msg = "min_insync_replicas cannot exceed replication_factor"
            raise ValueError(msg)
        return self


class RoutingSettings(BaseSettings):
    """The routing agent: input limits, batching, and what dead-letter records carry."""

    model_config = SettingsConfigDict(env_prefix="QI_ROUTING_", frozen=True, extra="ignore")

    max_event_bytes: int = Field(default=512 * 1024, ge=1024)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_within_seconds: float = Field(default=0.2, gt=0, le=10)
    dlq_include_payload: bool = True


class WorkerSettings(BaseSettings):
    """The Faust worker process."""

    model_config = SettingsConfigDict(env_prefix="QI_WORKER_", frozen=True, extra="ignore")

    app_id: str = Field(default="queast-integrations", pattern=r"^[A-Za-z0-9._-]+$")
    delivery_connectors: tuple[str, ...] = ("webhook",)
    """Connectors this worker delivers for (``QI_WORKER_DELIVERY_CONNECTORS='["webhook"]'``)."""
    gc_freeze_after_seconds: float = Field(default=5.0, ge=0, le=3600)
    """Seconds after start when long-lived objects leave full GC collections (0: never)."""


class MetricsSettings(BaseSettings):
    """The Prometheus endpoint of the worker (the API serves its own ``/metrics``)."""

    model_config = SettingsConfigDict(env_prefix="QI_METRICS_", frozen=True, extra="ignore")

    port: int = Field(default=9101, ge=0, le=65535)
    host: str = "127.0.0.1"


class AuthSettings(BaseSettings):
    """Bearer JWTs of the API: HS256 with a shared secret (local use) or RS256 from a JWKS URL."""

    model_config = SettingsConfigDict(env_prefix="QI_AUTH_", frozen=True, extra="ignore")

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_seconds: int = Field(default=30, ge=0, le=300)


class WebhookSettings(BaseSettings):
    """Outbound webhooks. Private, loopback and link-local destinations are refused unless
    ``QI_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is true (tests and the local demo set it)."""

    model_config = SettingsConfigDict(env_prefix="QI_WEBHOOK_", frozen=True, extra="ignore")

    allow_private_networks: bool = False


class PartnerSettings(BaseSettings):
    """Partner API base URLs, for pointing connectors at sandboxes (a connection's own
    ``base_url`` wins)."""

    model_config = SettingsConfigDict(env_prefix="QI_", frozen=True, extra="ignore")

    hubspot_base_url: str | None = None
    pipedrive_base_url: str | None = None


class DeliverySettings(BaseSettings):
    """Delivery policy, per worker (Kafka Connect's ``errors.*`` vocabulary where it fits).

    ``retry_max_attempts`` and ``retry_timeout_seconds`` form the retry budget (whichever is
    spent first); delays grow exponentially from ``retry_base_delay_seconds`` up to
    ``retry_max_delay_seconds`` with full jitter, and never undercut a partner's Retry-After.
    ``lane_capacity`` bounds the records waiting per connection (split evenly over its
    ``lane_concurrency`` queues, each holding at least ``lane_batches`` of the connector's
    full batches); past it, records are deferred to the retry topic.
    ``dedupe_ttl_seconds`` is how long a delivered idempotency key is remembered.
    ``claim_lease_seconds`` is the lease of a send claim (renewed every third of it while a
    batch is with the partner): how long a worker that died holding claims delays others.
    """

    model_config = SettingsConfigDict(env_prefix="QI_DELIVERY_", frozen=True, extra="ignore")

    retry_max_attempts: int = Field(default=8, ge=1, le=100)
    retry_timeout_seconds: float = Field(default=27 * 3600, gt=0)
    retry_base_delay_seconds: float = Field(default=5.0, gt=0)
    retry_max_delay_seconds: float = Field(default=10 * 3600, gt=0)
    dlq_include_payload: bool = True
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
    claim_lease_seconds: float = Field(default=30.0, ge=1, le=3600)


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
