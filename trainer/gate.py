"""The gate: from measured evidence to `validated`, `degraded` or `inconclusive`, and the sentence
that says why, with the effect, its interval and the number of rows behind it.

One rule for trained and ported patches, on paired per-row evidence (`core.evidence`): each eval
row is scored with and without the patch, on the same base. `validated` needs a real change of
outputs (the no-op check), a gain over the base alone whose whole bootstrap interval lies above
`margin`, and, for a port, evidence that it keeps at least `keep_fraction` of the gain its source
had on its own base (the per-row difference gain − keep_fraction × source gain, interval above 0).
An interval entirely on the wrong side degrades; one that straddles the line is `inconclusive`,
with the number of rows that would likely decide it.

The per-row number is, by default, the mean log-likelihood per token of the row's gold completion
(`metric="score"`: continuous, so 40 rows can show a gain that leaves accuracy unchanged);
`metric="accuracy"` decides by whether each choice row's right answer wins instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.evidence import PER_ROW, Effect, Verdict, clears, paired_effect
from core.plans import Decision, Measurement
from trainer.port.noop import NoOpCheck

METRICS = {"score": "scores", "accuracy": "correct"}  # gate metric -> per-row evidence key


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    keep_fraction: float = 0.8
    noop_tolerance: float = 1e-4
    metric: str = "score"
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0  # the bootstrap's generator: recorded with every decision, so it can be replayed

    def __post_init__(self) -> None:
        found = []
        if self.metric not in METRICS:
            found.append(f"metric={self.metric!r} must be one of {', '.join(METRICS)}")
        if not _number(self.confidence) or not 0.5 <= self.confidence < 1:
            found.append(f"confidence={self.confidence!r} must be in [0.5, 1)")
        if not isinstance(self.resamples, int) or not 100 <= self.resamples <= 100_000:
            found.append(f"resamples={self.resamples!r} must be an integer in [100, 100000]")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            found.append(f"seed={self.seed!r} must be an integer ≥ 0")
        if not _number(self.margin):
            found.append(f"margin={self.margin!r} must be a finite number")
        if not _number(self.keep_fraction) or not 0 <= self.keep_fraction <= 1:
            found.append(f"keep_fraction={self.keep_fraction!r} must be in [0, 1]")
        if not _number(self.noop_tolerance) or self.noop_tolerance < 0:
            found.append(f"noop_tolerance={self.noop_tolerance!r} must be a number ≥ 0")
        if found:
            raise ConfigError("invalid gate settings: " + "; ".join(found))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summary(rows: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    """Mean metrics of `arm` over the eval datasets: what `fetch` ranks validated patches by."""
    out: dict[str, Any] = {"loss": sum(r[arm]["loss"] for r in rows) / len(rows)}
    accuracies = [r[arm]["accuracy"] for r in rows if r[arm].get("accuracy") is not None]
    if accuracies:
        out["accuracy"] = sum(accuracies) / len(accuracies)
    return out


def _pairs(rows: list[dict[str, Any]], arms: tuple[str, ...], key: str) -> list[tuple[float, ...]]:
    """Per eval row, the arms' values where every arm has one (rows of every dataset together)."""
    out: list[tuple[float, ...]] = []
    for row in rows:
        columns = []
        for arm in arms:
            evidence = row[arm].get(PER_ROW)
            if evidence is None:
                raise ValueError(f"arm {arm!r} on {row['dataset']} has no per-row evidence to pair")
            columns.append(evidence[key])
        if len({len(c) for c in columns}) != 1:
            raise ValueError(f"the arms scored different rows of {row['dataset']}")
        out += [tuple(vs) for vs in zip(*columns, strict=True) if all(v is not None for v in vs)]
    return out


def _undecided(question: str, measured: str, verdict: Verdict) -> str:
    needed = (
        f"about {verdict.needed} rows would likely decide"
        if verdict.needed is not None
        else "no number of rows would: it sits on the line"
    )
    effect = verdict.effect
    return f"cannot tell {question} from {effect.n} rows ({measured} {effect.describe()}); {needed}"


def decide(measured: Measurement, gate: GateConfig, *, patched: str, source: str | None = None) -> Decision:
    """The status of the patch measured as arm `patched` against arm "base" (and, for a port, of
    arm `source` against "source_base": the gain it must keep)."""
    rows = measured.rows
    if not rows or measured.noop is None:
        raise ValueError("decide() needs evaluated rows and the no-op check")
    key = METRICS[gate.metric]
    arms = (patched, "base") + ((source, "source_base") if source is not None else ())
    pairs = _pairs(rows, arms, key)
    if not pairs:
        raise ConfigError(
            f"the gate decides by {gate.metric} but no eval row has one"
            + (" (no row has choices: use metric=score)" if gate.metric == "accuracy" else "")
        )

    def effect(values: list[float]) -> Effect:
        return paired_effect(values, seed=gate.seed, resamples=gate.resamples, confidence=gate.confidence)

    gain = clears(effect([p[0] - p[1] for p in pairs]), gate.margin)
    evidence: dict[str, Any] = {"metric": gate.metric, "gain": gain.to_dict(), "kept": None}
    metrics = {**summary(rows, patched), "gain": gain.effect.mean, "evidence": evidence}

    def decision(status: str, why: str) -> Decision:
        return Decision(status, why, {**metrics, "gate": why})

    noop = NoOpCheck.from_dict(measured.noop).no_op_reason(gate.noop_tolerance)
    if noop:
        return decision("degraded", f"no-op ({noop}): a patch that changes nothing is never validated")
    if gain.answer == "no":
        why = f"does not beat the base alone (gain {gain.effect.describe()}, margin {gate.margin:g})"
        return decision("degraded", why)
    if gain.answer == "undecided":
        return decision("inconclusive", _undecided("whether it beats the base alone", "gain", gain))
    source_gain = sum(p[2] - p[3] for p in pairs) / len(pairs) if source is not None else 0.0
    if source_gain <= 0:
        return decision("validated", f"beats the base alone by {gain.effect.describe()}")
    ratio = gain.effect.mean / source_gain
    kept = clears(effect([(p[0] - p[1]) - gate.keep_fraction * (p[2] - p[3]) for p in pairs]), 0.0)
    evidence["kept"] = {**kept.to_dict(), "fraction": ratio, "source_gain": source_gain}
    if kept.answer == "no":
        keep = f"{gate.keep_fraction:.0%}"
        evidence_text = f"gain − {keep} of the source's {kept.effect.describe()}"
        return decision("degraded", f"keeps {ratio:.0%} of its source gain, under {keep} ({evidence_text})")
    if kept.answer == "undecided":
        keep = f"{gate.keep_fraction:.0%}"
        question = f"whether it keeps {keep} of its source gain ({ratio:.0%} measured)"
        return decision("inconclusive", _undecided(question, f"gain − {keep} of the source's", kept))
    why = f"beats the base alone by {gain.effect.describe()}, {ratio:.0%} of its source gain"
    return decision("validated", why)
