"""Validation error details: field and message, never the input; the 404 of a read that
found nothing."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

import pytest
from pydantic import AfterValidator, BaseModel, ValidationError

from processors.errors import NotFound, error_body, found, safe_error_details


class _Tier(StrEnum):
    FREE_STARTER = "free_starter"
    PROFESSIONAL_ENTERPRISE = "professional_enterprise"


def _careless(value: str) -> str:
    msg = f"{value} is not a known token"  # a validator that quotes its input
    raise ValueError(msg)


class _Body(BaseModel):
    tier: _Tier | None = None
    mode: Literal["api", "webhook_and_api"] = "api"
    token: Annotated[str, AfterValidator(_careless)] = "x"


def _details(**body: object) -> list[dict[str, object]]:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate(body)
    return [dict(d) for d in safe_error_details(caught.value.errors(), loc_prefix=("body",))]


@pytest.mark.parametrize(
    ("body", "loc"),
    [({"tier": "professional"}, "tier"), ({"mode": "webhook"}, "mode")],
)
def test_a_choice_that_is_part_of_an_allowed_value_still_lists_the_choices(
    body: dict[str, object], loc: str
) -> None:
    (detail,) = _details(**body)
    assert detail["loc"] == ["body", loc]
    message = str(detail["msg"])
    assert message.startswith("Input should be "), message
    assert "professional_enterprise" in message or "webhook_and_api" in message


def test_a_message_that_would_echo_the_input_is_replaced() -> None:
    secret = "pat-na1-very-secret-token"
    (detail,) = _details(token=secret)
    assert detail == {"loc": ["body", "token"], "msg": "invalid value (value_error)"}


@pytest.mark.parametrize("stored", [0, "", [], False])
def test_a_stored_value_that_is_falsy_is_still_found(stored: object) -> None:
    assert found(stored, "no such thing", code="thing_not_found") is stored


def test_nothing_stored_is_a_404_with_the_given_code_and_message() -> None:
    with pytest.raises(NotFound) as caught:
        found(None, "no such thing for this tenant", code="thing_not_found")
    assert caught.value.status_code == 404
    assert error_body(caught.value) == {
        "error": {"code": "thing_not_found", "message": "no such thing for this tenant"}
    }
