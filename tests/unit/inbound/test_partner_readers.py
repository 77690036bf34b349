"""The partner company readers (HubSpot company, Pipedrive organization), over MockTransport."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from connectors.base.inbound import InboundCompany, PartnerReadError
from connectors.base.oauth import StaticToken
from connectors.base.partner_read import ReaderSetup
from connectors.hubspot.reader import HubSpotCompanyReader
from connectors.hubspot.reader import reader_for as hubspot_reader_for
from connectors.pipedrive.reader import PipedriveCompanyReader
from connectors.pipedrive.reader import reader_for as pipedrive_reader_for

Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    """An injected clock whose sleep advances it (and is recorded)."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self.now = 0.0

    def time(self) -> float:
        return 1_800_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


class Recorder:
    """Answers each request with the next response, keeping the requests."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def _client(handler: Handler) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def _hubspot(
    recorder: Recorder, sleeps: Sleeps, *, attempts: int = 3, max_wait_seconds: float = 5.0
) -> HubSpotCompanyReader:
    return HubSpotCompanyReader(
        _client(recorder),
        api_root="https://api.hubapi.com/",
        tokens=StaticToken(SecretStr("pat-eu1-secret")),
        clock=sleeps,
        attempts=attempts,
        max_wait_seconds=max_wait_seconds,
    )


def _pipedrive(recorder: Recorder, sleeps: Sleeps) -> PipedriveCompanyReader:
    return PipedriveCompanyReader(
        _client(recorder),
        api_root="https://acme.pipedrive.com",
        tokens=StaticToken(SecretStr("pd-token"), header="x-api-token", prefix=""),
        clock=sleeps,
    )


def _company(properties: dict[str, str | None]) -> httpx.Response:
    return httpx.Response(200, json={"id": "101", "properties": properties})


async def test_hubspot_reads_the_company_with_the_token_and_documented_properties() -> None:
    recorder = Recorder(
        _company(
            {
                "name": "Acme Robotics AB",
                "domain": "acme-robotics.se",
                "website": "https://www.other.example",
                "linkedin_company_page": "https://www.linkedin.com/company/acme-robotics",
            }
        )
    )
    company = await _hubspot(recorder, Sleeps()).company("101")
    assert company == InboundCompany(
        partner_object_id="101",
        name="Acme Robotics AB",
        domain="acme-robotics.se",
        linkedin_url="https://www.linkedin.com/company/acme-robotics",
    )
    (request,) = recorder.requests
    assert request.method == "GET"
    assert request.url.path == "/crm/v3/objects/companies/101"
    assert request.url.params["properties"] == "name,domain,website,linkedin_company_page"
    assert request.headers["authorization"] == "Bearer pat-eu1-secret"


async def test_hubspot_falls_back_to_the_website_domain_and_escapes_the_id() -> None:
    recorder = Recorder(_company({"name": None, "domain": "", "website": "https://www.acme.se/x"}))
    company = await _hubspot(recorder, Sleeps()).company("1/../2")
    assert company is not None
    assert (company.domain, company.name) == ("acme.se", None)
    assert recorder.requests[0].url.raw_path.startswith(b"/crm/v3/objects/companies/1%2F..%2F2")


async def test_a_404_is_none() -> None:
    recorder = Recorder(httpx.Response(404, json={"status": "error"}))
    assert await _hubspot(recorder, Sleeps()).company("404") is None


async def test_a_429_is_retried_after_its_bounded_retry_after_then_fails() -> None:
    sleeps = Sleeps()
    recorder = Recorder(*(httpx.Response(429, headers={"Retry-After": "3600"}) for _ in range(3)))
    reader = _hubspot(recorder, sleeps, attempts=3, max_wait_seconds=2.0)
    with pytest.raises(PartnerReadError) as raised:
        await reader.company("101")
    assert raised.value.reason == "failed"
    assert len(recorder.requests) == 3
    assert sleeps.waits == [2.0, 2.0]


async def test_a_429_then_a_200_is_read() -> None:
    sleeps = Sleeps()
    recorder = Recorder(
        httpx.Response(429, headers={"Retry-After": "1"}), _company({"name": "Acme"})
    )
    company = await _hubspot(recorder, sleeps).company("101")
    assert company is not None
    assert company.name == "Acme"
    assert sleeps.waits == [1.0]


async def test_5xx_and_timeouts_are_retried_with_backoff_and_bounded() -> None:
    sleeps = Sleeps()
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ReadTimeout("slow", request=request)
        return httpx.Response(503)

    reader = HubSpotCompanyReader(
        _client(handler),
        api_root="https://api.hubapi.com",
        tokens=StaticToken(SecretStr("t")),
        clock=sleeps,
        attempts=3,
    )
    with pytest.raises(PartnerReadError) as raised:
        await reader.company("101")
    assert raised.value.reason == "failed"
    assert calls == 3
    assert sleeps.waits == [0.5, 1.0]


async def test_a_401_is_auth_failed_without_retry() -> None:
    recorder = Recorder(httpx.Response(401), httpx.Response(200, json={}))
    with pytest.raises(PartnerReadError) as raised:
        await _hubspot(recorder, Sleeps()).company("101")
    assert raised.value.reason == "auth_failed"
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(200, content=b"{not json"),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(400, json={"message": "bad"}),
    ],
)
async def test_malformed_or_refused_answers_fail_at_once(response: httpx.Response) -> None:
    recorder = Recorder(response)
    with pytest.raises(PartnerReadError) as raised:
        await _hubspot(recorder, Sleeps()).company("101")
    assert raised.value.reason == "failed"
    assert len(recorder.requests) == 1


async def test_the_reader_paces_itself_with_its_bucket() -> None:
    sleeps = Sleeps()
    recorder = Recorder(*(_company({"name": f"C{i}"}) for i in range(3)))
    reader = HubSpotCompanyReader(
        _client(recorder),
        api_root="https://api.hubapi.com",
        tokens=StaticToken(SecretStr("t")),
        clock=sleeps,
    )
    for _ in range(3):
        await reader.company("101")
    assert len(sleeps.waits) == 1  # the burst of two, then a wait for the third token
    assert len(recorder.requests) == 3


async def test_pipedrive_reads_the_organization_v2_with_the_api_token() -> None:
    recorder = Recorder(
        httpx.Response(
            200,
            json={
                "success": True,
                "data": {
                    "id": 7,
                    "name": "Acme Robotics AB",
                    "website": "https://www.acme-robotics.se/en",
                    "linkedin": "https://www.linkedin.com/company/acme-robotics",
                },
            },
        )
    )
    company = await _pipedrive(recorder, Sleeps()).company("7")
    assert company == InboundCompany(
        partner_object_id="7",
        name="Acme Robotics AB",
        domain="acme-robotics.se",
        linkedin_url="https://www.linkedin.com/company/acme-robotics",
    )
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("GET", "/api/v2/organizations/7")
    assert request.headers["x-api-token"] == "pd-token"
    assert "authorization" not in request.headers


async def test_pipedrive_404_and_non_numeric_ids_are_none() -> None:
    recorder = Recorder(httpx.Response(404, json={"success": False}))
    reader = _pipedrive(recorder, Sleeps())
    assert await reader.company("8") is None
    assert await reader.company("../users") is None
    assert len(recorder.requests) == 1


@pytest.mark.parametrize(
    "body", [{"success": False, "error": "x"}, {"success": True, "data": None}, {"data": "x"}]
)
async def test_pipedrive_answers_without_data_fail(body: dict[str, object]) -> None:
    with pytest.raises(PartnerReadError) as raised:
        await _pipedrive(Recorder(httpx.Response(200, json=body)), Sleeps()).company("7")
    assert raised.value.reason == "failed"


async def test_pipedrive_429_is_bounded() -> None:
    sleeps = Sleeps()
    recorder = Recorder(*(httpx.Response(429) for _ in range(3)))
    with pytest.raises(PartnerReadError):
        await _pipedrive(recorder, sleeps).company("7")
    assert len(recorder.requests) == 3
    assert all(wait <= 5.0 for wait in sleeps.waits)


async def test_reader_for_builds_token_readers_and_declines_oauth() -> None:
    client = _client(Recorder())
    hubspot = hubspot_reader_for(
        {"auth": {"type": "private_app", "token": "pat"}, "base_url": "http://127.0.0.1:9"},
        ReaderSetup(client=client, allow_private_networks=True),
    )
    assert isinstance(hubspot, HubSpotCompanyReader)
    oauth = {
        "auth": {
            "type": "oauth",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
        }
    }
    assert hubspot_reader_for(oauth, ReaderSetup(client=client)) is None  # no grant store
    pipedrive = pipedrive_reader_for(
        {"auth": {"type": "api_token", "token": "pd"}, "domain_field_key": "a" * 40},
        ReaderSetup(client=client),
    )
    assert isinstance(pipedrive, PipedriveCompanyReader)
    with pytest.raises(ValidationError):
        hubspot_reader_for(
            {"auth": {"type": "private_app", "token": " "}}, ReaderSetup(client=client)
        )


async def test_a_lower_connection_rate_limit_paces_the_reader() -> None:
    sleeps = Sleeps()
    recorder = Recorder(*(_company({"name": f"C{i}"}) for i in range(3)))
    reader = hubspot_reader_for(
        {"auth": {"type": "private_app", "token": "pat"}, "rate_limit_per_second": 0.25},
        ReaderSetup(client=_client(recorder), clock=sleeps),
    )
    assert reader is not None
    for _ in range(3):
        await reader.company("101")
    assert sleeps.waits == [4.0]  # one token per 4 s after the burst of two, not one per second
