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
    Fuzzy similarity of normalised names (:func:`company_name_similarity`) in ``[0, 1]``.

Exact strategies give confidence 1.0 when exactly one candidate matches and an ``ambiguous``
outcome when several do. The fuzzy strategy auto-links only when the best score reaches the
auto-link threshold *and* beats the runner-up by the ambiguity margin; a best score at or above
the review floor is ``ambiguous``; anything lower is no evidence at all. Every
:class:`MatchDecision` records the strategy, the score, the normalised values compared, the
runner-up and a human-readable explanation. Auto-linked decisions are still meant to be listed
for review; the threshold only decides whether a link is made without waiting for a human.

Everything here is a pure function of its arguments: no I/O, no clock, no global mutable state
except the lazily-built (immutable after construction) public suffix list.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Literal
from urllib.parse import unquote, urlsplit

from publicsuffixlist import PublicSuffixList
from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz.distance import OSA, Levenshtein

__all__ = [
    "DEFAULT_AMBIGUITY_MARGIN",
    "DEFAULT_AUTO_LINK_THRESHOLD",
    "DEFAULT_COMPANY_STRATEGIES",
    "DEFAULT_PERSON_STRATEGIES",
    "DEFAULT_REVIEW_FLOOR",
    "SHARED_DOMAINS",
    "CompanyIdentity",
    "LinkedInKind",
    "MatchDecision",
    "MatchOutcome",
    "MatchStrategy",
    "NameSimilarity",
    "PartnerCandidate",
    "PersonIdentity",
    "StrategyAttempt",
    "company_name_similarity",
    "explain_company_name_similarity",
    "match_company",
    "match_person",
    "normalize_company_name",
    "normalize_domain",
    "normalize_email",
    "normalize_linkedin_url",
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

_WORD_ORDER_FACTOR = 0.96
"""Score of names whose words are equal but in a different order (reordering is a weaker signal)."""

_EQUAL_KEY_SCORE = 0.98
"""Score of names that differ only in 'and'/'of', a known abbreviation, or a plural/possessive s."""

_NUMBER_MISMATCH_CAP = 0.5
"""Upper bound of the score when the names carry different numbers ("Studio 54"/"Studio 55")."""

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


# --------------------------------------------------------------------------------------------
# Domains and e-mail addresses
# --------------------------------------------------------------------------------------------

SHARED_DOMAINS: frozenset[str] = frozenset(
    {
        # free / consumer mail providers
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "mail.ru",
        "yandex.ru",
        "qq.com",
        "163.com",
        "zoho.com",
        # platforms a small company's "website" often points into
        "google.com",
        "facebook.com",
        "instagram.com",
        "linkedin.com",
        "twitter.com",
        "x.com",
        "youtube.com",
        "linktr.ee",
        "wixsite.com",
        "wordpress.com",
        "squarespace.com",
        "yelp.com",
    }
)
"""Registrable domains that identify a platform rather than the company using it.

Matching two companies because both list ``gmail.com`` or a ``facebook.com/...`` page as their
website would be a false link, so these are ignored by the ``domain`` strategy.
"""

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
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    host: str | None
    is_url = _SCHEME_RE.match(text) is not None or "/" in text
    if not is_url and ("@" in text or text[:7].lower() == "mailto:"):
        parts = _email_parts(text)
        host = parts[1] if parts else None
    else:
        if not _SCHEME_RE.match(text):
            text = "//" + text.lstrip("/")
        try:
            split = urlsplit(text)
            host = split.hostname
        except ValueError:
            return None
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
"""Which kind of LinkedIn page: a company page (``/company/``) or a member profile (``/in/``)."""

_LINKEDIN_PATH_KIND: dict[str, LinkedInKind] = {"company": "company", "in": "person"}
_MAX_LINKEDIN_SLUG_LENGTH = 200


def normalize_linkedin_url(value: str | None, *, kind: LinkedInKind | None = None) -> str | None:
    """Return ``linkedin.com/company/<slug>`` or ``linkedin.com/in/<slug>``, or ``None``.

    Accepts http/https or no scheme, any ``linkedin.com`` subdomain (``www.``, ``uk.``, ``m.``),
    trailing slashes, sub-pages (``/company/acme/about/``), queries and fragments, and
    URL-encoded slugs; the slug is decoded, NFC-normalised and lowercased (LinkedIn slugs are
    case-insensitive). Other LinkedIn paths (``/feed/``, ``/school/``, ``/pub/``, jobs, posts),
    other hosts (``lnkd.in``, ``linkedin.com.evil.example``) and URLs with credentials return
    ``None``. With ``kind``, only that kind of page is accepted.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if not _SCHEME_RE.match(text):
        text = "https://" + text.lstrip("/")
    try:
        split = urlsplit(text)
        host = split.hostname
    except ValueError:
        return None
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
    if (
        not slug
        or len(slug) > _MAX_LINKEDIN_SLUG_LENGTH
        or any(
            ch.isspace() or ch in "/?#" or unicodedata.category(ch).startswith("C") for ch in slug
        )
    ):
        return None
    return f"linkedin.com/{path_kind}/{slug}"


# --------------------------------------------------------------------------------------------
# Company names
# --------------------------------------------------------------------------------------------

_APOSTROPHES = str.maketrans("", "", "'\u2018\u2019\u02bc\u0060\u00b4")
_TRANSLITERATION = str.maketrans(
    {
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ł": "l",
        "æ": "ae",
        "œ": "oe",
        "\u0131": "i",
        "ß": "ss",
    }
)


def _fold(text: str) -> str:
    """Casefold, decompose (NFKD), drop combining marks and transliterate a few letters."""
    for _ in range(2):  # casefolding can create combining marks and NFKD can create capitals
        text = unicodedata.normalize("NFKD", text.casefold())
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
        text = text.translate(_TRANSLITERATION)
    return text


def _words(text: str) -> list[str]:
    """Fold ``text`` and split it into alphanumeric words (``&`` becomes ``and``).

    Apostrophes vanish (``McDonald's`` -> ``mcdonalds``) and every other non-alphanumeric
    character separates words.
    """
    folded = _fold(text).translate(_APOSTROPHES).replace("&", " and ")
    return "".join(ch if ch.isalnum() else " " for ch in folded).split()


def _join_initials(words: Sequence[str]) -> list[str]:
    """Join runs of single characters, so ``I.B.M.``/``I B M`` -> ``ibm`` and ``A/S`` -> ``as``."""
    joined: list[str] = []
    run: list[str] = []
    for word in words:
        if len(word) == 1:
            run.append(word)
            continue
        if run:
            joined.append("".join(run))
            run = []
        joined.append(word)
    if run:
        joined.append("".join(run))
    return joined


_LEGAL_SUFFIX_SOURCES = (
    # English-speaking world
    "inc", "incorporated", "corp", "corporation", "co", "cos", "company", "companies", "llc",
    "l.l.c.", "lc", "ltd", "limited", "plc", "p.l.c.", "lp", "llp", "lllp", "pllc", "pc", "na",
    "pty", "pty ltd", "pte", "pte ltd", "pvt", "pvt ltd", "private limited", "co ltd",
    "public limited company", "limited liability company", "limited partnership",
    "limited liability partnership", "& co", "and company", "com",
    # German-speaking world
    "gmbh", "mbh", "ggmbh", "ag", "aktiengesellschaft", "kg", "kgaa", "ohg", "ug", "e.k.", "e.v.",
    "gbr", "gmbh & co. kg", "gmbh & co. kgaa", "ag & co. kg", "ag & co. kgaa", "se & co. kg",
    "se & co. kgaa", "& co. kg", "und co", "se",
    # Romance languages
    "sa", "s.a.", "sas", "sasu", "sarl", "s.a r.l.", "s.a.r.l.", "eurl", "sca", "snc", "sci",
    "& cie", "et cie", "spa", "s.p.a.", "srl", "s.r.l.", "srls", "sapa", "& c.", "& c. s.p.a.",
    "& c. s.a.s.", "& c. s.n.c.", "& c. s.r.l.", "sl", "s.l.",
    "slu", "sll", "& cia", "y cia", "ltda", "sab de cv", "sa de cv", "de cv", "s de rl",
    "s de rl de cv", "sapi de cv",
    # Benelux, Nordics, Baltics
    "bv", "b.v.", "bvba", "nv", "n.v.", "cv", "vof", "oy", "oyj", "ab", "abp", "(publ)", "as",
    "a/s", "asa", "aps", "hf", "ehf", "ou", "uab", "sia",
    # Central and Eastern Europe
    "sp. z o.o.", "s.a.", "a.s.", "s.r.o.", "spol. s r.o.", "kft", "zrt", "nyrt", "bt", "d.o.o.",
    "d.d.", "ad", "ooo", "oao", "zao", "pao", "pjsc", "ojsc", "cjsc", "jsc", "tov",
    # Asia-Pacific
    "kk", "kabushiki kaisha", "gk", "godo kaisha", "bhd", "berhad", "sdn bhd", "tbk",
)  # fmt: skip
"""Legal-form words; written as registered, tokenised like names at import time."""

_LEGAL_PREFIX_SOURCES = ("pt", "ooo", "oao", "zao", "pao", "pjsc", "ojsc", "cjsc", "jsc", "uab")
"""Legal forms conventionally written before the name ("PT Bank Central Asia", "OOO Yandex")."""


def _legal_forms(sources: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """Tokenise legal forms like names, longest first so that longer forms win."""
    forms = {tuple(_join_initials(_words(source))) for source in sources}
    return tuple(sorted((form for form in forms if form), key=lambda form: (-len(form), form)))


_LEGAL_SUFFIXES = _legal_forms(_LEGAL_SUFFIX_SOURCES)
_LEGAL_PREFIXES = _legal_forms(_LEGAL_PREFIX_SOURCES)


def _strip_legal_forms(words: list[str]) -> list[str]:
    """Drop "The" and legal forms at the ends of ``words``, never emptying the name."""
    if len(words) > 1 and words[0] == "the":
        words = words[1:]
    changed = True
    while changed and len(words) > 1:
        changed = False
        if words[-1] == "the":  # "Boeing Company, The"
            words = words[:-1]
            changed = True
            continue
        for form in _LEGAL_SUFFIXES:
            if len(form) < len(words) and tuple(words[-len(form) :]) == form:
                words = words[: -len(form)]
                changed = True
                break
    for form in _LEGAL_PREFIXES:
        if len(form) < len(words) and tuple(words[: len(form)]) == form:
            words = words[len(form) :]
            break
    return words


@functools.lru_cache(maxsize=8192)
def normalize_company_name(name: str) -> str:
    """Normalise a company name for comparison.

    Casefolds, decomposes (NFKD) and strips accents (``Nestlé`` -> ``nestle``, ``Ørsted`` ->
    ``orsted``), removes apostrophes, turns ``&`` into ``and``, turns other punctuation into
    spaces, joins single-letter initialisms (``S.A.``/``A/S``/``I.B.M.``), drops a leading
    ``The`` (and a trailing ``, The``), strips legal forms repeatedly from the end
    (``Henkel AG & Co. KGaA`` -> ``henkel``; ``Samsung Electronics Co., Ltd.`` ->
    ``samsung electronics``) and a few conventionally prefixed ones (``PT``, ``OOO``, ``PJSC``),
    and collapses whitespace. A legal form that is the whole name is kept (``AG`` stays ``ag``).
    Returns ``""`` for names without letters or digits.
    """
    return " ".join(_strip_legal_forms(_join_initials(_words(name))))


_KEY_STOPWORDS = frozenset({"and", "und", "et", "of", "the"})
_KEY_ABBREVIATIONS = {
    "intl": "international",
    "natl": "national",
    "mfg": "manufacturing",
    "bros": "brothers",
    "lab": "laboratory",
    "labs": "laboratories",
    "assoc": "associates",
    "assn": "association",
    "svc": "service",
    "svcs": "services",
    "mgmt": "management",
    "hldg": "holding",
    "hldgs": "holdings",
    "grp": "group",
    "ctr": "center",
    "centre": "center",
    "dept": "department",
    "univ": "university",
}
_MIN_STEM_LENGTH = 5
_ROMAN_NUMERAL_RE = re.compile(r"^(?=[ivx])x{0,3}(?:ix|iv|v?i{0,3})$")
_ROMAN_VALUES = {"i": 1, "v": 5, "x": 10}


def _s_stem(word: str) -> str:
    """Harman's "S" stemmer (plural and possessive s) for words of five letters or more."""
    if len(word) < _MIN_STEM_LENGTH or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def _comparison_words(normalized: str) -> tuple[str, ...]:
    """Words compared by the scorer: no 'and'/'of'/'the', abbreviations expanded, s-stemmed."""
    words = normalized.split()
    kept = [word for word in words if word not in _KEY_STOPWORDS] or words
    return tuple(_s_stem(_KEY_ABBREVIATIONS.get(word, word)) for word in kept)


def _roman_value(word: str) -> int:
    """Value of a (validated) Roman numeral of at most 39."""
    total = 0
    for index, char in enumerate(word):
        value = _ROMAN_VALUES[char]
        following = _ROMAN_VALUES[word[index + 1]] if index + 1 < len(word) else 0
        total += -value if value < following else value
    return total


def _numbers(words: Sequence[str]) -> tuple[tuple[int, ...], str]:
    """The numbers in ``words`` (digits and Roman numerals), sorted, and their digit string."""
    values: list[int] = []
    digits: list[str] = []
    for word in words:
        if _ROMAN_NUMERAL_RE.match(word):
            values.append(_roman_value(word))
            digits.append(str(_roman_value(word)))
            continue
        for group in re.findall(r"\d+", word):
            values.append(int(group))
            digits.append(group)
    return tuple(sorted(values)), "".join(digits)


def _typo_similarity(a: str, b: str) -> float:
    """Edit similarity ``1 - edits / longer length`` where a swap of neighbours is half an edit.

    Adjacent transposition is the commonest typing error, and two different brands rarely
    differ only by one, so it costs half of a substitution, insertion or deletion. The number of
    transpositions is estimated as Levenshtein minus OSA distance (Levenshtein charges 2 for a
    swap, OSA 1), which never overestimates it.
    """
    longest = max(len(a), len(b))
    if longest == 0:
        return 1.0
    osa = OSA.distance(a, b)
    swaps = Levenshtein.distance(a, b) - osa
    return max(0.0, 1.0 - (osa - 0.5 * swaps) / longest)


_JOIN_MIN_SIMILARITY = 0.75
_MAX_ALIGNED_WORDS = 24  # re-segmentation is quadratic in words; real names have far fewer
_MAX_NAME_LENGTH = 512  # CRM name fields are shorter; bounds the cost of hostile input


def _best_similarity(word: str, others: Sequence[str]) -> float:
    """Highest similarity of ``word`` to any of ``others`` (0.0 if there are none)."""
    return max((_typo_similarity(word, other) for other in others), default=0.0)


def _align_segmentation(
    words_a: Sequence[str], words_b: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Join neighbouring words where the joined word matches a word of the other name better.

    So that "Exxon Mobile" pairs with "ExxonMobil" as ``exxonmobile``/``exxonmobil`` rather
    than as ``exxon``/``exxonmobil``.
    """
    sides = [list(words_a), list(words_b)]
    changed = True
    while changed:
        changed = False
        for side, other in ((sides[0], sides[1]), (sides[1], sides[0])):
            for index in range(len(side) - 1):
                joined = side[index] + side[index + 1]
                gain = _best_similarity(joined, other)
                parts = max(
                    _best_similarity(side[index], other), _best_similarity(side[index + 1], other)
                )
                if gain >= _JOIN_MIN_SIMILARITY and gain > parts:
                    side[index : index + 2] = [joined]
                    changed = True
                    break
            if changed:
                break
    return tuple(sides[0]), tuple(sides[1])


def _weakest_word_pair(
    words_a: Sequence[str], words_b: Sequence[str]
) -> tuple[float, str, str] | None:
    """Pair words one-to-one, most similar first; return the least similar pair that differs.

    ``None`` when every paired word is identical (extra, unpaired words are left to the
    character-level score).
    """
    pairs = sorted(
        (
            (-_typo_similarity(word_a, word_b), index_a, index_b)
            for index_a, word_a in enumerate(words_a)
            for index_b, word_b in enumerate(words_b)
        )
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    weakest: tuple[float, str, str] | None = None
    for negative_similarity, index_a, index_b in pairs:
        if index_a in used_a or index_b in used_b:
            continue
        used_a.add(index_a)
        used_b.add(index_b)
        similarity = -negative_similarity
        if similarity < 1.0 and (weakest is None or similarity < weakest[0]):
            weakest = (similarity, words_a[index_a], words_b[index_b])
    return weakest


class NameSimilarity(BaseModel):
    """A company-name similarity score with the normalised forms and the reason for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    score: float = Field(ge=0.0, le=1.0)
    normalized_a: str
    normalized_b: str
    reason: str


@functools.lru_cache(maxsize=65536)
def explain_company_name_similarity(a: str, b: str) -> NameSimilarity:
    """Score how likely two company names denote the same company, with the reason.

    Both names are normalised (:func:`normalize_company_name`), then:

    1. equal after normalisation (ignoring spaces, so ``PayPal``/``Pay Pal``) -> **1.0**;
       an empty normalised name -> **0.0** (a blank name is never evidence);
    2. equal after also ignoring ``and``/``of``, expanding common abbreviations
       (``Intl``, ``Mfg``, ``Bros``, ``Labs``...) and plural/possessive ``s`` -> **0.98**;
    3. otherwise the lower of

       * the character similarity of the whole names (spaces removed; word order tried too,
         at a 0.96 discount), and
       * the similarity of the *least similar pair of words* once words are paired
         one-to-one - a name is only as close as its most different word, so
         "Acme Health"/"Acme Wealth" (0.83) is not rescued by the shared "Acme";

       where a similarity is ``1 - edits / length`` with an adjacent swap counting half;
    4. names carrying different numbers (``Studio 54``/``Studio 55``, ``Fund II``/``Fund III``)
       are capped at 0.5.

    Extra words lower the character similarity ("Acme"/"Acme Robotics" is 0.36). The result is
    symmetric and in ``[0, 1]``. Only the first 512 characters of each name are considered.
    """
    a, b = a[:_MAX_NAME_LENGTH], b[:_MAX_NAME_LENGTH]
    normalized_a = normalize_company_name(a)
    normalized_b = normalize_company_name(b)
    if (normalized_a, a) > (normalized_b, b):  # canonical order makes every step symmetric
        return _swapped(explain_company_name_similarity(b, a))

    def result(score: float, reason: str) -> NameSimilarity:
        return NameSimilarity(
            score=round(min(1.0, max(0.0, score)), 6),
            normalized_a=normalized_a,
            normalized_b=normalized_b,
            reason=reason,
        )

    if not normalized_a or not normalized_b:
        return result(0.0, "a name is empty after normalisation")
    if normalized_a.replace(" ", "") == normalized_b.replace(" ", ""):
        return result(1.0, "equal after normalisation")

    words_a = _comparison_words(normalized_a)
    words_b = _comparison_words(normalized_b)
    numbers_a, digits_a = _numbers(words_a)
    numbers_b, digits_b = _numbers(words_b)
    number_mismatch = numbers_a != numbers_b and digits_a != digits_b

    compact_a, compact_b = "".join(words_a), "".join(words_b)
    if compact_a == compact_b:
        score = _EQUAL_KEY_SCORE
        reason = "equal apart from and/of, abbreviations or plural s"
    else:
        in_order = _typo_similarity(compact_a, compact_b)
        reordered = _WORD_ORDER_FACTOR * _typo_similarity(
            "".join(sorted(words_a)), "".join(sorted(words_b))
        )
        score = max(in_order, reordered)
        reason = (
            f"character similarity {in_order:.2f}"
            if in_order >= reordered
            else f"character similarity {reordered:.2f} after reordering words"
        )
        if max(len(words_a), len(words_b)) <= _MAX_ALIGNED_WORDS:
            words_a, words_b = _align_segmentation(words_a, words_b)
        weakest = _weakest_word_pair(words_a, words_b)
        if weakest is not None and weakest[0] < score:
            score = weakest[0]
            reason = f"least similar words {weakest[1]!r}/{weakest[2]!r} at {weakest[0]:.2f}"
    if number_mismatch and score > _NUMBER_MISMATCH_CAP:
        score = _NUMBER_MISMATCH_CAP
        reason = f"different numbers {list(numbers_a)} vs {list(numbers_b)}"
    return result(score, reason)


def _swapped(similarity: NameSimilarity) -> NameSimilarity:
    """The same similarity with the two names' roles exchanged."""
    return similarity.model_copy(
        update={"normalized_a": similarity.normalized_b, "normalized_b": similarity.normalized_a}
    )


def company_name_similarity(a: str, b: str) -> float:
    """Similarity in ``[0, 1]`` of two company names; symmetric; 1.0 when equal after normalisation.

    See :func:`explain_company_name_similarity` for how the score is made and why. Names that
    are empty after normalisation (blank, punctuation only) score 0.0 against anything.
    """
    return explain_company_name_similarity(a, b).score


# --------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------


class MatchStrategy(StrEnum):
    """How an entity can be matched to a partner object; configured per connection, in order."""

    PARTNER_ID = "partner_id"
    DOMAIN = "domain"
    EMAIL = "email"
    LINKEDIN_URL = "linkedin_url"
    COMPANY_NAME = "company_name"


class MatchOutcome(StrEnum):
    """What the matcher decided."""

    AUTO_LINKED = "auto_linked"
    """One candidate at or above the auto-link threshold, clearly ahead; linked (and listed)."""
    AMBIGUOUS = "ambiguous"
    """Possible candidates, but not safe to link: needs a human."""
    NO_MATCH = "no_match"
    """No candidate found by any configured strategy."""


DEFAULT_COMPANY_STRATEGIES: tuple[MatchStrategy, ...] = (
    MatchStrategy.PARTNER_ID,
    MatchStrategy.DOMAIN,
    MatchStrategy.LINKEDIN_URL,
    MatchStrategy.COMPANY_NAME,
)
"""A sensible order for companies: explicit links, then exact keys, then the fuzzy name."""

DEFAULT_PERSON_STRATEGIES: tuple[MatchStrategy, ...] = (
    MatchStrategy.PARTNER_ID,
    MatchStrategy.EMAIL,
    MatchStrategy.LINKEDIN_URL,
)
"""A sensible order for people (names of people are not matched fuzzily)."""

_COMPANY_STRATEGIES = frozenset(
    {
        MatchStrategy.PARTNER_ID,
        MatchStrategy.DOMAIN,
        MatchStrategy.LINKEDIN_URL,
        MatchStrategy.COMPANY_NAME,
    }
)
_PERSON_STRATEGIES = frozenset(
    {MatchStrategy.PARTNER_ID, MatchStrategy.EMAIL, MatchStrategy.LINKEDIN_URL}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CompanyIdentity(_Frozen):
    """What Queast knows about a company that can identify it in a partner CRM."""

    company_id: str = Field(min_length=1)
    name: str | None = None
    domain: str | None = None
    domains: tuple[str, ...] = ()
    website: str | None = None
    linkedin_url: str | None = None
    partner_id_hints: tuple[str, ...] = ()
    """Partner object ids this company is already known to correspond to (e.g. a prior link)."""


class PersonIdentity(_Frozen):
    """What Queast knows about a person that can identify them in a partner CRM."""

    person_id: str = Field(min_length=1)
    full_name: str | None = None
    email: str | None = None
    emails: tuple[str, ...] = ()
    linkedin_url: str | None = None
    partner_id_hints: tuple[str, ...] = ()
    """Partner object ids this person is already known to correspond to (e.g. a prior link)."""


class PartnerCandidate(_Frozen):
    """A partner CRM object (HubSpot company, Pipedrive person, ...) that might be the entity."""

    partner_object_id: str = Field(min_length=1)
    name: str | None = None
    domains: tuple[str, ...] = ()
    """Domains or website URLs recorded on the object."""
    emails: tuple[str, ...] = ()
    linkedin_url: str | None = None
    queast_ids: tuple[str, ...] = ()
    """Queast company/person ids stored on the partner object (e.g. a ``queast_id`` property)."""


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


# ---- per-strategy key extraction -----------------------------------------------------------


def _clean_ids(values: Iterable[str | None]) -> list[str]:
    """Stripped, non-empty, de-duplicated ids in their original order."""
    seen: dict[str, None] = {}
    for value in values:
        if value is not None and value.strip():
            seen.setdefault(value.strip(), None)
    return list(seen)


def _domains(values: Iterable[str | None]) -> tuple[list[str], list[str]]:
    """Registrable domains of ``values`` (in order, unique) and the ignored shared ones."""
    usable: dict[str, None] = {}
    shared: dict[str, None] = {}
    for value in values:
        domain = normalize_domain(value)
        if domain is None:
            continue
        (shared if domain in SHARED_DOMAINS else usable).setdefault(domain, None)
    return list(usable), list(shared)


def _emails(values: Iterable[str | None]) -> list[str]:
    """Normalised e-mail addresses of ``values`` (in order, unique)."""
    return list({email: None for value in values if (email := normalize_email(value))})


def _entity_keys(strategy: MatchStrategy, entity: CompanyIdentity | PersonIdentity) -> list[str]:
    """The normalised keys of ``entity`` that an exact strategy compares."""
    if strategy is MatchStrategy.PARTNER_ID:
        entity_id = entity.company_id if isinstance(entity, CompanyIdentity) else entity.person_id
        hints = [f"partner:{hint}" for hint in _clean_ids(entity.partner_id_hints)]
        return [*hints, *(f"queast:{qid}" for qid in _clean_ids([entity_id]))]
    if strategy is MatchStrategy.DOMAIN and isinstance(entity, CompanyIdentity):
        return _domains([entity.domain, *entity.domains, entity.website])[0]
    if strategy is MatchStrategy.EMAIL and isinstance(entity, PersonIdentity):
        return _emails([entity.email, *entity.emails])
    if strategy is MatchStrategy.LINKEDIN_URL:
        url = normalize_linkedin_url(entity.linkedin_url, kind=_linkedin_kind(entity))
        return [url] if url else []
    raise ValueError(f"{strategy.value} is not an exact strategy for {type(entity).__name__}")


def _candidate_keys(
    strategy: MatchStrategy, candidate: PartnerCandidate, *, kind: LinkedInKind
) -> list[str]:
    """The normalised keys of ``candidate`` that an exact strategy compares."""
    if strategy is MatchStrategy.PARTNER_ID:
        return [
            f"partner:{candidate.partner_object_id.strip()}",
            *(f"queast:{qid}" for qid in _clean_ids(candidate.queast_ids)),
        ]
    if strategy is MatchStrategy.DOMAIN:
        return _domains(candidate.domains)[0]
    if strategy is MatchStrategy.EMAIL:
        return _emails(candidate.emails)
    url = normalize_linkedin_url(candidate.linkedin_url, kind=kind)
    return [url] if url else []


def _linkedin_kind(entity: CompanyIdentity | PersonIdentity) -> LinkedInKind:
    """Companies match company pages, people match member profiles."""
    return "company" if isinstance(entity, CompanyIdentity) else "person"


def _display_key(key: str) -> str:
    """A key without its internal namespace prefix (partner-id keys are namespaced)."""
    for prefix in ("partner:", "queast:"):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _describe_key(key: str) -> str:
    """A key as shown in explanations."""
    if key.startswith("partner:"):
        return f"partner id {_display_key(key)!r}"
    if key.startswith("queast:"):
        return f"Queast id {_display_key(key)!r} stored on the partner object"
    return repr(key)


_KEY_NOUNS = {
    MatchStrategy.PARTNER_ID: "partner id hint or Queast id",
    MatchStrategy.DOMAIN: "usable domain",
    MatchStrategy.EMAIL: "valid e-mail address",
    MatchStrategy.LINKEDIN_URL: "LinkedIn URL of the right kind",
}


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
    entity_keys = _entity_keys(strategy, entity)
    note = ""
    if strategy is MatchStrategy.DOMAIN and isinstance(entity, CompanyIdentity):
        shared = _domains([entity.domain, *entity.domains, entity.website])[1]
        if shared:
            note = f"; ignored shared platform domains: {', '.join(shared)}"
    if not entity_keys:
        attempts.append(
            StrategyAttempt(strategy=strategy, detail=f"entity has no {_KEY_NOUNS[strategy]}{note}")
        )
        return None
    candidate_keys: dict[str, set[str]] = {}
    kind = _linkedin_kind(entity)
    for candidate in candidates:  # the same object listed twice contributes all its keys
        keys = _candidate_keys(strategy, candidate, kind=kind)
        candidate_keys.setdefault(candidate.partner_object_id, set()).update(keys)
    hits: dict[str, str] = {}  # partner object id -> the key it matched on (first by entity order)
    for key in entity_keys:
        for candidate_id, their_keys in candidate_keys.items():
            if key in their_keys:
                hits.setdefault(candidate_id, key)
    shown = ", ".join(_describe_key(key) for key in entity_keys)
    if not hits:
        attempts.append(
            StrategyAttempt(strategy=strategy, detail=f"no candidate shares {shown}{note}")
        )
        return None
    history = _history(attempts)
    ids = tuple(hits)
    best_id = ids[0]
    value = _display_key(hits[best_id])
    if len(ids) == 1:
        attempts.append(
            StrategyAttempt(
                strategy=strategy, candidate_ids=ids, detail=f"unique match on {value!r}"
            )
        )
        return MatchDecision(
            outcome=MatchOutcome.AUTO_LINKED,
            partner_object_id=best_id,
            best_candidate_id=best_id,
            strategy=strategy,
            confidence=1.0,
            entity_value=value,
            candidate_value=value,
            auto_link_threshold=auto_link_threshold,
            attempts=tuple(attempts),
            explanation=(
                f"auto_linked to {best_id!r} by {strategy.value}: the only candidate with "
                f"{_describe_key(hits[best_id])}{note}; score 1.00 >= auto-link threshold "
                f"{auto_link_threshold:.2f}."
                f"{history}"
            ),
        )
    listing = ", ".join(f"{cid!r} ({_describe_key(hits[cid])})" for cid in ids)
    attempts.append(
        StrategyAttempt(
            strategy=strategy, candidate_ids=ids, detail=f"{len(ids)} candidates tie: {listing}"
        )
    )
    return MatchDecision(
        outcome=MatchOutcome.AMBIGUOUS,
        best_candidate_id=best_id,
        strategy=strategy,
        confidence=1.0,
        runner_up_id=ids[1],
        runner_up_score=1.0,
        entity_value=value,
        candidate_value=value,
        auto_link_threshold=auto_link_threshold,
        attempts=tuple(attempts),
        explanation=(
            f"ambiguous by {strategy.value}: {len(ids)} candidates match exactly ({listing}), "
            f"score 1.00 each; not auto-linked because an exact key must identify one "
            f"candidate.{history}"
        ),
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
    auto_link_threshold: float,
    ambiguity_margin: float,
    review_floor: float,
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
    auto_link_threshold: float = DEFAULT_AUTO_LINK_THRESHOLD,
    ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN,
    review_floor: float = DEFAULT_REVIEW_FLOOR,
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
    attempts). Raises :class:`ValueError` for thresholds outside their ranges.
    """
    return _match(
        entity,
        candidates,
        strategies=strategies,
        applicable=_COMPANY_STRATEGIES,
        auto_link_threshold=auto_link_threshold,
        ambiguity_margin=ambiguity_margin,
        review_floor=review_floor,
    )


def match_person(
    entity: PersonIdentity,
    candidates: Sequence[PartnerCandidate],
    *,
    strategies: Sequence[MatchStrategy],
    auto_link_threshold: float = DEFAULT_AUTO_LINK_THRESHOLD,
    ambiguity_margin: float = DEFAULT_AMBIGUITY_MARGIN,
    review_floor: float = DEFAULT_REVIEW_FLOOR,
) -> MatchDecision:
    """Match a Queast person to one of ``candidates`` using ``strategies`` in order.

    Same rules as :func:`match_company` with the strategies that identify people:
    ``partner_id``, ``email`` and ``linkedin_url`` (``/in/`` profiles). ``domain`` and
    ``company_name`` are not applicable to people and are skipped: a shared domain or a similar
    name does not identify a person. ``ambiguity_margin`` and ``review_floor`` are accepted for
    a uniform signature; exact strategies do not use them.
    """
    return _match(
        entity,
        candidates,
        strategies=strategies,
        applicable=_PERSON_STRATEGIES,
        auto_link_threshold=auto_link_threshold,
        ambiguity_margin=ambiguity_margin,
        review_floor=review_floor,
    )
