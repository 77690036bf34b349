"""Test doubles shared by the connector unit tests: a fake clock, record builders and the
preview answer reader."""

from __future__ import annotations

import inspect
import itertools
from typing import Any

import httpx
import pytest

from connectors.base import OutboundRecord
from connectors.base.contract import ContractRecord
from connectors.base.oauth import OAuthGrant
from connectors.base.preview import PreviewAnswer

_ids = itertools.count(1)

FIRST_PREVIEW_ID = 990_000_001
"""The first id a preview answer hands out in :func:`preview_json`."""


def preview_json(preview_answer: PreviewAnswer, request: httpx.Request) -> object:
    """The JSON ``preview_answer`` gives ``request`` (ids from :data:`FIRST_PREVIEW_ID` on);
    asserts the answer is a 200."""
    numbers = itertools.count(FIRST_PREVIEW_ID)
    response = preview_answer(request, lambda: next(numbers))
    assert response.status_code == 200
    return response.json()


class FakeClock:
    """Wall and monotonic time that only move when told to; ``sleep`` advances both."""

    def __init__(self, *, wall: float = 1_700_000_000.0, monotonic: float = 1_000.0) -> None:
        self.wall = wall
        self.mono = monotonic
        self.slept: list[float] = []

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


def make_record(**overrides: Any) -> OutboundRecord:
    """A valid record for connection ``c_1`` of tenant ``t_42``; override any field."""
    number = next(_ids)
    values: dict[str, Any] = {
        "delivery_id": f"d_{number}",
        "tenant_id": "t_42",
        "connection_id": "c_1",
        "connector": "webhook",
        "event_type": "company.upserted",
        "event_id": f"e_{number}",
        "idempotency_key": f"ik_{number}",
        "correlation_id": "corr-123",
        "entity_id": "company_7",
        "entity_version": 3,
        "occurred_at": "2026-11-26T05:00:00Z",
        "schema_version": "1.0",
        "payload": {"company_id": "company_7", "name": "Acme", "version": 3},
        "attempt": 1,
    }
    values.update(overrides)
    return OutboundRecord.model_validate(values)


def make_records(count: int, **overrides: Any) -> list[OutboundRecord]:
    return [make_record(**overrides) for _ in range(count)]


class MemoryGrantStore:
    """A connection's grant store in memory (the kit's ``GrantStore``): every saved grant in
    order, the latest one, and how often it was reloaded. ``fail_save`` makes saving raise."""

    def __init__(self, *, fail_save: bool = False) -> None:
        self.saved: list[OAuthGrant] = []
        self.latest: OAuthGrant | None = None
        self.loads = 0
        self._fail_save = fail_save

    async def save(self, grant: OAuthGrant) -> None:
        if self._fail_save:
            msg = "store down"
            raise RuntimeError(msg)
        self.saved.append(grant)
        self.latest = grant

    async def reload(self) -> OAuthGrant | None:
        self.loads += 1
        return self.latest


def count_contract_parses(monkeypatch: pytest.MonkeyPatch) -> list[type[ContractRecord]]:
    """Every contract model validation from now on (until ``monkeypatch`` undoes it), by model."""
    calls: list[type[ContractRecord]] = []
    original = inspect.getattr_static(ContractRecord, "model_validate").__func__

    def spy(cls: type[ContractRecord], /, obj: Any, **options: Any) -> ContractRecord:
        calls.append(cls)
        result: ContractRecord = original(cls, obj, **options)
        return result

    monkeypatch.setattr(ContractRecord, "model_validate", classmethod(spy))
    return calls
