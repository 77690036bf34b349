"""Pure, explainable identity matching of Queast entities to partner CRM objects.

A Queast company or person (:class:`CompanyIdentity`, :class:`PersonIdentity`) is matched
against the partner CRM objects that could be the same thing (:class:`PartnerCandidate`).
The strategies configured for a connection are tried in order; the first strategy that finds
any candidate decides the outcome:

``partner_id``
    An explicit link: a partner object id the entity already carries as a hint, or a
    candidate that stores the Queast id. Exact.
``domain`` (companies)
    Registrable domain (eTLD+1 by the public suffix list) of the company's domains/website.
    Exact. Shared platforms (free mail, social networks, link-in-bio hosts) are ignored.
``email`` (people)
    Normalised e-mail address. Exact.
``linkedin_url``
    Canonical ``linkedin.com/company/<slug>`` or ``linkedin.com/in/<slug>``. Exact.
``company_name`` (companies)
    Fuzzy similarity of normalised names
    (:func:`~processors.identity.names.company_name_similarity`) in ``[0, 1]``.

Exact strategies give confidence 1.0 when exactly one candidate matches and an ``ambiguous``
outcome when several do. The fuzzy strategy auto-links only when the best score reaches the
auto-link threshold *and* beats the runner-up by the ambiguity margin; a best score at or above
the review floor is ``ambiguous``; anything lower is no evidence at all. Every
:class:`MatchDecision` records the strategy, the score, the normalised values compared, the
runner-up and a human-readable explanation. Auto-linked decisions are still meant to be listed
for review; the threshold only decides whether a link is made without waiting for a human.

The strategies and the keys they compare are in :mod:`processors.identity.strategies` (with the
normalisers of :mod:`connectors.base.matchkeys`), the company-name score in
:mod:`processors.identity.names`; this module is the decision.

Everything here is a pure function of its arguments: no I/O, no clock, no global mutable
state.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import TypedDict, Unpack

from pydantic import BaseModel, ConfigDict, Field

from processors.identity.names import (
    NameSimilarity,
    explain_company_name_similarity,
    normalize_company_name,
)
from processors.identity.strategies import (
    COMPANY_STRATEGIES,
    KEY_NOUNS,
    PERSON_STRATEGIES,
    CompanyIdentity,
    MatchStrategy,
    PartnerCandidate,
    PersonIdentity,
    candidate_keys,
    describe_key,
    display_key,
    entity_keys,
    linkedin_kind,
    shared_domains_of,
)

__all__ = [
    "DEFAULT_AMBIGUITY_MARGIN",
    "DEFAULT_AUTO_LINK_THRESHOLD",
    "DEFAULT_REVIEW_FLOOR",
    "MatchDecision",
    "MatchOutcome",
    "MatchThresholds",
    "StrategyAttempt",
    "match_company",
    "match_person",
]

# --------------------------------------------------------------------------------------------
# Thresholds
# --------------------------------------------------------------------------------------------

DEFAULT_AUTO_LINK_THRESHOLD: float = 0.92
"""Company-name score at or above which a fuzzy match links without waiting for a human.

Chosen on ``bench/identity/company_name_pairs.csv`` (516 labelled pairs: 323 same-company
variants, 193 different companies of which 149 are hard negatives - shared stem, one-letter
spelling differences, different numbers); ``python -m bench.identity.evaluate`` prints the
table. Precision comes first, because a wrong automatic link silently merges two customers'
records while a missed one only waits in review:

* at 0.92 precision is 1.00 and recall 0.80 (legal-suffix, punctuation, ``&``/and,
  case/accent, spacing and "The" variants all score 1.0, abbreviation/plural variants 0.98,
  word-order variants 0.96);
* the closest hard negatives score 0.90 ("Salesforce"/"Salesforge") and 0.875
  ("Experian"/"Experion"), so 0.92 keeps a margin of 0.02 above every negative, where 0.90
  would link "Salesforge" and 0.85 three negatives;
* with the scorer's "weakest word" rule this means a typo auto-links only if it is an adjacent
  swap in a word of 7+ letters ("Microsfot" 0.94) or a single wrong/missing letter in a word of
  13+ letters; shorter typos ("Siemans", "Deloite", 0.83-0.91) are reported as ``ambiguous``
  for review, which is where 36 of the 48 typo pairs land. Abbreviations ("IBM" vs
  "International Business Machines") are not recognised at all and remain for humans.
"""

DEFAULT_AMBIGUITY_MARGIN: float = 0.05
"""Minimum lead of the best fuzzy candidate over the runner-up for an automatic link."""

DEFAULT_REVIEW_FLOOR: float = 0.80
"""Fuzzy scores from here up to the threshold are ``ambiguous`` (worth a review); lower is no match.

On the evaluation set 40 of the 64 same-company pairs missed at the threshold score at least
0.80 (nearly all typos), while only 13 of the 193 negatives do - a review queue that is mostly
right. Abbreviations score far lower and are not worth surfacing by name alone.
"""


class MatchThresholds(TypedDict, total=False):
    """The decision rule's settings, each defaulting to its ``DEFAULT_*`` value."""

    auto_link_threshold: float
    ambiguity_margin: float
    review_floor: float


class MatchOutcome(StrEnum):
    """What the matcher decided."""

    AUTO_LINKED = "auto_linked"
    """One candidate at or above the auto-link threshold, clearly ahead; linked (and listed)."""
    AMBIGUOUS = "ambiguous"
    """Possible candidates, but not safe to link: needs a human."""
    NO_MATCH = "no_match"
    """No candidate found by any configured strategy."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StrategyAttempt(_Frozen):
    """What one strategy found, in the order the strategies were tried."""

    strategy: MatchStrategy
    candidate_ids: tuple[str, ...] = ()
    """Candidates the strategy found (exact) or scored at or above the review floor (fuzzy)."""
    detail: str


class MatchDecision(_Frozen):
    """The explained result of matching one entity against partner candidates."""

    outcome: MatchOutcome
    partner_object_id: str | None = None
    """The linked partner object; set only when ``outcome`` is ``auto_linked``."""
    best_candidate_id: str | None = None
    """The top candidate: the link when auto-linked, the suggestion to review when ambiguous."""
    strategy: MatchStrategy | None = None
    """The strategy that decided; ``None`` when no strategy found anything."""
    confidence: float = Field(default=0.0, ge=0.0, le=1.0)
    runner_up_id: str | None = None
    runner_up_score: float | None = Field(default=None, ge=0.0, le=1.0)
    entity_value: str | None = None
    """The entity's normalised value that was compared (domain, e-mail, URL, name, id)."""
    candidate_value: str | None = None
    """The best candidate's normalised value it was compared with."""
    auto_link_threshold: float = Field(ge=0.0, le=1.0)
    attempts: tuple[StrategyAttempt, ...] = ()
    explanation: str


# ---- the decision procedure ----------------------------------------------------------------


def _validate_settings(
    *, auto_link_threshold: float, ambiguity_margin: float, review_floor: float
) -> None:
    """Reject settings that would make the decision rule meaningless."""
    if not 0.0 < auto_link_threshold <= 1.0:
        raise ValueError(f"auto_link_threshold must be in (0, 1], got {auto_link_threshold}")
    if not 0.0 <= ambiguity_margin < 1.0:
        raise ValueError(f"ambiguity_margin must be in [0, 1), got {ambiguity_margin}")
    if not 0.0 <= review_floor <= auto_link_threshold:
        raise ValueError(f"review_floor must be in [0, auto_link_threshold], got {review_floor}")


def _history(attempts: Sequence[StrategyAttempt]) -> str:
    """Sentence summarising the strategies tried before the deciding one."""
    if not attempts:
        return ""
    return " Tried before: " + "; ".join(f"{a.strategy.value} ({a.detail})" for a in attempts) + "."


def _exact_decision(
    strategy: MatchStrategy,
    entity: CompanyIdentity | PersonIdentity,
    candidates: Sequence[PartnerCandidate],
    attempts: list[StrategyAttempt],
    auto_link_threshold: float,
) -> MatchDecision | None:
    """Apply an exact strategy; ``None`` (after recording the attempt) if it found nothing."""
    keys = entity_keys(strategy, entity)
    note = ""
    if strategy is MatchStrategy.DOMAIN and isinstance(entity, CompanyIdentity):
        shared = shared_domains_of(entity)
        if shared:
            note = f"; ignored shared platform domains: {', '.join(shared)}"
    if not keys:
        attempts.append(
            StrategyAttempt(strategy=strategy, detail=f"entity has no {KEY_NOUNS[strategy]}{note}")
        )
        return None
    keys_of: dict[str, set[str]] = {}
    kind = linkedin_kind(entity)
    for candidate in candidates:  # the same object listed twice contributes all its keys
        keys_of.setdefault(candidate.partner_object_id, set()).update(
            candidate_keys(strategy, candidate, kind=kind)
        )
    hits: dict[str, str] = {}  # partner object id -> the key it matched on (first by entity order)
    for key in keys:
        for candidate_id, their_keys in keys_of.items():
            if key in their_keys:
                hits.setdefault(candidate_id, key)
    shown = ", ".join(describe_key(key) for key in keys)
    if not hits:
        attempts.append(
            StrategyAttempt(strategy=strategy, detail=f"no candidate shares {shown}{note}")
        )
        return None
    history = _history(attempts)
    ids = tuple(hits)
    best_id = ids[0]
    value = display_key(hits[best_id])
    unique = len(ids) == 1
    if unique:
        detail = f"unique match on {value!r}"
        explanation = (
            f"auto_linked to {best_id!r} by {strategy.value}: the only candidate with "
            f"{describe_key(hits[best_id])}{note}; score 1.00 >= auto-link threshold "
            f"{auto_link_threshold:.2f}."
        )
    else:
        listing = ", ".join(f"{cid!r} ({describe_key(hits[cid])})" for cid in ids)
        detail = f"{len(ids)} candidates tie: {listing}"
        explanation = (
            f"ambiguous by {strategy.value}: {len(ids)} candidates match exactly ({listing}), "
            f"score 1.00 each; not auto-linked because an exact key must identify one "
            f"candidate."
        )
    attempts.append(StrategyAttempt(strategy=strategy, candidate_ids=ids, detail=detail))
    return MatchDecision(
        outcome=MatchOutcome.AUTO_LINKED if unique else MatchOutcome.AMBIGUOUS,
        partner_object_id=best_id if unique else None,
        best_candidate_id=best_id,
        strategy=strategy,
        confidence=1.0,
        runner_up_id=None if unique else ids[1],
        runner_up_score=None if unique else 1.0,
        entity_value=value,
        candidate_value=value,
        auto_link_threshold=auto_link_threshold,
        attempts=tuple(attempts),
        explanation=explanation + history,
    )


def _name_decision(
    entity: CompanyIdentity,
    candidates: Sequence[PartnerCandidate],
    attempts: list[StrategyAttempt],
    *,
    auto_link_threshold: float,
    ambiguity_margin: float,
    review_floor: float,
) -> tuple[MatchDecision | None, float]:
    """Apply the fuzzy company-name strategy; the decision (if any) and the best score seen."""
    strategy = MatchStrategy.COMPANY_NAME
    if entity.name is None or not normalize_company_name(entity.name):
        attempts.append(StrategyAttempt(strategy=strategy, detail="entity has no usable name"))
        return None, 0.0
    scored: dict[str, NameSimilarity] = {}
    for candidate in candidates:
        if candidate.name is None:
            continue
        similarity = explain_company_name_similarity(entity.name, candidate.name)
        previous = scored.get(candidate.partner_object_id)
        if previous is None or similarity.score > previous.score:
            scored[candidate.partner_object_id] = similarity
    ranking = sorted(scored.items(), key=lambda item: (-item[1].score, item[0]))
    entity_name = normalize_company_name(entity.name)
    if not ranking or ranking[0][1].score < review_floor:
        top = f"; best {ranking[0][0]!r} at {ranking[0][1].score:.2f}" if ranking else ""
        attempts.append(
            StrategyAttempt(
                strategy=strategy,
                detail=f"no name scored >= review floor {review_floor:.2f}{top}",
            )
        )
        return None, ranking[0][1].score if ranking else 0.0

    (best_id, best), runner = ranking[0], ranking[1] if len(ranking) > 1 else None
    runner_score = runner[1].score if runner else 0.0
    lead = best.score - runner_score
    reviewable = tuple(cid for cid, sim in ranking if sim.score >= review_floor)
    compared = f"{entity_name!r} vs {best.normalized_b!r} scored {best.score:.2f} ({best.reason})"
    runner_text = (
        f"; runner-up {runner[0]!r} ({runner[1].normalized_b!r}) scored {runner_score:.2f}"
        if runner
        else "; no runner-up"
    )
    if best.score >= auto_link_threshold and lead >= ambiguity_margin:
        outcome = MatchOutcome.AUTO_LINKED
        why = (
            f"{best.score:.2f} >= auto-link threshold {auto_link_threshold:.2f} and the lead "
            f"{lead:.2f} >= margin {ambiguity_margin:.2f}"
        )
    elif best.score >= auto_link_threshold:
        outcome = MatchOutcome.AMBIGUOUS
        why = (
            f"not auto-linked: the lead over the runner-up {lead:.2f} < margin "
            f"{ambiguity_margin:.2f}"
        )
    else:
        outcome = MatchOutcome.AMBIGUOUS
        why = (
            f"not auto-linked: {best.score:.2f} < auto-link threshold "
            f"{auto_link_threshold:.2f} (>= review floor {review_floor:.2f})"
        )
    attempts.append(
        StrategyAttempt(
            strategy=strategy,
            candidate_ids=reviewable,
            detail=f"best {best_id!r} at {best.score:.2f}{runner_text}",
        )
    )
    history = _history(attempts[:-1])
    linked = outcome is MatchOutcome.AUTO_LINKED
    return (
        MatchDecision(
            outcome=outcome,
            partner_object_id=best_id if linked else None,
            best_candidate_id=best_id,
            strategy=strategy,
            confidence=best.score,
            runner_up_id=runner[0] if runner else None,
            runner_up_score=runner_score if runner else None,
            entity_value=entity_name,
            candidate_value=best.normalized_b,
            auto_link_threshold=auto_link_threshold,
            attempts=tuple(attempts),
            explanation=(
                f"{outcome.value} {'to' if linked else 'with best candidate'} {best_id!r} by "
                f"company_name: {compared}{runner_text}; {why}.{history}"
            ),
        ),
        best.score,
    )


def _match(
    entity: CompanyIdentity | PersonIdentity,
    candidates: Sequence[PartnerCandidate],
    *,
    strategies: Sequence[MatchStrategy],
    applicable: frozenset[MatchStrategy],
    auto_link_threshold: float = DEFAULT_AUTO_LINK_THRESHOLD,
    ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN,
    review_floor: float = DEFAULT_REVIEW_FLOOR,
) -> MatchDecision:
    """Try ``strategies`` in order; the first that finds any candidate decides."""
    _validate_settings(
        auto_link_threshold=auto_link_threshold,
        ambiguity_margin=ambiguity_margin,
        review_floor=review_floor,
    )
    attempts: list[StrategyAttempt] = []
    best_fuzzy = 0.0
    for strategy in dict.fromkeys(strategies):  # each strategy once, in configured order
        if strategy not in applicable:
            kind = "companies" if isinstance(entity, CompanyIdentity) else "people"
            attempts.append(StrategyAttempt(strategy=strategy, detail=f"not applicable to {kind}"))
            continue
        decision: MatchDecision | None
        if strategy is MatchStrategy.COMPANY_NAME and isinstance(entity, CompanyIdentity):
            decision, score = _name_decision(
                entity,
                candidates,
                attempts,
                auto_link_threshold=auto_link_threshold,
                ambiguity_margin=ambiguity_margin,
                review_floor=review_floor,
            )
            best_fuzzy = max(best_fuzzy, score)
        else:
            decision = _exact_decision(strategy, entity, candidates, attempts, auto_link_threshold)
        if decision is not None:
            return decision
    tried = _history(attempts).removeprefix(" Tried before: ").rstrip(".")
    return MatchDecision(
        outcome=MatchOutcome.NO_MATCH,
        confidence=best_fuzzy,
        auto_link_threshold=auto_link_threshold,
        attempts=tuple(attempts),
        explanation=(
            f"no_match among {len(candidates)} candidate(s): "
            + (tried if tried else "no strategies configured")
            + "."
        ),
    )


def match_company(
    entity: CompanyIdentity,
    candidates: Sequence[PartnerCandidate],
    *,
    strategies: Sequence[MatchStrategy],
    **thresholds: Unpack[MatchThresholds],
) -> MatchDecision:
    """Match a Queast company to one of ``candidates`` using ``strategies`` in order.

    The first strategy that finds any candidate decides:

    * exact strategies (``partner_id``, ``domain``, ``linkedin_url``): one candidate -> linked
      with confidence 1.0; several candidates sharing the key -> ``ambiguous``;
    * ``company_name``: the best score >= ``auto_link_threshold`` and ahead of the runner-up by
      at least ``ambiguity_margin`` -> linked; otherwise ``ambiguous`` if the best score is at
      least ``review_floor``; lower scores count as finding nothing.

    Strategies that find nothing fall through to the next; if none finds anything the outcome
    is ``no_match``. ``email`` is not applicable to companies and is skipped (noted in the
    attempts). ``thresholds`` are :class:`MatchThresholds`; raises :class:`ValueError` for
    thresholds outside their ranges.
    """
    return _match(
        entity, candidates, strategies=strategies, applicable=COMPANY_STRATEGIES, **thresholds
    )


def match_person(
    entity: PersonIdentity,
    candidates: Sequence[PartnerCandidate],
    *,
    strategies: Sequence[MatchStrategy],
    **thresholds: Unpack[MatchThresholds],
) -> MatchDecision:
    """Match a Queast person to one of ``candidates`` using ``strategies`` in order.

    Same rules as :func:`match_company` with the strategies that identify people:
    ``partner_id``, ``email`` and ``linkedin_url`` (``/in/`` profiles). ``domain`` and
    ``company_name`` are not applicable to people and are skipped: a shared domain or a similar
    name does not identify a person. ``ambiguity_margin`` and ``review_floor`` are accepted for
    a uniform signature; exact strategies do not use them.
    """
    return _match(
        entity, candidates, strategies=strategies, applicable=PERSON_STRATEGIES, **thresholds
    )
