"""The facts a partner note states about a contract record, for every connector that writes notes.

A connector renders its own note (its markup, its separators, its size limits); the facts it
shows, and which of them a record may lack, are the same for every connector, so they are
listed here once. Each value goes through the connector's ``escape`` (HTML-escaping and cutting
to its limits); the labels are plain text.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.base.contract import JobAdRecord, SignalRecord
from connectors.base.matchkeys import stripped

__all__ = ["job_ad_facts", "signal_facts"]


def signal_facts(
    signal: SignalRecord, *, escape: Callable[[str], str], type_label: str = "Signal type"
) -> list[str]:
    """``<type_label>: …``, ``Score: …`` (if scored) and ``Detected: …`` of a signal."""
    facts = [f"{type_label}: {escape(signal.signal_type)}"]
    if signal.score is not None:
        facts.append(f"Score: {signal.score:g}")
    facts.append(f"Detected: {escape(signal.detected_at)}")
    return facts


def job_ad_facts(job_ad: JobAdRecord, *, escape: Callable[[str], str]) -> list[str]:
    """``Location: …`` and ``Posted: …`` of a job ad, those it states (blank ones left out)."""
    facts = []
    location = stripped(job_ad.location)
    if location is not None:
        facts.append(f"Location: {escape(location)}")
    posted = stripped(job_ad.posted_at)
    if posted is not None:
        facts.append(f"Posted: {escape(posted)}")
    return facts
