from __future__ import annotations

import json
from typing import Any

import pytest

from processors.samples import sample_events


def envelope(event_type: str = "company.upserted", **overrides: Any) -> dict[str, Any]:
    """A valid envelope of the given type from the sample generator, with overrides."""
    kinds = {
        "company.upserted": 0,
        "person.upserted": 1,
        "signal.emitted": 2,
        "job_ad.published": 3,
    }
    if event_type in kinds:
        document = sample_events(["t_1"], 4, seed=1)[kinds[event_type]]
    else:
        family = event_type.split(".", maxsplit=1)[0]
        document = sample_events(["t_1"], 1, seed=1)[0]
        document["event_type"] = event_type
        document["data"] = {f"{family}_id": f"{family[:2]}_1", "version": 3}
    document.update(overrides)
    return document


def raw(document: Any) -> bytes:
    return json.dumps(document).encode()


@pytest.fixture
def company_event() -> dict[str, Any]:
    return envelope("company.upserted")
