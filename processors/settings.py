"""Settings of every component, read from the environment once per process.

One pydantic-settings class per component, each with its own ``QI_<COMPONENT>_`` prefix, composed
in :class:`Settings`. All are frozen: a process reads its configuration at start and never changes
it. Credentials are :class:`~pydantic.SecretStr` so they never show in reprs or logs.

Variables (defaults in brackets):

- ``QI_KAFKA_BOOTSTRAP_SERVERS`` [127.0.0.1:9092], ``QI_KAFKA_CLIENT_ID`` [queast-integrations]
- ``QI_REDIS_URL`` [redis://127.0.0.1:6379/0], ``QI_REDIS_KEY_PREFIX`` [qi:]
- ``QI_TOPIC_PREFIX`` [empty], ``QI_TOPIC_PARTITIONS`` [8], ``QI_TOPIC_REPLICATION_FACTOR`` [1]
- ``QI_ROUTING_MAX_EVENT_BYTES`` [524288], ``QI_ROUTING_BATCH_SIZE`` [500],
  ``QI_ROUTING_BATCH_WITHIN_SECONDS`` [0.2], ``QI_ROUTING_DLQ_INCLUDE_PAYLOAD`` [true]
- ``QI_SECRETS_KEYS`` [the published development key; see :mod:`processors.secrets`]
- ``QI_WORKER_APP_ID`` [queast-integrations], ``QI_METRICS_PORT`` [9101],
  ``QI_METRICS_HOST`` [127.0.0.1]
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.secrets import SecretsSettings

__all__ = [
    "KafkaSettings",
    "MetricsSettings",
    "RedisSettings",
    "RoutingSettings",
    "Settings",
    "TopicSettings",
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


class MetricsSettings(BaseSettings):
    """The Prometheus endpoint of the worker (the API serves its own ``/metrics``)."""

    model_config = SettingsConfigDict(env_prefix="QI_METRICS_", frozen=True, extra="ignore")

    port: int = Field(default=9101, ge=0, le=65535)
    host: str = "127.0.0.1"


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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
