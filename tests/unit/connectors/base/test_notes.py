"""The facts every connector's notes state, and how HubSpot and Pipedrive lay them out."""

from __future__ import annotations

from connectors.base.notes import job_ad_facts, signal_facts
from connectors.hubspot.notes import render_job_ad_note, render_signal_note
from connectors.pipedrive import payloads
from tests.unit.connectors.pipedrive.fakes import job_ad_record, signal_record


def _upper(value: str) -> str:
    return value.upper()


def test_signal_facts_go_through_the_connector_s_escape() -> None:
    signal = payloads.parse_signal(signal_record().payload)
    detected = signal.detected_at
    assert signal_facts(signal, escape=_upper) == [
        "Signal type: HIRING_SURGE",
        "Score: 0.87",
        f"Detected: {detected.upper()}",
    ]
    unscored = payloads.parse_signal(signal_record(score=None).payload)
    assert signal_facts(unscored, escape=str, type_label="Type") == [
        "Type: hiring_surge",
        f"Detected: {detected}",
    ]


def test_job_ad_facts_leave_out_blank_values() -> None:
    job_ad = payloads.parse_job_ad(job_ad_record().payload)
    assert job_ad_facts(job_ad, escape=_upper) == [
        "Location: BERLIN",
        "Posted: 2026-11-20T00:00:00Z",
    ]
    bare = payloads.parse_job_ad(job_ad_record(location="  ", posted_at=None).payload)
    assert job_ad_facts(bare, escape=_upper) == []


def test_each_connector_lays_the_facts_out_its_own_way() -> None:
    signal = payloads.parse_signal(signal_record().payload)
    detected = signal.detected_at
    assert (
        f"<p>Signal type: hiring_surge \u00b7 Score: 0.87 \u00b7 Detected: {detected}</p>"
        in render_signal_note(signal)
    )
    assert (
        f"<p>Type: hiring_surge | Score: 0.87 | Detected: {detected}</p>"
        in payloads.signal_note_html(signal)
    )
    job_ad = payloads.parse_job_ad(job_ad_record().payload)
    assert "<p>Location: Berlin \u00b7 Posted: 2026-11-20T00:00:00Z</p>" in render_job_ad_note(
        job_ad
    )
    assert (
        "<p>Location: Berlin</p><p>Posted: 2026-11-20T00:00:00Z</p>"
        in payloads.job_ad_note_html(job_ad)
    )
