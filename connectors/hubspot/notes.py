"""The HTML bodies of HubSpot notes: one per signal, one per job ad cited as evidence.

``hs_note_body`` is HTML with every text escaped: the title, the contract mode and version
first and in bold for non-strict signals (informational, legacy), the summary, the reasons
with their codes, the evidence links (``http(s)`` only) and, last and apart, a
"Decorations" line for technology tags, which are never reasons. Bodies are kept under
HubSpot's 65,536 characters by dropping trailing evidence and reasons (saying how many).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping
from typing import Any, Final

from connectors.base.contract import JobAdRecord, SignalRecord
from connectors.base.matchkeys import stripped
from connectors.base.notes import job_ad_facts, signal_facts
from connectors.hubspot.exports import parse

__all__ = [
    "MAX_NOTE_BODY_CHARS",
    "job_ad_note_body",
    "render_job_ad_note",
    "render_signal_note",
    "signal_note_body",
]

_MAX_TEXT_CHARS: Final[int] = 4_000
"""Summaries and reason descriptions are cut to this many characters."""
_MAX_TITLE_CHARS: Final[int] = 500
"""Titles, codes, ids and labels are cut to this many characters."""


def _esc(value: str, *, limit: int = _MAX_TEXT_CHARS) -> str:
    text = value.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "\u2026"
    return html.escape(text, quote=True)


def _esc_short(value: str) -> str:
    return _esc(value, limit=_MAX_TITLE_CHARS)


_SAFE_URL_SCHEMES: Final[tuple[str, ...]] = ("https://", "http://")


def _link(url: str | None, label: str) -> str:
    """An ``<a>`` for an http(s) URL; just the escaped label for anything else."""
    target = stripped(url)
    if target is None or not target.lower().startswith(_SAFE_URL_SCHEMES):
        return _esc(label, limit=_MAX_TITLE_CHARS)
    return f'<a href="{_esc(target)}">{_esc(label, limit=_MAX_TITLE_CHARS)}</a>'


MAX_NOTE_BODY_CHARS: Final[int] = 65_536
"""HubSpot's limit on ``hs_note_body``."""
_DOT: Final[str] = " \u00b7 "


def _more(count: int, noun: str) -> str:
    return f"<li>\u2026 {count} more {noun} not shown</li>" if count > 0 else ""


def _fit(render: Callable[[int, int], str], reasons: int, evidence: int) -> str:
    """Render with as many reasons and evidence items as fit in a note body."""
    while True:
        body = render(reasons, evidence)
        if len(body) <= MAX_NOTE_BODY_CHARS or (reasons == 0 and evidence == 0):
            return body[:MAX_NOTE_BODY_CHARS]
        if evidence > 0:
            evidence = evidence // 2 if evidence > 8 else evidence - 1
        else:
            reasons = reasons // 2 if reasons > 8 else reasons - 1


def signal_note_body(payload: Mapping[str, Any]) -> str:
    """The HTML ``hs_note_body`` of a signal; see the module docstring for the layout."""
    return render_signal_note(parse(SignalRecord, payload, "signal"))


def render_signal_note(signal: SignalRecord) -> str:
    """The HTML ``hs_note_body`` of a parsed signal record."""
    strict = signal.contract_mode == "strict"
    contract = (
        f"Contract mode: {_esc(signal.contract_mode)}, "
        f"contract version: {_esc(signal.contract_version, limit=_MAX_TITLE_CHARS)}"
    )
    head = [f"<p><strong>Queast signal: {_esc(signal.title, limit=_MAX_TITLE_CHARS)}</strong></p>"]
    if not strict:
        head.append(f"<p><strong>{contract} (not an Actionable Signal)</strong></p>")
    summary = stripped(signal.summary)
    if summary is not None:
        head.append(f"<p>{_esc(summary)}</p>")
    head.append(f"<p>{_DOT.join(signal_facts(signal, escape=_esc_short))}</p>")

    tags = [t for t in (stripped(tag) for tag in signal.decorations.technology_tags) if t]
    tail: list[str] = []
    if tags:
        joined = ", ".join(_esc(tag, limit=_MAX_TITLE_CHARS) for tag in tags)
        tail.append(f"<p><em>Decorations (technology tags, not reasons): {joined}</em></p>")
    footer = f"Queast signal id: {_esc(signal.signal_id, limit=_MAX_TITLE_CHARS)}"
    tail.append(f"<p>{contract}{_DOT}{footer}</p>" if strict else f"<p>{footer}</p>")

    def render(max_reasons: int, max_evidence: int) -> str:
        parts = list(head)
        if signal.reasons:
            items = [
                f"<li><strong>{_esc(r.code, limit=_MAX_TITLE_CHARS)}</strong>: "
                f"{_esc(r.description)}"
                + (
                    f" (evidence: {_esc(', '.join(r.evidence_ids), limit=_MAX_TITLE_CHARS)})"
                    if r.evidence_ids
                    else ""
                )
                + "</li>"
                for r in signal.reasons[:max_reasons]
            ]
            more = _more(len(signal.reasons) - max_reasons, "reasons")
            parts.append(f"<p><strong>Reasons</strong></p><ul>{''.join(items)}{more}</ul>")
        if signal.evidence:
            items = [
                f"<li>{_link(e.url, e.title or f'{e.kind} {e.id}')} "
                f"({_esc(e.kind, limit=_MAX_TITLE_CHARS)} {_esc(e.id, limit=_MAX_TITLE_CHARS)})"
                "</li>"
                for e in signal.evidence[:max_evidence]
            ]
            more = _more(len(signal.evidence) - max_evidence, "evidence links")
            parts.append(f"<p><strong>Evidence</strong></p><ul>{''.join(items)}{more}</ul>")
        return "".join([*parts, *tail])

    return _fit(render, len(signal.reasons), len(signal.evidence))


def job_ad_note_body(payload: Mapping[str, Any]) -> str:
    """The HTML ``hs_note_body`` of a job ad cited as evidence."""
    return render_job_ad_note(parse(JobAdRecord, payload, "job_ad"))


def render_job_ad_note(job_ad: JobAdRecord) -> str:
    """The HTML ``hs_note_body`` of a parsed job ad record."""
    title = stripped(job_ad.title) or "untitled job ad"
    parts = [f"<p><strong>Queast job ad: {_esc(title, limit=_MAX_TITLE_CHARS)}</strong></p>"]
    facts = job_ad_facts(job_ad, escape=_esc_short)
    if facts:
        parts.append(f"<p>{_DOT.join(facts)}</p>")
    url = stripped(job_ad.url)
    if url is not None:
        parts.append(f"<p>{_link(url, url)}</p>")
    parts.append(
        "<p>Evidence for Queast signals, not a signal itself \u00b7 Queast job ad id: "
        f"{_esc(job_ad.job_ad_id, limit=_MAX_TITLE_CHARS)}</p>"
    )
    return "".join(parts)
