"""The gate: from measured numbers to `validated` or `degraded`, and the sentence that says why.

One rule for trained and ported patches. `validated` needs a real change of outputs (the no-op
check), a mean gain over the base alone above `margin`, and, for a port, at least `keep_fraction`
of the gain the source patch had on its own base. The number compared is choice accuracy when the
eval data has choices, else −loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import ConfigError
from core.plans import Decision, Measurement
from trainer.port.noop import NoOpCheck


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.0
    keep_fraction: float = 0.8
    noop_tolerance: float = 1e-4

    def __post_init__(self) -> None:
        found = []
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


def primary(metrics: dict[str, Any]) -> float:
    """The number the gate compares: choice accuracy when the data has choices, else −loss."""
    return float(metrics["accuracy"]) if metrics.get("accuracy") is not None else -float(metrics["loss"])


def summary(rows: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    """Mean metrics of `arm` over the eval datasets: what `fetch` ranks validated patches by."""
    out: dict[str, Any] = {"loss": sum(r[arm]["loss"] for r in rows) / len(rows)}
    accuracies = [r[arm]["accuracy"] for r in rows if r[arm].get("accuracy") is not None]
    if accuracies:
        out["accuracy"] = sum(accuracies) / len(accuracies)
    return out


def _mean_gain(rows: list[dict[str, Any]], patched: str, base: str) -> float:
    return sum(primary(r[patched]) - primary(r[base]) for r in rows) / len(rows)


def decide(measured: Measurement, gate: GateConfig, *, patched: str, source: str | None = None) -> Decision:
    """The status of the patch measured as arm `patched` against arm "base" (and, for a port, of
    arm `source` against "source_base": the gain it must keep)."""
    rows = measured.rows
    if not rows or measured.noop is None:
        raise ValueError("decide() needs evaluated rows and the no-op check")
    gain = _mean_gain(rows, patched, "base")
    metrics = {**summary(rows, patched), "gain": gain}
    noop = NoOpCheck.from_dict(measured.noop).no_op_reason(gate.noop_tolerance)
    if noop:
        why = f"no-op ({noop}): a patch that changes nothing is never validated"
        return Decision("degraded", why, {**metrics, "gate": why})
    source_gain = _mean_gain(rows, source, "source_base") if source is not None else 0.0
    if gain <= gate.margin:
        why = f"does not beat the base alone (gain {gain:+.4f}, margin {gate.margin:g})"
        return Decision("degraded", why, {**metrics, "gate": why})
    if source_gain > 0 and gain < gate.keep_fraction * source_gain:
        why = f"keeps {gain / source_gain:.0%} of its source gain, under {gate.keep_fraction:.0%}"
        return Decision("degraded", why, {**metrics, "gate": why})
    kept = f", {gain / source_gain:.0%} of its source gain" if source_gain > 0 else ""
    why = f"beats the base alone by {gain:+.4f}{kept}"
    return Decision("validated", why, {**metrics, "gate": why})
