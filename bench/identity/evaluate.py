"""Evaluate company-name similarity on the labelled pairs in ``company_name_pairs.csv``.

Run from the repository root::

    .venv/bin/python -m bench.identity.evaluate [--threshold 0.92] [--csv PATH] [--show-misses]

Prints precision, recall and F1 at the auto-link threshold (default
:data:`processors.identity.matching.DEFAULT_AUTO_LINK_THRESHOLD`), a table over thresholds
0.80-0.99, per-category results and every false positive. Exits with status 1 when precision
at the threshold is below :data:`MIN_PRECISION`: a false automatic link is far more expensive
than a missed one (which only goes to review).
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from processors.identity.matching import DEFAULT_AUTO_LINK_THRESHOLD, DEFAULT_REVIEW_FLOOR
from processors.identity.names import explain_company_name_similarity

__all__ = [
    "DEFAULT_PAIRS_PATH",
    "MIN_PRECISION",
    "LabelledPair",
    "Metrics",
    "ScoredPair",
    "load_pairs",
    "main",
    "metrics_at",
    "score_pairs",
]

DEFAULT_PAIRS_PATH = Path(__file__).with_name("company_name_pairs.csv")
MIN_PRECISION = 0.98
TABLE_THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.97, 0.99)


@dataclass(frozen=True, slots=True)
class LabelledPair:
    """Two company names and whether they denote the same company."""

    name_a: str
    name_b: str
    same: bool
    category: str


@dataclass(frozen=True, slots=True)
class ScoredPair:
    """A labelled pair with its similarity score and the scorer's reason."""

    pair: LabelledPair
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class Metrics:
    """Confusion counts and derived rates at one threshold (predicted same: score >= it)."""

    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int

    @property
    def precision(self) -> float:
        """Share of predicted links that are right (1.0 when nothing is predicted)."""
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        """Share of same-company pairs that are linked."""
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else 0.0

    @property
    def f1(self) -> float:
        """Harmonic mean of precision and recall."""
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def load_pairs(path: Path = DEFAULT_PAIRS_PATH) -> list[LabelledPair]:
    """Read ``name_a,name_b,label,category`` rows; labels must be 0 or 1."""
    pairs: list[LabelledPair] = []
    with path.open(encoding="utf-8", newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            label = row["label"].strip()
            if label not in {"0", "1"}:
                raise ValueError(f"{path}:{line}: label must be 0 or 1, got {label!r}")
            pairs.append(
                LabelledPair(
                    name_a=row["name_a"],
                    name_b=row["name_b"],
                    same=label == "1",
                    category=row["category"].strip(),
                )
            )
    return pairs


def score_pairs(pairs: Sequence[LabelledPair]) -> list[ScoredPair]:
    """Score every pair with the production scorer."""
    scored: list[ScoredPair] = []
    for pair in pairs:
        similarity = explain_company_name_similarity(pair.name_a, pair.name_b)
        scored.append(ScoredPair(pair=pair, score=similarity.score, reason=similarity.reason))
    return scored


def metrics_at(scored: Sequence[ScoredPair], threshold: float) -> Metrics:
    """Confusion counts when pairs scoring at least ``threshold`` are linked."""
    tp = sum(1 for s in scored if s.pair.same and s.score >= threshold)
    fp = sum(1 for s in scored if not s.pair.same and s.score >= threshold)
    fn = sum(1 for s in scored if s.pair.same and s.score < threshold)
    tn = sum(1 for s in scored if not s.pair.same and s.score < threshold)
    return Metrics(threshold, tp, fp, fn, tn)


def _print_report(scored: Sequence[ScoredPair], threshold: float, *, show_misses: bool) -> Metrics:
    positives = sum(1 for s in scored if s.pair.same)
    at = metrics_at(scored, threshold)
    print(f"pairs: {len(scored)} ({positives} same company, {len(scored) - positives} different)")
    print(
        f"at threshold {threshold:.2f}: precision {at.precision:.3f}  recall {at.recall:.3f}  "
        f"F1 {at.f1:.3f}  (TP {at.true_positives}, FP {at.false_positives}, "
        f"FN {at.false_negatives}, TN {at.true_negatives})"
    )

    print("\nthreshold  precision  recall     F1    FP")
    for value in sorted({*TABLE_THRESHOLDS, threshold}):
        m = metrics_at(scored, value)
        marker = "  <- threshold" if value == threshold else ""
        print(
            f"  {value:.2f}      {m.precision:.3f}    {m.recall:.3f}  {m.f1:.3f}  "
            f"{m.false_positives:3d}{marker}"
        )

    by_category: dict[str, list[ScoredPair]] = defaultdict(list)
    for s in scored:
        by_category[s.pair.category].append(s)
    print(
        f"\ncategory                         pairs  label  linked (>= {threshold:.2f})  "
        f"review ({DEFAULT_REVIEW_FLOOR:.2f}-{threshold:.2f})"
    )
    for category, items in sorted(by_category.items(), key=lambda kv: (-kv[1][0].pair.same, kv[0])):
        linked = sum(1 for s in items if s.score >= threshold)
        review = sum(1 for s in items if DEFAULT_REVIEW_FLOOR <= s.score < threshold)
        label = "same" if items[0].pair.same else "diff"
        what = "recall" if items[0].pair.same else "false-pos rate"
        print(
            f"  {category:30} {len(items):5d}  {label}   {linked:3d} ({what} "
            f"{linked / len(items):.2f})   {review:3d}"
        )

    false_positives = [s for s in scored if not s.pair.same and s.score >= threshold]
    print(f"\nfalse positives at {threshold:.2f}: {len(false_positives)}")
    for s in sorted(false_positives, key=lambda s: -s.score):
        print(f"  {s.score:.3f}  {s.pair.name_a!r} / {s.pair.name_b!r}  [{s.pair.category}]")
    closest = sorted((s for s in scored if not s.pair.same), key=lambda s: -s.score)[:5]
    print("closest negatives:")
    for s in closest:
        print(f"  {s.score:.3f}  {s.pair.name_a!r} / {s.pair.name_b!r}  ({s.reason})")

    if show_misses:
        misses = [s for s in scored if s.pair.same and s.score < threshold]
        print(f"\nmissed same-company pairs at {threshold:.2f}: {len(misses)}")
        for s in sorted(misses, key=lambda s: -s.score):
            print(
                f"  {s.score:.3f}  {s.pair.name_a!r} / {s.pair.name_b!r}  "
                f"[{s.pair.category}] ({s.reason})"
            )
    return at


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation; return 1 if precision at the threshold is below the minimum."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--csv", type=Path, default=DEFAULT_PAIRS_PATH, help="labelled pairs")
    parser.add_argument("--threshold", type=float, default=DEFAULT_AUTO_LINK_THRESHOLD)
    parser.add_argument("--show-misses", action="store_true", help="list missed same pairs")
    args = parser.parse_args(argv)

    scored = score_pairs(load_pairs(args.csv))
    at = _print_report(scored, args.threshold, show_misses=args.show_misses)
    if at.precision < MIN_PRECISION:
        print(f"\nFAIL: precision {at.precision:.3f} < {MIN_PRECISION:.2f}", file=sys.stderr)
        return 1
    print(f"\nOK: precision {at.precision:.3f} >= {MIN_PRECISION:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
