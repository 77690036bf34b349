from __future__ import annotations

import asyncio
import email.utils
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import (
    MAX_RETRY_AFTER_SECONDS,
    USER_AGENT,
    AuthenticationError,
    BackpressureError,
    ConnectorError,
    EndpointGoneError,
    PermanentError,
    TransientError,
    endpoint_label,
    http_client_factory,
    parse_retry_after,
    raise_for_response,
    translate_http_errors,
)
from connectors.base.http import (
    CONNECT_TO_EXTENSION,
    PinningAiohttpTransport,
    RequestDeadlineExceeded,
)
from tests.support.raw_http import RawHttpServer, make_tls_files

NOW = 1_700_000_000.0


def _http_date(unix: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(unix, tz=UTC), usegmt=True)


def _raise(status: int, **headers: str) -> ConnectorError | None:
    response = httpx.Response(status, headers=headers)
    try:
        raise_for_response(response, partner="p", endpoint="host", clock=lambda: NOW)
    except ConnectorError as error:
        return error
    return None


# --- Retry-After parsing -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (_http_date(NOW + 90), 90.0),
        (_http_date(NOW - 90), 0.0),
        ("-3", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == expected


HOUR = MAX_RETRY_AFTER_SECONDS


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1e308", HOUR),
        ("1e9", HOUR),
        ("inf", HOUR),
        ("+Infinity", HOUR),
        ("9" * 5000, HOUR),
        ("3600", HOUR),
        ("3599.5", 3599.5),
        ("nan", None),
        ("-1e308", None),
        ("-inf", None),
        ("-0", 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", HOUR),
        ("Fri, 31 Dec 9999 23:59:59 -2359", HOUR),
        ("Mon, 01 Jan 1900 00:00:00 GMT", 0.0),
        ("Mon, 01 Jan 0001 00:00:00 GMT", 0.0),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("Fri, 31 Dec 999999999999999999999 23:59:59 GMT", None),
        ("Mon, 01 Jan 2020 00:00:00 +99999999999999999999", None),
        ("Mon, 01 Jan 2020 99:99:99 GMT", None),
        ("Mon, 01 Jan 2020 00:00:00", None),
        ("1" + "0" * 300 + " seconds", None),
        ("\x00\xff", None),
    ],
)
def test_hostile_retry_after_values_are_bounded_or_ignored(
    value: str, expected: float | None
) -> None:
    assert parse_retry_after(value, now=lambda: NOW) == expected


def test_the_bound_is_the_callers_choice() -> None:
    assert parse_retry_after("1e308", now=lambda: NOW, max_seconds=30.0) == 30.0
    assert parse_retry_after(_http_date(NOW + 90), now=lambda: NOW, max_seconds=60.0) == 60.0


@given(st.text(max_size=300))
def test_parse_retry_after_never_raises_and_stays_bounded(value: str) -> None:
    parsed = parse_retry_after(value, now=lambda: NOW)
    assert parsed is None or 0.0 <= parsed <= HOUR


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**400), max_value=10**400).map(str),
        st.datetimes(timezones=st.timezones()).map(email.utils.format_datetime),
    )
)
def test_numbers_and_dates_of_any_size_stay_bounded(value: str) -> None:
    parsed = parse_retry_after(value, now=lambda: NOW)
    assert parsed is None or 0.0 <= parsed <= HOUR


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (429, BackpressureError),
        (502, BackpressureError),
        (503, TransientError),
        (423, TransientError),
        (408, TransientError),
    ],
)
@pytest.mark.parametrize("header", ["1e308", "1e9", "inf", "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_hostile_retry_after_becomes_an_error_with_a_bounded_wait(
    status: int, error_class: type[TransientError], header: str
) -> None:
    error = _raise(status, **{"retry-after": header})
    assert type(error) is error_class
    assert error.retry_after == HOUR


@pytest.mark.parametrize("header", ["nan", "-5", "soon", "Mon, 01 Jan 2020 99:99:99 GMT"])
def test_an_unusable_retry_after_on_429_falls_back_to_the_default(header: str) -> None:
    error = _raise(429, **{"retry-after": header})
    assert isinstance(error, BackpressureError)
    assert error.retry_after == 5.0


# --- status mapping ------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_success(status: int) -> None:
    assert _raise(status) is None


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308])
def test_3xx_is_permanent_and_not_followed(status: int) -> None:
    error = _raise(status, location="https://elsewhere.example/")
    assert type(error) is PermanentError
    assert error.reason == "redirect not followed"
    assert error.status_code == status


def test_401_is_authentication_error() -> None:
    assert type(_raise(401)) is AuthenticationError


def test_410_is_endpoint_gone() -> None:
    assert type(_raise(410)) is EndpointGoneError


@pytest.mark.parametrize("status", [400, 403, 404, 405, 409, 413, 422, 451])
def test_other_4xx_is_permanent(status: int) -> None:
    assert type(_raise(status)) is PermanentError


@pytest.mark.parametrize("status", [100, 199, 600, 999])
def test_unexpected_status_is_permanent(status: int) -> None:
    error = _raise(status)
    assert type(error) is PermanentError
    assert error.reason == "unexpected status"


@pytest.mark.parametrize("status", [408, 425])
def test_408_and_425_are_transient_honouring_retry_after(status: int) -> None:
    error = _raise(status, **{"retry-after": "12"})
    assert type(error) is TransientError
    assert error.retry_after == 12.0
    bare = _raise(status)
    assert isinstance(bare, TransientError)
    assert bare.retry_after is None


@pytest.mark.parametrize(("header", "expected"), [(None, 2.0), ("1", 2.0), ("9", 9.0)])
def test_423_waits_at_least_two_seconds(header: str | None, expected: float) -> None:
    error = _raise(423, **({"retry-after": header} if header else {}))
    assert type(error) is TransientError
    assert error.retry_after == expected


@pytest.mark.parametrize("status", [429, 502, 504])
def test_throttle_statuses_are_backpressure(status: int) -> None:
    error = _raise(status)
    assert type(error) is BackpressureError
    assert error.retry_after == 5.0


def test_backpressure_honours_both_retry_after_forms() -> None:
    seconds = _raise(429, **{"retry-after": "30"})
    dated = _raise(429, **{"retry-after": _http_date(NOW + 45)})
    assert isinstance(seconds, BackpressureError)
    assert isinstance(dated, BackpressureError)
    assert seconds.retry_after == 30.0
    assert dated.retry_after == 45.0


def test_default_backpressure_is_configurable() -> None:
    with pytest.raises(BackpressureError) as caught:
        raise_for_response(
            httpx.Response(429), partner="p", endpoint="e", default_backpressure_seconds=0.5
        )
    assert caught.value.retry_after == 0.5


@pytest.mark.parametrize("status", [500, 501, 503, 599])
def test_other_5xx_are_transient(status: int) -> None:
    error = _raise(status, **{"retry-after": "3"})
    assert type(error) is TransientError
    assert error.retry_after == 3.0


# --- exception translation -----------------------------------------------------------

_REQUEST = httpx.Request("POST", "https://user:pw@example.com/hook?token=secret")


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (httpx.ConnectTimeout("t", request=_REQUEST), TransientError),
        (httpx.ReadTimeout("t", request=_REQUEST), TransientError),
        (httpx.WriteTimeout("t", request=_REQUEST), TransientError),
        (httpx.PoolTimeout("t", request=_REQUEST), TransientError),
        (httpx.ConnectError("refused", request=_REQUEST), TransientError),
        (httpx.ReadError("reset", request=_REQUEST), TransientError),
        (httpx.WriteError("broken pipe", request=_REQUEST), TransientError),
        (httpx.RemoteProtocolError("closed", request=_REQUEST), TransientError),
        (httpx.ProxyError("proxy", request=_REQUEST), TransientError),
        (httpx.DecodingError("gzip", request=_REQUEST), TransientError),
        (httpx.UnsupportedProtocol("ftp", request=_REQUEST), PermanentError),
        (httpx.LocalProtocolError("bad header", request=_REQUEST), PermanentError),
        (httpx.TooManyRedirects("loop", request=_REQUEST), PermanentError),
        (httpx.InvalidURL("bad url"), PermanentError),
    ],
)
def test_translate_http_errors(raised: Exception, expected: type[ConnectorError]) -> None:
    with pytest.raises(expected) as caught, translate_http_errors(partner="p", endpoint="host"):
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised
    assert caught.value.partner == "p"
    assert caught.value.endpoint == "host"
    assert "secret" not in str(caught.value)


def test_translate_http_errors_leaves_other_exceptions_alone() -> None:
    with pytest.raises(KeyError), translate_http_errors(partner="p", endpoint="e"):
        raise KeyError("x")


# --- endpoint labels and the client factory ------------------------------------------


@pytest.mark.parametrize(
    ("url", "include_path", "expected"),
    [
        ("https://u:p@hooks.example.com/a/b?token=x#f", True, "hooks.example.com/a/b"),
        ("https://hooks.example.com/a/b?token=x", False, "hooks.example.com"),
        ("http://localhost:8080/hook", False, "localhost:8080"),
        ("https://[2001:db8::1]:8443/x", False, "[2001:db8::1]:8443"),
    ],
)
def test_endpoint_label(url: str, include_path: bool, expected: str) -> None:
    assert endpoint_label(url, include_path=include_path) == expected


async def test_http_client_factory_builds_a_safe_client() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(302, headers={"location": "https://elsewhere.example/"})

    async with http_client_factory(
        timeout_seconds=20, transport=httpx.MockTransport(handler)
    ) as client:
        assert client.follow_redirects is False
        assert client.trust_env is False
        assert client.timeout.read == 20
        assert client.timeout.connect == 5
        response = await client.post("https://hooks.example.com/")
    assert response.status_code == 302
    assert len(seen) == 1
    assert seen[0].headers["user-agent"] == USER_AGENT
    assert USER_AGENT.startswith("queast-integrations/")


def test_http_client_factory_refuses_non_positive_timeouts() -> None:
    with pytest.raises(ValueError, match="timeouts"):
        http_client_factory(timeout_seconds=0)


# --- a total deadline per request, against a real peer that drips its answer -----------


@pytest.mark.parametrize("drip_headers", [True, False], ids=["status-line", "body"])
async def test_a_peer_dripping_its_response_is_cut_off_by_the_request_deadline(
    drip_headers: bool,
) -> None:
    # Each byte comes well within the inactivity timeout, so only a total deadline ends it.
    peer = RawHttpServer(drip_seconds=0.02, drip_headers=drip_headers, body=b"x" * 100)

    async def fetch() -> None:
        async with http_client_factory(timeout_seconds=0.5) as client:
            with translate_http_errors(partner="p", endpoint="host"):
                response = await client.get(f"http://127.0.0.1:{peer.port}/slow")
                await response.aread()

    async with peer:
        with pytest.raises(TransientError) as caught:
            await fetch()
    assert caught.value.reason == "timeout (RequestDeadlineExceeded)"
    assert isinstance(caught.value.__cause__, RequestDeadlineExceeded)


async def test_the_deadline_applies_to_an_injected_transport_too() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(3)
        return httpx.Response(200)

    async with http_client_factory(
        timeout_seconds=0.2, transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RequestDeadlineExceeded):
            await client.get("https://hooks.example.com/")


async def test_a_prompt_peer_is_answered_within_the_deadline() -> None:
    async with RawHttpServer() as peer, http_client_factory(timeout_seconds=5) as client:
        response = await client.get(f"http://127.0.0.1:{peer.port}/fast")
    assert response.status_code == 200
    assert response.text == "ok"


# --- connecting to pinned addresses ----------------------------------------------------


async def test_a_pinned_request_connects_to_the_pin_with_the_original_host_and_sni(
    tmp_path: Path,
) -> None:
    tls = make_tls_files(tmp_path, dns_name="hooks.test")
    async with RawHttpServer(ssl_context=tls.server_context()) as peer:
        transport = PinningAiohttpTransport(
            limits=httpx.Limits(max_connections=2), ssl_context=tls.client_context()
        )
        async with httpx.AsyncClient(transport=transport) as client:
            # hooks.test does not resolve: the pin is the only way to reach the peer.
            response = await client.post(
                f"https://hooks.test:{peer.port}/hook?token=abc",
                content=b"{}",
                extensions={CONNECT_TO_EXTENSION: ("127.0.0.1",)},
            )
    assert response.status_code == 200
    [seen] = peer.seen
    assert seen.request_line == "POST /hook?token=abc HTTP/1.1"
    assert seen.headers["host"] == f"hooks.test:{peer.port}"
    assert seen.server_name == "hooks.test"


async def test_the_certificate_is_verified_for_the_original_host_not_the_pinned_address(
    tmp_path: Path,
) -> None:
    tls = make_tls_files(tmp_path, dns_name="hooks.test")
    async with RawHttpServer(ssl_context=tls.server_context()) as peer:
        transport = PinningAiohttpTransport(
            limits=httpx.Limits(max_connections=2), ssl_context=tls.client_context()
        )
        async with httpx.AsyncClient(transport=transport) as client:
            with pytest.raises(httpx.TransportError) as caught:
                await client.post(
                    f"https://other.test:{peer.port}/hook",
                    content=b"{}",
                    extensions={CONNECT_TO_EXTENSION: ("127.0.0.1",)},
                )
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorCertificateError)
    assert peer.seen == []


async def test_a_pinned_request_never_falls_back_to_resolving_the_name() -> None:
    async with RawHttpServer() as peer:
        transport = PinningAiohttpTransport(limits=httpx.Limits(max_connections=2))
        async with httpx.AsyncClient(transport=transport) as client:
            # localhost would resolve to the peer; the pin says ::2, where nothing listens.
            with pytest.raises(httpx.TransportError) as caught:
                await client.get(
                    f"http://localhost:{peer.port}/",
                    extensions={CONNECT_TO_EXTENSION: ("::2",)},
                )
            unpinned = await client.get(f"http://localhost:{peer.port}/")
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectorError)
    assert unpinned.status_code == 200
    assert len(peer.seen) == 1


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("1e308", HOUR),
        ("1e9", HOUR),
        ("inf", HOUR),
        ("nan", 5.0),
        ("-1", 5.0),
        ("9" * 4400, HOUR),
        (_http_date(NOW + 10 * 365 * 86400), HOUR),
        (_http_date(NOW - 50 * 365 * 86400), 0.0),
        ("Fri, 31 Dec 9999 23:59:59 GMT", HOUR),
        ("tomorrow-ish", 5.0),
    ],
)
async def test_a_hostile_endpoint_over_http_gets_a_bounded_wait(
    header: str, expected: float
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"retry-after": header})

    async with http_client_factory(transport=httpx.MockTransport(handler)) as client:
        response = await client.post("https://hooks.example.com/")
    with pytest.raises(BackpressureError) as caught:
        raise_for_response(response, partner="webhook", endpoint="hooks", clock=lambda: NOW)
    assert caught.value.retry_after == expected
