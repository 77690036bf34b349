"""Company names: normalisation and an explained similarity score in ``[0, 1]``.

:func:`normalize_company_name` folds case, accents, punctuation, initialisms, a leading
"The" and legal forms away; :func:`explain_company_name_similarity` scores two names and
says why (:class:`NameSimilarity`). The ``company_name`` match strategy
(:mod:`processors.identity.matching`) decides with these scores; the thresholds it applies
are calibrated on ``bench/identity/company_name_pairs.csv``.

Pure functions of their arguments, cached: no I/O, no clock.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict, Field
from rapidfuzz.distance import OSA, Levenshtein

__all__ = [
    "NameSimilarity",
    "company_name_similarity",
    "explain_company_name_similarity",
    "normalize_company_name",
]

_WORD_ORDER_FACTOR = 0.96
"""Score of names whose words are equal but in a different order (reordering is a weaker signal)."""

_EQUAL_KEY_SCORE = 0.98
"""Score of names that differ only in 'and'/'of', a known abbreviation, or a plural/possessive s."""

_NUMBER_MISMATCH_CAP = 0.5
"""Upper bound of the score when the names carry different numbers ("Studio 54"/"Studio 55")."""


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
