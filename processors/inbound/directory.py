"""The per-tenant company directory: what the inbound agent matches highlights against.

Built from the tenant's ``company.upserted`` / ``company.deleted`` domain events by the
directory agent (:func:`processors.agents.inbound.register_inbound_agents`).

Keys, under ``QI_REDIS_KEY_PREFIX``, all ``tenant:{tenant}:*`` keys (so ``tenant purge``
removes them with the tenant's other keys):

- ``tenant:{tenant}:indir:companies``: hash ``company_id -> DirectoryEntry JSON`` (a deleted
  company stays as a tombstone holding its version, so an older upsert replayed later cannot
  bring it back);
- ``tenant:{tenant}:indir:{kind}:{value}``: sets of company ids, the reverse indexes, with
  kind ``domain`` (registrable domains,
  :func:`~connectors.base.matchkeys.normalize_domain`, shared platforms such as gmail.com left
  out), ``linkedin`` (:func:`~connectors.base.matchkeys.normalize_linkedin_url`), ``name``
  (:func:`~processors.identity.names.normalize_company_name`), ``token`` (a word of that
  name) and ``prefix`` (the first three letters of such a word, so that a misspelt name,
  "Siemans", finds "Siemens").

Versions: an event whose entity version is not newer than the stored one (upsert or tombstone)
changes nothing. A deletion removes the company from every index.

Fuzzy-name candidates are bounded: the exact normalised-name set, then the word and prefix
sets of the name, smallest first, skipping a set of more than :data:`MAX_TOKEN_FANOUT`
companies (a common word says nothing), until :data:`MAX_CANDIDATES` ids are gathered. The
candidates are then scored by the identity matcher; a name sharing neither a word nor a word's
first letters with a company does not find it.

Writer: one directory agent per tenant partition, so one writer per tenant at a time (a
rebalance may overlap two for a moment; both apply the same events in order and the version
check makes the second a no-op).

Why a separate agent on ``queast.domain-events`` rather than a hook in the routing agent: the
routing agent is the hot path and is being optimised on its own; a hook would put Redis writes
in its batches and tie the two changes together. A second agent of the same Faust app on the
same topic does not read it twice: Faust's consumer reads each record once and hands it to
both agents (the message is referenced by each and committable only once both acknowledged
it), so the cost is one more stream, and a slow directory only holds back the commit, never
the routing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis

from connectors.base.matchkeys import normalize_domain, normalize_linkedin_url
from processors.domain.events import CompanyData, DomainEventEnvelope, EventType
from processors.identity.names import normalize_company_name
from processors.identity.strategies import SHARED_DOMAINS

__all__ = [
    "MAX_CANDIDATES",
    "MAX_TOKEN_FANOUT",
    "CompanyDirectory",
    "DirectoryEntry",
    "DirectoryUpdate",
    "directory_update",
]

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 200
"""The most fuzzy-name candidates one lookup gathers."""
MAX_TOKEN_FANOUT = 500
"""A name word shared by more companies than this is not used to find candidates."""
_MAX_DOMAINS = 100
_PREFIX_LETTERS = 3
_COMPANY_EVENT_MARK = b"company."
"""Every company event's JSON holds this (its ``event_type``); a record without it is skipped
unparsed, so the directory costs the worker little JSON parsing beside the routing agent's."""


class DirectoryEntry(BaseModel):
    """One company of a tenant as the directory keeps it (or its tombstone)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company_id: str
    version: int
    deleted: bool = False
    name: str | None = None
    normalized_name: str | None = None
    domains: tuple[str, ...] = ()
    linkedin: str | None = None

    def tokens(self) -> list[str]:
        return _tokens(self.normalized_name)


class DirectoryUpdate(BaseModel):
    """What one domain event asks of the directory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    entry: DirectoryEntry


def _tokens(normalized: str | None) -> list[str]:
    return sorted({word for word in (normalized or "").split() if len(word) >= 2})


def _prefixes(tokens: Iterable[str]) -> list[str]:
    """The first letters of each word: a misspelt name still shares them with the right one."""
    return sorted({token[:_PREFIX_LETTERS] for token in tokens if len(token) > _PREFIX_LETTERS})


def _domains(company: CompanyData) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for value in [company.domain, company.website, *company.domains]:
        domain = normalize_domain(value)
        if domain is not None and domain not in SHARED_DOMAINS:
            found[domain] = None
    return tuple(found)[:_MAX_DOMAINS]


def directory_update(value: bytes | None) -> DirectoryUpdate | None:
    """The directory change a ``queast.domain-events`` record asks for, or ``None``.

    ``None`` for every other event type and for a record that does not parse (the routing
    agent dead-letters those; the directory only skips them).
    """
    if not value or _COMPANY_EVENT_MARK not in value:
        return None  # most domain events are not about companies: skip them without parsing
    try:
        envelope = DomainEventEnvelope.model_validate_json(value)
        if envelope.event_type is EventType.COMPANY_UPSERTED:
            company = CompanyData.model_validate(envelope.data)
            name = company.name
            normalized = normalize_company_name(name) if name else None
            entry = DirectoryEntry(
                company_id=company.company_id,
                version=company.version,
                name=name,
                normalized_name=normalized or None,
                domains=_domains(company),
                linkedin=normalize_linkedin_url(company.linkedin_url, kind="company"),
            )
        elif envelope.event_type is EventType.COMPANY_DELETED:
            company_id = envelope.data.get("company_id")
            version = envelope.data.get("version")
            if (
                not isinstance(company_id, str)
                or not company_id
                or isinstance(version, bool)
                or not isinstance(version, int)
            ):
                return None
            entry = DirectoryEntry(company_id=company_id, version=version, deleted=True)
        else:
            return None
    except (ValidationError, ValueError, TypeError):
        return None
    return DirectoryUpdate(tenant_id=envelope.tenant_id, entry=entry)


class CompanyDirectory:
    """The directory in Redis (see the module docstring for the keys)."""

    def __init__(self, redis: Redis, *, key_prefix: str) -> None:
        self._redis = redis
        self._prefix = key_prefix

    def _companies(self, tenant_id: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:indir:companies"

    def _index(self, tenant_id: str, kind: str, value: str) -> str:
        return f"{self._prefix}tenant:{tenant_id}:indir:{kind}:{value}"

    def _index_keys(self, tenant_id: str, entry: DirectoryEntry) -> list[str]:
        if entry.deleted:
            return []
        keys = [self._index(tenant_id, "domain", domain) for domain in entry.domains]
        if entry.linkedin:
            keys.append(self._index(tenant_id, "linkedin", entry.linkedin))
        if entry.normalized_name:
            keys.append(self._index(tenant_id, "name", entry.normalized_name))
        keys.extend(self._index(tenant_id, "token", token) for token in entry.tokens())
        keys.extend(self._index(tenant_id, "prefix", p) for p in _prefixes(entry.tokens()))
        return keys

    async def get(self, tenant_id: str, company_id: str) -> DirectoryEntry | None:
        """The live entry of ``company_id`` (``None`` if unknown or deleted)."""
        raw = await self._redis.hget(self._companies(tenant_id), company_id)
        if raw is None:
            return None
        entry = DirectoryEntry.model_validate_json(raw)
        return None if entry.deleted else entry

    async def entries(self, tenant_id: str, company_ids: Iterable[str]) -> list[DirectoryEntry]:
        ids = list(dict.fromkeys(company_ids))
        if not ids:
            return []
        raws = await self._redis.hmget(self._companies(tenant_id), ids)
        found = [DirectoryEntry.model_validate_json(raw) for raw in raws if raw is not None]
        return [entry for entry in found if not entry.deleted]

    async def apply(self, update: DirectoryUpdate) -> bool:
        """Apply one update; ``False`` if the stored version is as new or newer."""
        return await self.apply_many([update]) == 1

    async def apply_many(self, updates: Sequence[DirectoryUpdate]) -> int:
        """Apply a batch of updates in two Redis round trips; how many changed an entry.

        The result is the one applying each update in turn would leave: per company only the
        newest version of the batch counts (an older one would lose to it, or to the stored
        entry), and it is written only when newer than the stored one. The stored entries are
        read with one ``HMGET`` per tenant in one pipeline, and every index change and entry
        written in one transaction. Each tenant has one writer (its partition's directory
        agent), so nothing writes between the read and the write.
        """
        newest: dict[tuple[str, str], DirectoryUpdate] = {}
        for update in updates:
            key = (update.tenant_id, update.entry.company_id)
            held = newest.get(key)
            if held is None or update.entry.version > held.entry.version:
                newest[key] = update
        if not newest:
            return 0
        by_tenant: dict[str, list[str]] = {}
        for tenant_id, company_id in newest:
            by_tenant.setdefault(tenant_id, []).append(company_id)
        reads = self._redis.pipeline(transaction=False)
        for tenant_id, company_ids in by_tenant.items():
            reads.hmget(self._companies(tenant_id), company_ids)
        stored: dict[tuple[str, str], DirectoryEntry] = {}
        for (tenant_id, company_ids), raws in zip(
            by_tenant.items(), await reads.execute(), strict=True
        ):
            for company_id, raw in zip(company_ids, raws, strict=True):
                if raw is not None:
                    stored[tenant_id, company_id] = DirectoryEntry.model_validate_json(raw)
        writes = self._redis.pipeline(transaction=True)
        applied = 0
        for key, update in newest.items():
            tenant_id, entry = update.tenant_id, update.entry
            previous = stored.get(key)
            if previous is not None and previous.version >= entry.version:
                continue
            old_keys = set() if previous is None else set(self._index_keys(tenant_id, previous))
            new_keys = set(self._index_keys(tenant_id, entry))
            for index in old_keys - new_keys:
                writes.srem(index, entry.company_id)
            for index in new_keys - old_keys:
                writes.sadd(index, entry.company_id)
            writes.hset(self._companies(tenant_id), entry.company_id, entry.model_dump_json())
            applied += 1
        if applied:
            await writes.execute()
        return applied

    async def by_domain(self, tenant_id: str, domain: str) -> list[str]:
        return await self._members(self._index(tenant_id, "domain", domain))

    async def by_linkedin(self, tenant_id: str, linkedin: str) -> list[str]:
        return await self._members(self._index(tenant_id, "linkedin", linkedin))

    async def by_name(self, tenant_id: str, normalized_name: str) -> list[str]:
        """Bounded fuzzy candidates for a normalised name (see the module docstring)."""
        found: dict[str, None] = dict.fromkeys(
            await self._members(self._index(tenant_id, "name", normalized_name))
        )
        tokens = _tokens(normalized_name)
        keys = [self._index(tenant_id, "token", token) for token in tokens]
        keys += [self._index(tenant_id, "prefix", p) for p in _prefixes(tokens)]
        if keys:
            pipe = self._redis.pipeline(transaction=False)
            for key in keys:
                pipe.scard(key)
            sizes: Sequence[int] = await pipe.execute()
            for size, key in sorted(zip(sizes, keys, strict=True)):
                if len(found) >= MAX_CANDIDATES:
                    break
                if size == 0 or size > MAX_TOKEN_FANOUT:
                    continue
                found.update(dict.fromkeys(await self._members(key)))
        return list(found)[:MAX_CANDIDATES]

    async def _members(self, key: str) -> list[str]:
        members = await self._redis.smembers(key)
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
