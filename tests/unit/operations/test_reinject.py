from __future__ import annotations

import pytest

from processors.deliveries.envelope import REQUIRED_HEADERS, item_from_record
from processors.operations.reinject import ReinjectError, Reinjector, run_headers
from processors.routing.idempotency import delivery_id_for
from processors.settings import KafkaSettings
from processors.topics import TopicMap


def _dead_letter_headers() -> dict[str, str]:
    headers = {name: f"v-{name}" for name in REQUIRED_HEADERS}
    headers.update(
        {
            "qi.connector": "webhook",
            "qi.tenant_id": "t_1",
            "qi.entity_version": "4",
            "qi.idempotency_key": "qik_1",
            "qi.delivery_id": "d-original",
            "qi.attempt": "7",
            "qi.hop": "6",
            "qi.not_before": "123",
            "qi.first_attempt_at": "100",
            "qi.errors": "[]",
            "qi.retry.kind": "retry",
            "qi.error.class": "permanent",
            "qi.error.reason": "http_400",
            "qi.original.topic": "integrations.retry.webhook",
            "qi.payload_included": "true",
            "qi.owner_connector": "hubspot",
        }
    )
    return headers


def test_a_copy_keeps_the_envelope_and_key_and_starts_afresh() -> None:
    headers = {
        k: v.decode()
        for k, v in run_headers(_dead_letter_headers(), run_id="rd_1", kind="redrive", now_ms=5)
    }
    assert headers["qi.idempotency_key"] == "qik_1"
    assert headers["qi.owner_connector"] == "hubspot"
    assert headers["qi.delivery_id"] == delivery_id_for("qik_1", replay_id="rd_1")
    assert headers["qi.delivery_id"] != "d-original"
    assert (headers["qi.attempt"], headers["qi.hop"], headers["qi.not_before"]) == ("0", "0", "5")
    assert (headers["qi.replay_id"], headers["qi.run.kind"]) == ("rd_1", "redrive")
    leftovers = [n for n in headers if n.startswith(("qi.error", "qi.original", "qi.retry"))]
    assert leftovers == []
    assert "qi.first_attempt_at" not in headers
    assert "qi.payload_included" not in headers
    item = item_from_record(value=b"x", headers=headers, topic="r", partition=0, offset=0)
    assert (item.attempts_made, item.hop, item.errors, item.first_attempt_at_ms) == (0, 0, [], None)
    assert item.skips_delivered


def test_each_run_gets_its_own_delivery_id_and_one_run_the_same() -> None:
    def delivery_id(run_id: str) -> bytes:
        pairs = run_headers(_dead_letter_headers(), run_id=run_id, kind="replay", now_ms=1)
        return dict(pairs)["qi.delivery_id"]

    assert delivery_id("a") == delivery_id("a")
    assert delivery_id("a") != delivery_id("b")


@pytest.mark.parametrize(
    ("run_id", "kind", "error"),
    [
        ("r 1", "replay", ValueError),
        ("", "replay", ValueError),
        ("x" * 65, "replay", ValueError),
        ("r1", "rerun", ValueError),
    ],
)
def test_bad_runs_are_refused(run_id: str, kind: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        run_headers(_dead_letter_headers(), run_id=run_id, kind=kind, now_ms=1)


def test_a_record_without_an_envelope_or_payload_is_refused() -> None:
    incomplete = {k: v for k, v in _dead_letter_headers().items() if k != "qi.idempotency_key"}
    with pytest.raises(ReinjectError, match=r"qi\.idempotency_key"):
        run_headers(incomplete, run_id="r1", kind="replay", now_ms=1)

    # an unreachable broker: the refusal comes before anything is produced
    with Reinjector(KafkaSettings(bootstrap_servers="127.0.0.1:1"), TopicMap("")) as reinjector:
        with pytest.raises(ReinjectError, match="no payload"):
            reinjector.queue(b"", _dead_letter_headers(), run_id="r1", kind="redrive")
        assert reinjector.queued == 0
