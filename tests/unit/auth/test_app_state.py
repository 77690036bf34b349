"""``app_state_item``: what the app keeps on ``app.state``, checked for its type."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request

from processors.auth import TokenVerifier, get_token_verifier
from processors.auth.dependencies import app_state_item


def _request(app: FastAPI) -> Request:
    return Request({"type": "http", "app": app, "headers": []})


def test_returns_the_item_when_it_has_the_type() -> None:
    app = FastAPI()
    app.state.answer = 42
    assert app_state_item(_request(app), "answer", int, what="answer") == 42


@pytest.mark.parametrize("kept", [None, "42"], ids=["missing", "wrong_type"])
def test_a_missing_or_mistyped_item_names_what_is_missing(kept: str | None) -> None:
    app = FastAPI()
    if kept is not None:
        app.state.answer = kept
    with pytest.raises(RuntimeError, match=r"the app has no answer; build it with .*create_api"):
        app_state_item(_request(app), "answer", int, what="answer")


def test_token_verifier_is_read_through_it(hs_verifier: TokenVerifier) -> None:
    app = FastAPI()
    with pytest.raises(RuntimeError, match="the app has no token verifier"):
        get_token_verifier(_request(app))
    app.state.token_verifier = hs_verifier
    assert get_token_verifier(_request(app)) is hs_verifier
