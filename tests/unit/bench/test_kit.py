"""The benchmarks' shared kit: the figures, the waits, the results file, the run's names and
the webhook receiver's start and stop.

Only what runs without the shared services (the receiver is a loopback child of its own); the
benchmarks themselves run against the real Kafka and Redis (``make bench-*``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench import _kit as kit
from bench._kit import BenchRun
from bench.delivery import SECRET


def test_ratio_is_ours_over_the_baseline_to_three_decimals() -> None:
    assert kit.ratio(4826, 546448) == 0.009
    assert kit.ratio(3, 2) == 1.5


def test_percentile_takes_the_nearest_rank_below() -> None:
    values = [0.1 * n for n in range(1, 101)]
    assert kit.percentile(values, 0.5) == values[50]
    assert kit.percentile(values, 0.99) == values[99]
    assert kit.percentile([7.0], 0.99) == 7.0


def _counter(steps: list[int]) -> Iterator[int]:
    yield from steps
    while True:
        yield steps[-1]


def test_wait_for_progress_reaches_the_target() -> None:
    progress = _counter([0, 1, 2, 3])
    assert kit.wait_for_progress(
        lambda: next(progress), 3, timeout=5, stalled_after=1, interval=0.001
    )


def test_wait_for_progress_gives_up_when_progress_stalls() -> None:
    progress = _counter([0, 1, 1])
    assert not kit.wait_for_progress(
        lambda: next(progress), 5, timeout=30, stalled_after=0.05, interval=0.001
    )


@pytest.fixture
def results_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(kit, "RESULTS_DIR", tmp_path / "results")
    return tmp_path / "results"


def test_write_results_stamps_and_writes_the_figures(
    results_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.write_results("routing", {"ratio_worker_to_baseline": 0.009})
    stored = json.loads((results_dir / "routing.json").read_text())
    assert stored["ratio_worker_to_baseline"] == 0.009
    assert list(stored) == ["ratio_worker_to_baseline", "machine", "python", "date"]
    assert json.loads(capsys.readouterr().out) == stored


def test_write_results_under_a_key_keeps_the_other_keys(
    results_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kit.write_results("pipedrive_links", {"speedup": 2.0}, key="lite", echo=False)
    kit.write_results("pipedrive_links", {"speedup": 3.0}, key="growth", echo=False)
    kit.write_results("pipedrive_links", {"speedup": 4.0}, key="lite", echo=False)
    stored = json.loads((results_dir / "pipedrive_links.json").read_text())
    assert stored["lite"]["speedup"] == 4.0
    assert stored["growth"]["speedup"] == 3.0
    assert capsys.readouterr().out == ""


def test_a_run_names_everything_under_its_own_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QI_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    monkeypatch.setenv("QI_REDIS_URL", "redis://127.0.0.1:16379/3")
    run = BenchRun("bx", 4, extra_topics=("baseline-sink",))
    other = BenchRun("bx", 4)
    assert run.run_id.startswith("bx")
    assert len(run.run_id) == len("bx") + 8
    assert run.run_id != other.run_id
    assert run.topic("baseline-sink") == f"{run.run_id}.baseline-sink"
    assert run.topics.domain_events.startswith(f"{run.run_id}.")
    env = run.worker_env(QI_WORKER_DELIVERY_CONNECTORS="[]")
    assert env["QI_KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:19092"
    assert env["QI_REDIS_URL"] == "redis://127.0.0.1:16379/3"
    assert env["QI_REDIS_KEY_PREFIX"] == f"{run.run_id}:"
    assert env["QI_TOPIC_PREFIX"] == f"{run.run_id}."
    assert env["QI_TOPIC_PARTITIONS"] == "4"
    assert env["QI_WORKER_APP_ID"] == run.run_id
    assert env["QI_WORKER_DELIVERY_CONNECTORS"] == "[]"


def test_the_webhook_receiver_answers_inside_its_block_and_has_ended_after_it() -> None:
    port = kit.free_port()
    with kit.webhook_receiver(port, SECRET) as receiver:
        assert receiver.poll() is None
        answer = httpx.get(f"http://127.0.0.1:{port}/_control/received", timeout=10)
        assert answer.status_code == 200
    assert receiver.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/_control/received", timeout=10)
