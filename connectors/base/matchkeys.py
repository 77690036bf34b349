"""Match keys: the one meaning of "same company" (and "same person") for every layer.

Identity matching (``processors/identity``) and every connector compare Queast entities
with partner objects on the keys made here:

- :func:`normalize_domain`: the **registrable domain** (eTLD+1 by the public suffix list)
  of a domain, URL or e-mail address. Two companies are the same by domain when their
  registrable domains are equal: ``https://www.shop.acme.co.uk`` and ``acme.co.uk`` are
  one company; ``foo.github.io`` and ``bar.github.io`` are not (the private section of
  the list is used on purpose).
- :func:`normalize_email`: a validated, lower-cased address with an IDNA-encoded domain
  under a known public suffix; plus-tags and dots are kept (they can be distinct
  mailboxes).
- :func:`normalize_linkedin_url`: ``linkedin.com/company/<slug>`` or
  ``linkedin.com/in/<slug>``.

What a connector **writes** into a partner's property is a different thing, and has
different names on purpose: :func:`clean_host` is the host a partner stores as the
company's domain (HubSpot's ``domain``, Pipedrive's domain custom field). Cutting it to the
registrable domain would rewrite ``shop.acme.example`` into ``acme.example`` in the
partner's CRM, and a partner's exact-value search (HubSpot's ``IN`` filter, Pipedrive's
custom-field search) finds an object only by the host it stores. Likewise
:func:`clean_email` is the address as written into a partner's e-mail property: stripped
and lower-cased, never validated against the public suffix list (a partner keeps what it is
given; dropping an address because its TLD is unknown would lose data). Neither of them
decides whether two things are the same: that is always a ``normalize_*`` key.

Everything here is a pure function: no I/O, no clock, no mutable global state except the
lazily-built (immutable after construction) public suffix list.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from publicsuffixlist import PublicSuffixList

from connectors.base.identity import EntityKind

__all__ = [
    "LinkedInKind",
    "clean_email",
    "clean_host",
    "distinct",
    "normalize_domain",
    "normalize_email",
    "normalize_linkedin_url",
    "stripped",
]


def stripped(value: str | None) -> str | None:
    """``value`` without surrounding whitespace; ``None`` when missing or blank."""
    if value is None:
        return None
    text = value.strip()
    return text or None


def distinct(values: Iterable[str | None]) -> tuple[str, ...]:
    """The values that are not ``None``, each once, in first-seen order."""
    return tuple(dict.fromkeys(value for value in values if value is not None))


# --------------------------------------------------------------------------------------------
# Public suffix list (built once, lazily)
# --------------------------------------------------------------------------------------------


@functools.cache
def _public_suffix_list() -> PublicSuffixList:
    """Parse the bundled public suffix list on first use (ICANN and private sections).

    The private section is kept on purpose: ``foo.github.io`` and ``bar.github.io`` are different
    sites, so their registrable domains must differ.
    """
    return PublicSuffixList(accept_unknown=False)


_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.\-]*://", re.IGNORECASE)
_LABEL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?$")
_EMAIL_ATOM_RE = re.compile(r"^[^\s\"(),.:;<>@\[\]\\]+(?:\.[^\s\"(),.:;<>@\[\]\\]+)*$")
_MAX_HOSTNAME_LENGTH = 253
_MAX_EMAIL_LOCAL_LENGTH = 64


def _ascii_hostname(host: str) -> str | None:
    """Lowercase, IDNA-encode and validate a hostname; ``None`` if it is not a DNS name."""
    host = host.strip().rstrip(".").lower()
    if not host or any(ch.isspace() for ch in host):
        return None
    if ":" in host or host[-1].isdigit():  # only these can be IPv6 or IPv4 addresses
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            pass
        else:
            return None  # an IP address is not a domain
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    ascii_host = ascii_host.lower()
    if len(ascii_host) > _MAX_HOSTNAME_LENGTH:
        return None
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL_RE.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return ascii_host


def _email_parts(value: str) -> tuple[str, str] | None:
    """Split ``value`` into (local part, ASCII host) if it is shaped like an e-mail address."""
    text = value.strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].split("?", 1)[0]
    if text.endswith(">") and "<" in text:  # "Jane Doe <jane@acme.com>"
        text = text[text.rfind("<") + 1 : -1]
    text = text.strip()
    if text.count("@") != 1:
        return None
    local, _, host = text.partition("@")
    if not local or len(local) > _MAX_EMAIL_LOCAL_LENGTH or not _EMAIL_ATOM_RE.match(local):
        return None
    if any(unicodedata.category(ch).startswith("C") for ch in local):
        return None
    ascii_host = _ascii_hostname(host)
    if ascii_host is None or _public_suffix_list().privatesuffix(ascii_host) is None:
        return None
    return local, ascii_host


def _split_url(text: str, *, prefix: str) -> tuple[SplitResult, str | None] | None:
    """``text`` split as a URL, and its host; ``prefix`` is put before it when it has no
    scheme. ``None`` when it cannot be parsed (an unclosed ``[``, say)."""
    if not _SCHEME_RE.match(text):
        text = prefix + text.lstrip("/")
    try:
        split = urlsplit(text)
        return split, split.hostname
    except ValueError:
        return None


_CACHED_INPUT_CHARS = 300
"""Inputs up to this length are remembered by :func:`normalize_domain` (a domain is at most
253 characters; a website URL with a short path fits too), so a hostile long value is never
kept."""


def normalize_domain(value: str | None) -> str | None:
    """Return the registrable domain (eTLD+1) of a domain, URL or e-mail address.

    Accepts ``acme.com``, ``https://www.shop.acme.co.uk:8443/x?y``, ``jane@mail.acme.com`` or
    ``mailto:jane@acme.com``. The host is lowercased, its trailing dot, port, path, query and
    any ``www.``/other subdomain dropped, encoded with IDNA (the result is always ASCII, so
    ``münchen.de`` and ``xn--mnchen-3ya.de`` compare equal) and reduced to the registrable
    domain with the public suffix list: ``https://www.shop.example.co.uk/x`` gives
    ``example.co.uk``. Returns ``None`` for anything that is not a domain under a known public
    suffix: blanks, IP addresses, bare suffixes (``co.uk``), single labels (``localhost``),
    unknown TLDs and malformed hosts.

    The answers for the last 8,192 short inputs are remembered: a company event names its
    domain several times (domain, website, domains), and the directory and identity matching
    see the same companies again and again.
    """
    if value is not None and len(value) <= _CACHED_INPUT_CHARS:
        return _registrable_domain_cached(value)
    return _registrable_domain(value)


@functools.lru_cache(maxsize=8192)
def _registrable_domain_cached(value: str) -> str | None:
    return _registrable_domain(value)


def _registrable_domain(value: str | None) -> str | None:
    text = stripped(value)
    if text is None:
        return None
    host: str | None
    is_url = _SCHEME_RE.match(text) is not None or "/" in text
    if not is_url and ("@" in text or text[:7].lower() == "mailto:"):
        parts = _email_parts(text)
        host = parts[1] if parts else None
    else:
        parsed = _split_url(text, prefix="//")
        host = parsed[1] if parsed is not None else None
    if not host:
        return None
    ascii_host = _ascii_hostname(host)
    if ascii_host is None:
        return None
    registrable = _public_suffix_list().privatesuffix(ascii_host)
    return registrable if isinstance(registrable, str) else None


def normalize_email(value: str | None) -> str | None:
    """Return a comparable form of an e-mail address, or ``None`` if it is not one.

    Surrounding whitespace, a ``mailto:`` prefix and a ``Name <...>`` wrapper are removed, the
    address is lowercased (mail systems and CRMs treat addresses case-insensitively in
    practice) and the domain IDNA-encoded. The shape is validated: one ``@``, a dot-atom local
    part of at most 64 characters, and a domain under a known public suffix.

    Plus-tags and dots in the local part are deliberately **kept**: ``jane+billing@acme.com``
    and ``j.ane@acme.com`` can be distinct mailboxes (sub-addressing and dot-folding are
    provider-specific conventions, and shared aliases such as ``sales+emea@`` are routed
    differently), so folding them could merge two different people - a false link is worse
    than a missed one.
    """
    if value is None:
        return None
    parts = _email_parts(value)
    if parts is None:
        return None
    local, host = parts
    return f"{local.lower()}@{host}"


LinkedInKind = Literal["company", "person"]
"""Which kind of LinkedIn page: a company page (``/company/``) or a member profile (``/in/``).

The values are :class:`~connectors.base.identity.EntityKind`'s, so either may be passed."""

_LINKEDIN_PATH_KIND: dict[str, LinkedInKind] = {"company": "company", "in": "person"}
_MAX_LINKEDIN_SLUG_LENGTH = 200


def normalize_linkedin_url(
    value: str | None, *, kind: LinkedInKind | EntityKind | None = None
) -> str | None:
    """Return ``linkedin.com/company/<slug>`` or ``linkedin.com/in/<slug>``, or ``None``.

    Accepts http/https or no scheme, any ``linkedin.com`` subdomain (``www.``, ``uk.``, ``m.``),
    trailing slashes, sub-pages (``/company/acme/about/``), queries and fragments, and
    URL-encoded slugs; the slug is decoded, NFC-normalised and lowercased (LinkedIn slugs are
    case-insensitive). Other LinkedIn paths (``/feed/``, ``/school/``, ``/pub/``, jobs, posts),
    other hosts (``lnkd.in``, ``linkedin.com.evil.example``) and URLs with credentials return
    ``None``. With ``kind``, only that kind of page is accepted.
    """
    text = stripped(value)
    parsed = _split_url(text, prefix="https://") if text is not None else None
    if parsed is None:
        return None
    split, host = parsed
    if split.scheme.lower() not in {"http", "https"} or split.username is not None or not host:
        return None
    host = host.rstrip(".")
    if host != "linkedin.com" and not host.endswith(".linkedin.com"):
        return None
    segments = [unquote(segment) for segment in split.path.split("/") if segment]
    if len(segments) < 2:
        return None
    path_kind = segments[0].lower()
    page_kind = _LINKEDIN_PATH_KIND.get(path_kind)
    if page_kind is None or (kind is not None and page_kind != kind):
        return None
    slug = unicodedata.normalize("NFC", segments[1]).strip().lower()
    if not slug or len(slug) > _MAX_LINKEDIN_SLUG_LENGTH or not _plain_slug(slug):
        return None
    return f"linkedin.com/{path_kind}/{slug}"


_ASCII_SLUG_REJECT = re.compile(r"[\x00-\x20\x7f/?#]")
"""In ASCII, exactly the whitespace and control characters, and URL delimiters."""


def _plain_slug(slug: str) -> bool:
    """No whitespace, control or format character and no ``/``, ``?`` or ``#`` in ``slug``."""
    if slug.isascii():
        return _ASCII_SLUG_REJECT.search(slug) is None
    return not any(
        ch.isspace() or ch in "/?#" or unicodedata.category(ch).startswith("C") for ch in slug
    )


# --------------------------------------------------------------------------------------------
# What is written to a partner (not match keys)
# --------------------------------------------------------------------------------------------


def clean_host(value: str | None) -> str | None:
    """The bare host a partner stores as a company's domain, or ``None``.

    Lower-cased; scheme, user info, port, path, query, fragment, surrounding dots and a
    leading ``www.`` dropped: ``https://www.Shop.Example.com:8443/x`` -> ``shop.example.com``.
    Not cut to the registrable domain and not validated (see the module docstring).
    """
    text = stripped(value)
    if text is None:
        return None
    text = text.lower()
    if "://" in text:
        text = text.split("://", 1)[1]
    for separator in ("/", "?", "#"):
        text = text.split(separator, 1)[0]
    text = text.rsplit("@", 1)[-1].split(":", 1)[0].strip(".")
    text = text.removeprefix("www.")
    return text or None


def clean_email(value: str | None) -> str | None:
    """The address a partner stores: stripped and lower-cased; ``None`` without an ``@``."""
    text = stripped(value)
    if text is None or "@" not in text:
        return None
    return text.lower()
