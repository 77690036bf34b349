"""confluent-kafka clients for the CLI, the API and tests (the worker uses Faust's own).

Every producer here uses the ``murmur2_random`` partitioner, the one the Java client and
aiokafka (under Faust) use, so a tenant id maps to the same partition number whichever client
produced the record. Upstream services must use it too.

Every client built from :class:`~processors.settings.KafkaSettings` gets its security settings
(:func:`client_config`: ``security.protocol``, SASL mechanism and credentials, TLS files); the
worker's Faust app gets the same through :func:`ssl_context` (see :mod:`processors.app`). The
config dicts hold the SASL password: they are handed to the clients and never logged.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from processors.settings import KafkaSettings, TopicSettings
from processors.topics import TopicSpec

__all__ = [
    "TopicEnsureResult",
    "TopicPartitionMismatchError",
    "TopicSurvey",
    "admin_client",
    "client_config",
    "ensure_topics",
    "header_value",
    "producer",
    "producer_config",
    "ssl_context",
    "survey_topics",
]


HeaderValue = str | bytes | None
RecordHeaders = Mapping[str, HeaderValue] | Sequence[tuple[str, HeaderValue]] | None


def header_value(headers: RecordHeaders, name: str) -> str | None:
    """The first header ``name`` of a consumed record, decoded, or ``None``."""
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or [])
    for key, value in pairs:
        if key == name:
            if value is None:
                return None
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


class TopicPartitionMismatchError(RuntimeError):
    """An existing topic has another partition count than its family needs."""


@dataclass(frozen=True, slots=True)
class TopicEnsureResult:
    """What ``topics ensure`` did for one topic."""

    name: str
    created: bool
    partitions: int


def client_config(kafka: KafkaSettings) -> dict[str, str | int | bool]:
    """What every confluent-kafka client needs: the brokers, the client id and security."""
    config: dict[str, str | int | bool] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "client.id": kafka.client_id,
        "security.protocol": kafka.security_protocol,
    }
    if kafka.uses_sasl and kafka.sasl_mechanism and kafka.sasl_password is not None:
        config["sasl.mechanism"] = kafka.sasl_mechanism
        config["sasl.username"] = kafka.sasl_username or ""
        config["sasl.password"] = kafka.sasl_password.get_secret_value()
    if kafka.uses_ssl:
        if kafka.ssl_cafile is not None:
            config["ssl.ca.location"] = str(kafka.ssl_cafile)
        if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
            config["ssl.certificate.location"] = str(kafka.ssl_certfile)
            config["ssl.key.location"] = str(kafka.ssl_keyfile)
        if kafka.ssl_key_password is not None:
            config["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    return config


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS context of Python clients (aiokafka under Faust), or ``None`` without TLS.

    Verifies the brokers against ``ssl_cafile`` (else the system's store) and their host
    names; presents the client certificate when one is configured.
    """
    if not kafka.uses_ssl:
        return None
    cafile = None if kafka.ssl_cafile is None else str(kafka.ssl_cafile)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    if kafka.ssl_certfile is not None and kafka.ssl_keyfile is not None:
        password = kafka.ssl_key_password
        context.load_cert_chain(
            str(kafka.ssl_certfile),
            str(kafka.ssl_keyfile),
            password=None if password is None else password.get_secret_value(),
        )
    return context


def producer_config(
    kafka: KafkaSettings, **overrides: str | int | bool
) -> dict[str, str | int | bool]:
    """Producer settings: idempotent, acks=all, Java-compatible partitioning."""
    config: dict[str, str | int | bool] = {
        **client_config(kafka),
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    config.update(overrides)
    return config


def producer(kafka: KafkaSettings, **overrides: str | int | bool) -> Producer:
    return Producer(producer_config(kafka, **overrides))


def admin_client(kafka: KafkaSettings) -> AdminClient:
    config: dict[str, str | int | float | bool] = {**client_config(kafka)}
    return AdminClient(config)


@dataclass(frozen=True, slots=True)
class TopicSurvey:
    """Which of some specs the broker has: ``missing`` ones, and the ``existing`` ones with
    what they are (``present``, in the same order) and the partition counts that differ from the
    family's (``mismatched``, one text each)."""

    missing: list[TopicSpec] = field(default_factory=list)
    existing: list[TopicSpec] = field(default_factory=list)
    present: list[TopicEnsureResult] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def survey_topics(
    admin: AdminClient, topics: TopicSettings, specs: Iterable[TopicSpec], *, timeout: float
) -> TopicSurvey:
    """Read the broker's topics once and sort ``specs`` into missing and existing ones,
    changing nothing (used by :func:`ensure_topics` and ``topics ensure --dry-run``)."""
    metadata = admin.list_topics(timeout=timeout)
    survey = TopicSurvey()
    for spec in specs:
        topic = metadata.topics.get(spec.name)
        if topic is None or topic.error is not None:
            survey.missing.append(spec)
            continue
        count = len(topic.partitions)
        if count != topics.partitions:
            survey.mismatched.append(f"{spec.name} has {count}, wants {topics.partitions}")
        survey.existing.append(spec)
        survey.present.append(TopicEnsureResult(spec.name, created=False, partitions=count))
    return survey


def _topic_config(spec: TopicSpec, topics: TopicSettings) -> dict[str, str]:
    config = dict(spec.config)
    if topics.min_insync_replicas is not None:
        config["min.insync.replicas"] = str(topics.min_insync_replicas)
    return config


def ensure_topics(
    kafka: KafkaSettings,
    topics: TopicSettings,
    specs: Iterable[TopicSpec],
    *,
    timeout: float = 30.0,
) -> list[TopicEnsureResult]:
    """Create the missing topics; check that existing ones have the configured partition count.

    Idempotent. New topics get ``topics.replication_factor`` replicas and, when
    ``topics.min_insync_replicas`` is set, that ``min.insync.replicas`` (existing topics are left
    as they are: changing either is an operator's reassignment or ``kafka-configs`` call).
    Raises :class:`TopicPartitionMismatchError` when an existing topic has another partition
    count (a family must line up; fixing it is an operator's decision), and ``KafkaException``
    when the broker cannot be reached.
    """
    admin = admin_client(kafka)
    wanted = list(specs)
    survey = survey_topics(admin, topics, wanted, timeout=timeout)
    if survey.mismatched:
        raise TopicPartitionMismatchError("; ".join(survey.mismatched))
    results = list(survey.present)
    missing = survey.missing
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(
                    spec.name,
                    num_partitions=topics.partitions,
                    replication_factor=topics.replication_factor,
                    config=_topic_config(spec, topics),
                )
                for spec in missing
            ],
            operation_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result(timeout)
                created = True
            except KafkaException as exc:
                if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                    raise
                created = False
            results.append(
                TopicEnsureResult(spec.name, created=created, partitions=topics.partitions)
            )
    order = {spec.name: index for index, spec in enumerate(wanted)}
    return sorted(results, key=lambda r: order[r.name])
