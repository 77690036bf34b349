"""Every operation of the API's OpenAPI document, with concrete paths for the test tenant."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .conftest import TENANT

_PATH_VALUES = {
    "tenant_id": TENANT,
    "connector": "hubspot",
    "kind": "company",
    "queast_id": "co_1",
    "replay_id": "rp_1",
    "review_id": "rv_" + "0" * 32,
    "backfill_id": "bf_1",
}


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    spec: dict[str, Any]

    @property
    def path(self) -> str:
        return re.sub(r"\{(\w+)\}", lambda m: _PATH_VALUES[m.group(1)], self.template)

    @property
    def takes_body(self) -> bool:
        return "requestBody" in self.spec

    @property
    def secured(self) -> bool:
        return bool(self.spec.get("security"))

    @property
    def platform_only(self) -> bool:
        return self.template.startswith("/admin/")

    def __str__(self) -> str:
        return f"{self.method} {self.template}"


def operations(spec: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method.upper(), template, operation)
        for template, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]
