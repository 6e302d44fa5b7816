"""Paired evidence: is a patch's effect on the same eval rows real, and how sure are we?

The gate compares two arms on the same rows (base + patch against the base alone, and for a port the
same on the source's base), so the evidence is per-row differences. Their mean is the effect; a
percentile bootstrap over rows gives its interval (seeded and recorded, so a decision can be
replayed). A claim holds when the whole interval clears its line, fails when the whole interval
misses it, and is *inconclusive* otherwise — with the number of rows that would likely decide it
(the interval's half-width shrinks as 1/√n).

numpy only, no torch, and numpy only when a bootstrap runs: the registry imports this module for
its names, and a CLI read must not pay for numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

PER_ROW = "per_row"  # an arm's metrics key for its per-row evidence: {"scores": [...], "correct": [...]}
RESAMPLES = 2000
CONFIDENCE = 0.95
MAX_NEEDED = 1_000_000  # beyond this, "more rows" is no answer: the effect is too close to the line


def _signed(x: float) -> str:
    """+0.0123; a rounding residue below the last digit reads +0.0000, never -0.0000."""
    return f"{round(x, 4) + 0.0:+.4f}"


@dataclass(frozen=True)
class Effect:
    """The mean of per-row values with its bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int
    confidence: float
    resamples: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """`+0.0123 [+0.0040, +0.0210], n=128` (95% interval)."""
        low, mean, high = (_signed(x) for x in (self.low, self.mean, self.high))
        return f"{mean} [{low}, {high}], n={self.n}"

    def rows_needed(self, line: float) -> int | None:
        """Rows at which the interval would likely clear `line`, from this spread; None when the
        mean sits on the line (no number of rows decides it)."""
        distance = abs(self.mean - line)
        half = (self.high - self.low) / 2
        if distance <= 0 or half <= 0:
            return None
        needed = math.ceil(self.n * (half / distance) ** 2)
        return needed if needed <= MAX_NEEDED else None


def paired_effect(
    values: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> Effect:
    """The mean of `values` (one per row, e.g. patched − base) and its percentile bootstrap
    interval from `resamples` resamplings of the rows with generator `seed`."""
    import numpy as np

    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1 or data.size == 0:
        raise ValueError("paired_effect needs at least one row")
    if not np.all(np.isfinite(data)):
        raise ValueError("paired_effect needs finite values")
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("confidence must be in (0, 1) and resamples ≥ 1")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, data.size, size=(resamples, data.size))
    means = data[picks].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Effect(
        mean=float(data.mean()),
        low=float(low),
        high=float(high),
        n=int(data.size),
        confidence=confidence,
        resamples=resamples,
        seed=seed,
    )


@dataclass(frozen=True)
class Verdict:
    """Whether an effect clears a line: "yes" (the whole interval above), "no" (the whole interval
    at or below), or "undecided" with the rows that would likely decide it."""

    answer: str
    effect: Effect
    line: float
    needed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "line": self.line, "needed": self.needed, **self.effect.to_dict()}


def clears(effect: Effect, line: float) -> Verdict:
    if effect.low > line:
        return Verdict("yes", effect, line)
    if effect.high <= line:
        return Verdict("no", effect, line)
    return Verdict("undecided", effect, line, effect.rows_needed(line))


def summary_only(metrics: dict[str, Any]) -> dict[str, Any]:
    """An arm's metrics without its per-row evidence (what job results and audit rows show)."""
    return {k: v for k, v in metrics.items() if k != PER_ROW}


def brief_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Measured rows (`{"dataset": …, <arm>: metrics}`) without the per-row evidence."""
    return [{k: summary_only(v) if isinstance(v, dict) else v for k, v in row.items()} for row in rows]


def describe_gate(metrics: dict[str, Any]) -> str | None:
    """`gain +0.0123 [+0.0040, +0.0210], n=128 (score)` from a patch's metrics, when a gate with
    evidence decided it (None for patches gated before paired evidence, or never gated)."""
    evidence = metrics.get("evidence")
    if not isinstance(evidence, dict) or not isinstance(evidence.get("gain"), dict):
        return None
    g = evidence["gain"]
    effect = Effect(g["mean"], g["low"], g["high"], g["n"], g["confidence"], g["resamples"], g["seed"])
    return f"gain {effect.describe()} ({evidence.get('metric', 'score')})"


def paired_ratio(
    numerators: Sequence[float],
    denominators: Sequence[float],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> Effect:
    """mean(numerators) / mean(denominators) over the same rows (e.g. a port's gain over a
    retrained patch's gain, row by row) with a percentile bootstrap interval: both means come from
    the same resampled rows. Resamples whose denominator mean is not positive have no ratio and are
    left out of the interval (the denominator must be a gain)."""
    import numpy as np

    top, bottom = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    if top.shape != bottom.shape or top.ndim != 1 or top.size == 0:
        raise ValueError("paired_ratio needs the same rows, at least one, on both sides")
    if bottom.mean() <= 0:
        raise ValueError("paired_ratio needs a positive mean denominator (a gain to compare against)")
    picks = np.random.default_rng(seed).integers(0, top.size, size=(resamples, top.size))
    denominator = bottom[picks].mean(axis=1)
    usable = denominator > 0
    ratios = top[picks].mean(axis=1)[usable] / denominator[usable]
    tail = (1 - confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return Effect(
        mean=float(top.mean() / bottom.mean()),
        low=float(low),
        high=float(high),
        n=int(top.size),
        confidence=confidence,
        resamples=int(usable.sum()),
        seed=seed,
    )
