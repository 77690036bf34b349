"""First links in HubSpot: which objects to search for, how to pack the searches, and
which entity each result answers.

:func:`lookups` lists, per identity strategy, the lower-cased values an ``IN`` search
filter looks up for an entity (HubSpot's ``IN`` on a string property matches only
lower-case values): the Queast id property (``partner_id``), ``domain`` (companies),
``email`` (contacts), the LinkedIn property (``linkedin_company_page`` for companies,
``queast_linkedin_url`` for contacts, as the raw URL and as
``https://www.linkedin.com/company|in/<slug>``) and ``name`` (``company_name``).
:func:`search_requests` packs the distinct values of many entities into as few search
bodies as fit HubSpot's limits (at most 3,000 characters, measured on the exact bytes
:func:`~connectors.hubspot.bodies.encode_json` produces, with room left for a paging
``after``; at most five filter groups, one ``IN`` filter each).

Results are routed back to the entities that asked on keys (:func:`entity_keys`,
:func:`candidate_keys`): the Queast id as is; domains as the exact host HubSpot stores
(:func:`~connectors.base.matchkeys.clean_host`, IDNA-encoded), because the ``domain``
filter found the object by that host and only the entity that asked for it should get it
(the identity layer then decides by registrable domain, see
:mod:`connectors.base.matchkeys`); e-mail addresses lower-cased; LinkedIn URLs by
:func:`~connectors.base.matchkeys.normalize_linkedin_url`; names case-folded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from connectors.base.identity import EntityKind, IdentityCandidate
from connectors.base.matchkeys import (
    clean_email,
    clean_host,
    distinct,
    normalize_linkedin_url,
    stripped,
)
from connectors.hubspot.exports import CompanyWrite, PersonWrite

__all__ = [
    "DEFAULT_STRATEGIES",
    "MAX_SEARCH_BODY_CHARS",
    "SEARCH_PAGE_LIMIT",
    "Lookup",
    "LookupStrategy",
    "MatchKey",
    "SearchRequest",
    "applicable_strategies",
    "candidate_from_object",
    "candidate_keys",
    "entity_keys",
    "lookups",
    "search_properties",
    "search_requests",
]

MAX_SEARCH_BODY_CHARS: Final[int] = 3_000
"""HubSpot answers 400 to a search body longer than this (PARTNERS.md a, "Search")."""
SEARCH_PAGE_LIMIT: Final[int] = 200
"""Results per search page, HubSpot's maximum."""


class LookupStrategy(StrEnum):
    """The identity strategies lookups serve; the values are the identity layer's names."""

    PARTNER_ID = "partner_id"
    DOMAIN = "domain"
    EMAIL = "email"
    LINKEDIN_URL = "linkedin_url"
    COMPANY_NAME = "company_name"


_APPLICABLE: Final[Mapping[EntityKind, frozenset[LookupStrategy]]] = {
    EntityKind.COMPANY: frozenset(
        {
            LookupStrategy.PARTNER_ID,
            LookupStrategy.DOMAIN,
            LookupStrategy.LINKEDIN_URL,
            LookupStrategy.COMPANY_NAME,
        }
    ),
    EntityKind.PERSON: frozenset(
        {LookupStrategy.PARTNER_ID, LookupStrategy.EMAIL, LookupStrategy.LINKEDIN_URL}
    ),
}
DEFAULT_STRATEGIES: Final[Mapping[EntityKind, tuple[LookupStrategy, ...]]] = {
    EntityKind.COMPANY: (
        LookupStrategy.PARTNER_ID,
        LookupStrategy.DOMAIN,
        LookupStrategy.LINKEDIN_URL,
        LookupStrategy.COMPANY_NAME,
    ),
    EntityKind.PERSON: (
        LookupStrategy.PARTNER_ID,
        LookupStrategy.EMAIL,
        LookupStrategy.LINKEDIN_URL,
    ),
}
"""The identity layer's default strategy order, for resolvers that do not tell theirs."""

_LINKEDIN_PROPERTY: Final[Mapping[EntityKind, str]] = {
    EntityKind.COMPANY: "linkedin_company_page",
    EntityKind.PERSON: "queast_linkedin_url",
}

MatchKey = tuple[LookupStrategy, str]
"""A normalised key an entity and a partner object are compared on, by strategy."""


@dataclass(frozen=True, slots=True)
class Lookup:
    """One value an ``IN`` filter looks up: ``property_name`` equals ``value`` (lower-case)."""

    strategy: LookupStrategy
    property_name: str
    value: str


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One packed search body and the lookups it carries."""

    body: Mapping[str, Any]
    lookups: tuple[Lookup, ...]


def applicable_strategies(kind: EntityKind, names: Iterable[str]) -> tuple[LookupStrategy, ...]:
    """``names`` in order as strategies for ``kind``: unknown, inapplicable and repeated
    names are dropped (the identity layer skips them too)."""
    known = {s.value: s for s in LookupStrategy}
    found: dict[LookupStrategy, None] = {}
    for name in names:
        strategy = known.get(str(name))
        if strategy is not None and strategy in _APPLICABLE[kind]:
            found.setdefault(strategy, None)
    return tuple(found)


def _domain_key(value: str | None) -> str | None:
    """The host HubSpot stores, as a key (IDNA-encoded, lower case)."""
    host = clean_host(value)
    if host is None:
        return None
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host


_MAX_LOOKUPS_PER_STRATEGY: Final[int] = 3
"""Values looked up per strategy and entity (its first domains or addresses)."""
_MAX_SEARCH_VALUE_CHARS: Final[int] = 254
"""Longer values are not looked up (no real domain, address or name is that long)."""


def _fits(value: str) -> bool:
    return 0 < len(value) <= _MAX_SEARCH_VALUE_CHARS


def lookups(
    write: CompanyWrite | PersonWrite,
    strategies: Iterable[LookupStrategy],
    *,
    queast_id_property: str,
) -> tuple[Lookup, ...]:
    """The values to look up for ``write`` by ``strategies`` (see the module docstring).

    At most three values per strategy; values longer than 254 characters are left out.
    """
    found: dict[Lookup, None] = {}
    for strategy in strategies:
        if strategy not in _APPLICABLE[write.kind]:
            continue
        values: list[tuple[str, str]] = []
        if strategy is LookupStrategy.PARTNER_ID:
            values = [(queast_id_property, write.queast_id.lower())]
        elif strategy is LookupStrategy.DOMAIN and isinstance(write, CompanyWrite):
            for domain in write.domains[:_MAX_LOOKUPS_PER_STRATEGY]:
                values.append(("domain", domain))
                encoded = _domain_key(domain)
                if encoded is not None and encoded != domain:
                    values.append(("domain", encoded))
        elif strategy is LookupStrategy.EMAIL and isinstance(write, PersonWrite):
            values = [("email", e) for e in write.emails[:_MAX_LOOKUPS_PER_STRATEGY]]
        elif strategy is LookupStrategy.LINKEDIN_URL:
            canonical = normalize_linkedin_url(write.linkedin_url, kind=write.kind)
            if canonical is not None and write.linkedin_url is not None:
                prop = _LINKEDIN_PROPERTY[write.kind]
                values = [(prop, write.linkedin_url.lower()), (prop, f"https://www.{canonical}")]
        elif strategy is LookupStrategy.COMPANY_NAME and isinstance(write, CompanyWrite):
            values = [("name", write.name.lower())] if write.name else []
        for property_name, value in values:
            if _fits(value):
                found.setdefault(Lookup(strategy, property_name, value), None)
    return tuple(found)


def entity_keys(
    write: CompanyWrite | PersonWrite, strategies: Iterable[LookupStrategy]
) -> frozenset[MatchKey]:
    """The normalised keys of ``write`` for ``strategies`` (see the module docstring)."""
    keys: set[MatchKey] = set()
    for strategy in strategies:
        if strategy is LookupStrategy.PARTNER_ID:
            keys.add((strategy, write.queast_id))
        elif strategy is LookupStrategy.DOMAIN and isinstance(write, CompanyWrite):
            keys.update((strategy, d) for d in map(_domain_key, write.domains) if d)
        elif strategy is LookupStrategy.EMAIL and isinstance(write, PersonWrite):
            keys.update((strategy, e) for e in write.emails)
        elif strategy is LookupStrategy.LINKEDIN_URL:
            url = normalize_linkedin_url(write.linkedin_url, kind=write.kind)
            if url is not None:
                keys.add((strategy, url))
        elif (
            strategy is LookupStrategy.COMPANY_NAME
            and isinstance(write, CompanyWrite)
            and write.name
        ):
            keys.add((strategy, write.name.casefold()))
    return frozenset(keys)


def candidate_keys(candidate: IdentityCandidate, kind: EntityKind) -> frozenset[MatchKey]:
    """The normalised keys of a partner object, to match it back to the entities it answers."""
    keys: set[MatchKey] = {(LookupStrategy.PARTNER_ID, q) for q in candidate.queast_ids}
    if kind is EntityKind.COMPANY:
        keys.update((LookupStrategy.DOMAIN, d) for d in map(_domain_key, candidate.domains) if d)
        if candidate.name:
            keys.add((LookupStrategy.COMPANY_NAME, candidate.name.casefold()))
    else:
        keys.update((LookupStrategy.EMAIL, e) for e in candidate.emails)
    url = normalize_linkedin_url(candidate.linkedin_url, kind=kind)
    if url is not None:
        keys.add((LookupStrategy.LINKEDIN_URL, url))
    return frozenset(keys)


def search_properties(kind: EntityKind, *, queast_id_property: str) -> list[str]:
    """Properties a search asks for: what identity matching compares."""
    if kind is EntityKind.COMPANY:
        return [
            "name",
            "domain",
            "hs_additional_domains",
            "linkedin_company_page",
            queast_id_property,
        ]
    return [
        "email",
        "hs_additional_emails",
        "firstname",
        "lastname",
        "queast_linkedin_url",
        queast_id_property,
    ]


def _split(value: object) -> list[str]:
    return [part for part in str(value).split(";") if part.strip()] if value else []


def candidate_from_object(
    kind: EntityKind, obj: Mapping[str, Any], *, queast_id_property: str
) -> IdentityCandidate | None:
    """An identity candidate from a HubSpot search result (``None`` if it has no id)."""
    object_id = obj.get("id")
    if not isinstance(object_id, str | int) or isinstance(object_id, bool) or object_id == "":
        return None
    raw = obj.get("properties")
    props: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    queast_ids = distinct(
        [stripped(str(props[queast_id_property]))] if props.get(queast_id_property) else []
    )
    if kind is EntityKind.COMPANY:
        domains = distinct(
            clean_host(d)
            for d in [props.get("domain") or "", *_split(props.get("hs_additional_domains"))]
        )
        return IdentityCandidate(
            partner_object_id=str(object_id),
            name=stripped(str(props["name"])) if props.get("name") else None,
            domains=domains,
            linkedin_url=stripped(str(props.get("linkedin_company_page") or "")),
            queast_ids=queast_ids,
        )
    emails = distinct(
        clean_email(e)
        for e in [props.get("email") or "", *_split(props.get("hs_additional_emails"))]
    )
    name = " ".join(str(props[k]).strip() for k in ("firstname", "lastname") if props.get(k))
    return IdentityCandidate(
        partner_object_id=str(object_id),
        name=name or None,
        emails=emails,
        linkedin_url=stripped(str(props.get("queast_linkedin_url") or "")),
        queast_ids=queast_ids,
    )


_MAX_FILTER_GROUPS: Final[int] = 5
"""HubSpot's limit of filter groups per search body."""
_AFTER_RESERVE_CHARS: Final[int] = 24
"""Room kept in every packed body for ``,"after":"<cursor>"`` of a following page."""


def _in_group(property_name: str, values: Sequence[str]) -> dict[str, Any]:
    return {"filters": [{"propertyName": property_name, "operator": "IN", "values": list(values)}]}


def _size(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def search_requests(
    wanted: Iterable[Lookup],
    *,
    properties: Sequence[str],
    limit: int = SEARCH_PAGE_LIMIT,
    max_chars: int = MAX_SEARCH_BODY_CHARS,
) -> list[SearchRequest]:
    """Pack ``wanted`` into as few ``POST .../search`` bodies as HubSpot takes.

    One filter group per property, holding one ``IN`` filter with that property's values
    (groups are ORed); at most five groups per body; every body, encoded by
    :func:`encode_json`, at most ``max_chars`` long with room left for a paging ``after``.
    Lookups of the same property and value are sent once, in first-seen order. Raises
    ``ValueError`` when one value cannot fit in an empty body (``max_chars`` too small).
    """
    budget = max_chars - _AFTER_RESERVE_CHARS
    base = _size({"filterGroups": [], "properties": list(properties), "limit": limit})
    requests: list[SearchRequest] = []
    groups: dict[str, list[str]] = {}
    carried: list[Lookup] = []
    size = base

    def flush() -> None:
        nonlocal groups, carried, size
        if carried:
            body = {
                "filterGroups": [_in_group(p, v) for p, v in groups.items()],
                "properties": list(properties),
                "limit": limit,
            }
            requests.append(SearchRequest(body, tuple(carried)))
        groups, carried, size = {}, [], base

    seen: set[tuple[str, str]] = set()
    for lookup in wanted:
        key = (lookup.property_name, lookup.value)
        if key in seen:
            continue
        seen.add(key)
        for attempt in range(2):
            values = groups.get(lookup.property_name)
            if values is not None:
                cost = _size(lookup.value) + 1
            elif len(groups) < _MAX_FILTER_GROUPS:
                cost = _size(_in_group(lookup.property_name, [lookup.value])) + (1 if groups else 0)
            else:
                cost = budget + 1
            if size + cost <= budget:
                groups.setdefault(lookup.property_name, []).append(lookup.value)
                carried.append(lookup)
                size += cost
                break
            if attempt or not carried:
                msg = "a lookup value does not fit in a search body"
                raise ValueError(msg)
            flush()
    flush()
    return requests
