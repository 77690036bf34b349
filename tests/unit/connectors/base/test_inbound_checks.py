"""The verification steps the connectors' inbound adapters share (connectors.base.inbound)."""

from __future__ import annotations

import pytest

from connectors.base.inbound import (
    InboundAuthError,
    check_fresh,
    header,
    same_secret,
    scalar_text,
)


class Refused(InboundAuthError):
    pass


def test_header_is_found_whatever_the_case_of_its_name() -> None:
    assert header({"X-HubSpot-Signature": "abc"}, "x-hubspot-signature") == "abc"
    assert header({"x-hubspot-signature": "low"}, "x-hubspot-signature") == "low"
    assert header({"other": "x"}, "x-hubspot-signature") is None


@pytest.mark.parametrize(
    ("expected", "given", "same"),
    [
        ("secret", "secret", True),
        ("secret", "secreT", False),
        ("secret", "secret!", False),
        ("", "", True),
        ("secret", "\\udcff", False),
    ],
)
def test_same_secret(expected: str, given: str, same: bool) -> None:
    assert same_secret(expected, given) is same


@pytest.mark.parametrize(
    ("age", "reason"), [(301.0, "stale_timestamp"), (-301.0, "future_timestamp")]
)
def test_outside_the_window_is_refused_with_its_reason(age: float, reason: str) -> None:
    with pytest.raises(Refused) as raised:
        check_fresh(age, max_age=300, max_future=300, refuse=Refused, what="the timestamp")
    assert raised.value.reason == reason
    assert str(raised.value).startswith("the timestamp is ")


@pytest.mark.parametrize("age", [300.0, -300.0, 0.0])
def test_the_window_edges_pass(age: float) -> None:
    check_fresh(age, max_age=300, max_future=300, refuse=Refused, what="the timestamp")


def test_an_age_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(Refused):
        check_fresh(float("nan"), max_age=300, max_future=300, refuse=Refused, what="t")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        (False, "false"),
        (3, "3"),
        (3.0, "3"),
        (2.5, "2.5"),
        (" yes ", " yes "),
        (None, None),
        ([1], None),
        ({"a": 1}, None),
    ],
)
def test_scalar_text(value: object, text: str | None) -> None:
    assert scalar_text(value) == text
