"""First-link lookups: the HubSpot objects an unlinked company or person may already be.

:func:`decide` looks the unlinked entities of one write up and lets the identity resolver
decide for each (linked to an object, no match, or ambiguous: held for review):

- one pass for the exact strategies (``partner_id``: the Queast id property; ``domain``;
  ``email``; ``linkedin_url``), in the connection's strategy order (the resolver may tell
  it through a ``strategies(kind)`` method, else the identity layer's defaults apply);
  every entity's values go in ``IN`` filters of the connection's shared searches
  (:class:`~connectors.hubspot.client.SearchBatcher`);
- then ``company_name`` only for the companies no earlier strategy found a candidate for;
  and, after ``identity.decide``, for those whose candidates all turned out unusable
  (``no_match``) and had no name lookup yet, followed by a second ``decide``;
- results are matched back to entities on normalised keys (:class:`_Finder`); each entity
  is offered the candidates that match it on a strategy it was looked up by, in the order
  HubSpot returned them.

A failed search fails the groups whose lookups it carried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from connectors.base.contract import CompanyRecord, PersonRecord
from connectors.base.errors import ConnectorError, HeldForReviewError, TransientError
from connectors.base.identity import EntityKind, EntityRecord, IdentityCandidate, IdentityOutcome
from connectors.base.tracing import carrying
from connectors.hubspot.client import RequestDeferred, SearchResult
from connectors.hubspot.exports import CompanyWrite
from connectors.hubspot.run import Group, Run, entity
from connectors.hubspot.search import (
    DEFAULT_STRATEGIES,
    LookupStrategy,
    MatchKey,
    applicable_strategies,
    candidate_from_object,
    candidate_keys,
    entity_keys,
    lookups,
)
from connectors.hubspot.writer import Writer

__all__ = ["decide"]


@runtime_checkable
class _StrategyListing(Protocol):
    """A resolver that tells its connection's identity strategies, in order."""

    def strategies(self, kind: EntityKind) -> Sequence[str]: ...


@dataclass(slots=True)
class _Finder:
    """The candidates one write's lookups found, and how they match its entities back."""

    kind: EntityKind
    strategies: tuple[LookupStrategy, ...]
    queast_id_property: str
    found: dict[str, IdentityCandidate] = field(default_factory=dict)
    position: dict[str, int] = field(default_factory=dict)
    index: dict[MatchKey, list[str]] = field(default_factory=dict)
    looked_up: dict[str, set[LookupStrategy]] = field(default_factory=dict)

    @property
    def exact(self) -> tuple[LookupStrategy, ...]:
        return tuple(s for s in self.strategies if s is not LookupStrategy.COMPANY_NAME)

    def add(self, obj: Mapping[str, object]) -> None:
        candidate = candidate_from_object(
            self.kind, obj, queast_id_property=self.queast_id_property
        )
        if candidate is None or candidate.partner_object_id in self.found:
            return
        self.position[candidate.partner_object_id] = len(self.found)
        self.found[candidate.partner_object_id] = candidate
        for key in candidate_keys(candidate, self.kind):
            self.index.setdefault(key, []).append(candidate.partner_object_id)

    def _matching(self, group: Group, strategies: Iterable[LookupStrategy]) -> set[str]:
        ids: set[str] = set()
        for key in entity_keys(entity(group), strategies):
            ids.update(self.index.get(key, ()))
        return ids

    def offered(self, group: Group) -> list[IdentityCandidate]:
        """The candidates matching ``group`` on a strategy it was looked up by, in the
        order HubSpot returned them."""
        ids = self._matching(group, self.looked_up.get(group.trace_id, ()))
        return [self.found[object_id] for object_id in sorted(ids, key=self.position.__getitem__)]

    def name_lookup_due(self, group: Group, *, after_no_match: bool = False) -> bool:
        """Whether ``group`` still needs its name looked up: the strategy applies, the
        company has a name, it was not looked up by name yet and (before deciding) no
        strategy ordered before ``company_name`` found a candidate for it."""
        name = LookupStrategy.COMPANY_NAME
        write = entity(group)
        if name not in self.strategies or not isinstance(write, CompanyWrite) or not write.name:
            return False
        if name in self.looked_up.get(group.trace_id, ()):
            return False
        if after_no_match:
            return True
        earlier = self.strategies[: self.strategies.index(name)]
        return not self._matching(group, earlier)


def _strategies(w: Writer, kind: EntityKind) -> tuple[LookupStrategy, ...]:
    resolver = w.resolver
    if isinstance(resolver, _StrategyListing):
        return applicable_strategies(kind, resolver.strategies(kind))
    return DEFAULT_STRATEGIES[kind]


async def decide(
    w: Writer, run: Run, kind: EntityKind, groups: list[Group]
) -> tuple[list[tuple[Group, str]], list[Group]]:
    """Look candidates up and let the resolver decide: (linked, to create)."""
    finder = _Finder(kind, _strategies(w, kind), w.config.queast_id_property)
    await _look_up(w, run, finder, groups, finder.exact)
    by_name = [g for g in run.open(groups) if finder.name_lookup_due(g)]
    await _look_up(w, run, finder, by_name, (LookupStrategy.COMPANY_NAME,))
    linked, unmatched = await _apply_decisions(w, run, kind, finder, run.open(groups))
    retry = [g for g in unmatched if finder.name_lookup_due(g, after_no_match=True)]
    retrying = {id(g) for g in retry}
    create = [g for g in unmatched if id(g) not in retrying]
    if retry:
        await _look_up(w, run, finder, retry, (LookupStrategy.COMPANY_NAME,))
        more, still_unmatched = await _apply_decisions(w, run, kind, finder, run.open(retry))
        linked += more
        create += still_unmatched
    return linked, create


def _entity_record(group: Group, kind: EntityKind) -> EntityRecord:
    """The typed contract record of the group's newest version (the one its write carries)."""
    if kind is EntityKind.COMPANY:
        return group.winner.contract(CompanyRecord)
    return group.winner.contract(PersonRecord)


async def _apply_decisions(
    w: Writer, run: Run, kind: EntityKind, finder: _Finder, groups: list[Group]
) -> tuple[list[tuple[Group, str]], list[Group]]:
    """``identity.decide`` for each group with its candidates: (linked, no match)."""
    linked: list[tuple[Group, str]] = []
    unmatched: list[Group] = []
    for group in groups:
        if not run.is_open(group):
            continue
        write = entity(group)
        offered = finder.offered(group)
        decision = await w.identity_call(
            run,
            group,
            w.resolver.decide(kind, write.queast_id, _entity_record(group, kind), offered),
        )
        if decision is None:
            continue
        if decision.outcome is IdentityOutcome.AMBIGUOUS:
            run.count("held")
            reason = "ambiguous identity match held for review"
            if decision.review_id:
                reason += f" (review {decision.review_id})"
            run.fail(group, HeldForReviewError(reason, partner=w.partner))
        elif decision.outcome is IdentityOutcome.NO_MATCH:
            unmatched.append(group)
        elif decision.partner_object_id:
            run.count("linked")
            run.links[(kind, write.queast_id)] = decision.partner_object_id
            linked.append((group, decision.partner_object_id))
        else:
            run.fail(
                group,
                TransientError("identity resolver linked without an object id", partner=w.partner),
            )
    return linked, unmatched


async def _look_up(
    w: Writer,
    run: Run,
    finder: _Finder,
    groups: list[Group],
    strategies: tuple[LookupStrategy, ...],
) -> None:
    """Search the values of ``groups`` for ``strategies``, packed; a failed search fails
    the groups it carried."""
    groups = run.open(groups)
    if not groups or not strategies:
        return
    wanted = {
        g.trace_id: lookups(entity(g), strategies, queast_id_property=finder.queast_id_property)
        for g in groups
    }
    for group in groups:
        finder.looked_up.setdefault(group.trace_id, set()).update(strategies)
    run.count("looked_up", sum(1 for values in wanted.values() if values))
    with carrying([r for g in groups for r in g.records]):
        answers = await w.searches[finder.kind].search(
            [lookup for values in wanted.values() for lookup in values]
        )
    for answer in answers:
        result = answer.result
        if isinstance(result, SearchResult):
            run.count("searches", result.requests)
            run.count("lookups", len(answer.keys))
            for obj in result.objects:
                finder.add(obj)
            continue
        if not isinstance(result, RequestDeferred | ConnectorError):
            raise result
        concerned = [
            g
            for g in groups
            if any((v.property_name, v.value) in answer.keys for v in wanted[g.trace_id])
        ]
        w.failed(run, run.open(concerned), result)
