"""Removing what a test (or a benchmark run) created on the shared Kafka and Redis.

Every integration test has its own topic prefix (``{test_id}.``), Redis key prefix
(``{test_id}:``) and consumer group (``{test_id}``). :func:`remove_prefix` deletes the topics,
keys and consumer groups under them and returns what is still there afterwards, so a fixture can
both clean up and check that nothing was left (topic deletion is asynchronous on the broker: the
call waits until the topics are gone from the metadata, within ``timeout``).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis import Redis

__all__ = ["Leftovers", "delete_keys", "delete_topics", "remove_prefix"]

_GLOB_SPECIAL = "\\*?[]"


@dataclass(slots=True)
class Leftovers:
    """What :func:`remove_prefix` could not remove."""

    topics: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.topics or self.keys)


def _glob_escape(prefix: str) -> str:
    return "".join(f"\\{c}" if c in _GLOB_SPECIAL else c for c in prefix)


def _topics_with(admin: AdminClient, prefix: str) -> list[str]:
    return sorted(name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix))


def delete_topics(bootstrap_servers: str, prefix: str, *, timeout: float = 60.0) -> list[str]:
    """Delete every topic named ``prefix…``; returns those still listed after ``timeout``."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    names = _topics_with(admin, prefix)
    if names:
        futures = admin.delete_topics(names, operation_timeout=timeout)
        for future in futures.values():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                    raise
    deadline = time.monotonic() + timeout
    left = _topics_with(admin, prefix)
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _topics_with(admin, prefix)
    return left


def delete_groups(bootstrap_servers: str, prefix: str, *, timeout: float = 30.0) -> None:
    """Delete the (empty) consumer groups named ``prefix…``; best effort."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    listing = admin.list_consumer_groups(request_timeout=timeout).result(timeout)
    groups = [g.group_id for g in listing.valid if g.group_id.startswith(prefix)]
    if not groups:
        return
    for future in admin.delete_consumer_groups(groups, request_timeout=timeout).values():
        # a group that still has members (a stray consumer) expires on its own
        with contextlib.suppress(KafkaException):
            future.result(timeout)


def delete_keys(redis_url: str, prefix: str) -> list[str]:
    """SCAN and UNLINK every key named ``prefix…``; returns the keys found afterwards."""
    pattern = f"{_glob_escape(prefix)}*"
    client = Redis.from_url(redis_url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
        return sorted(key.decode() for key in client.scan_iter(match=pattern, count=1000))
    finally:
        client.close()


def remove_prefix(
    *, bootstrap_servers: str, redis_url: str, topic_prefix: str, key_prefix: str, group_prefix: str
) -> Leftovers:
    """Delete a test's topics, consumer groups and keys; return whatever is left."""
    left = Leftovers(keys=delete_keys(redis_url, key_prefix))
    left.topics = delete_topics(bootstrap_servers, topic_prefix)
    delete_groups(bootstrap_servers, group_prefix)
    return left
