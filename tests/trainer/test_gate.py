"""The gate: paired per-row evidence, a bootstrap interval, and validated / degraded / inconclusive."""

from __future__ import annotations

import random

import pytest

from core.errors import ConfigError
from core.evidence import PER_ROW
from core.plans import Measurement
from trainer.gate import GateConfig, decide

CHANGES = {"max_abs_change": 0.5, "mean_abs_change": 0.1, "num_probes": 4, "reason": None}
NO_CHANGE = {**CHANGES, "max_abs_change": 0.0, "mean_abs_change": 0.0}


def _arm(scores: list[float], correct: list[int] | None = None) -> dict:
    """An arm's metrics as `measure` returns them: means, plus the per-row evidence."""
    correct = correct if correct is not None else [None] * len(scores)
    choices = [c for c in correct if c is not None]
    return {
        "loss": -sum(scores) / len(scores),
        "accuracy": sum(choices) / len(choices) if choices else None,
        PER_ROW: {"scores": scores, "correct": correct},
    }


def _noisy(n: int, shift: float, spread: float, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [-2.0 + shift + rng.gauss(0, spread) for _ in range(n)]


def _trained(patch: dict, base: dict, gate: GateConfig | None = None, noop: dict = CHANGES):
    rows = [{"dataset": "d/eval", "base": base, "patch": patch}]
    return decide(Measurement(rows=rows, noop=noop), gate or GateConfig(), patched="patch")


BASE = _noisy(60, 0.0, 0.3, seed=1)


def test_a_clear_gain_validates_a_tie_is_inconclusive_a_clear_loss_degrades() -> None:
    gain = _trained(_arm([b + 0.2 + 0.05 * (i % 3) for i, b in enumerate(BASE)]), _arm(BASE))
    assert gain.status == "validated" and gain.why.startswith("beats the base alone by +0.2500 [")
    assert gain.why.endswith("n=60")
    tie = _trained(_arm([b + (0.05 if i % 2 else -0.05) for i, b in enumerate(BASE)]), _arm(BASE))
    assert tie.status == "inconclusive"
    assert tie.why.startswith("cannot tell whether it beats the base alone from 60 rows (gain +0.0000 [")
    assert "no number of rows would" in tie.why  # the mean sits on the margin
    small = _trained(_arm([b + 0.01 + (0.1 if i % 2 else -0.1) for i, b in enumerate(BASE)]), _arm(BASE))
    assert small.status == "inconclusive" and "rows would likely decide" in small.why
    needed = small.metrics["evidence"]["gain"]["needed"]
    assert needed > 60  # more rows than we have would be needed
    loss = _trained(_arm([b - 0.2 for b in BASE]), _arm(BASE))
    assert loss.status == "degraded" and loss.why.startswith("does not beat the base alone (gain -0.2000 [")


def test_the_interval_is_recorded_and_reproducible_by_seed() -> None:
    patch = _arm(_noisy(60, 0.05, 0.3, seed=2))
    first = _trained(patch, _arm(BASE)).metrics["evidence"]["gain"]
    again = _trained(patch, _arm(BASE)).metrics["evidence"]["gain"]
    other = _trained(patch, _arm(BASE), GateConfig(seed=7)).metrics["evidence"]["gain"]
    assert first == again and first["seed"] == 0 and first["resamples"] == 2000 and first["n"] == 60
    assert (other["low"], other["high"]) != (first["low"], first["high"]) and other["mean"] == first["mean"]
    assert first["low"] < first["mean"] < first["high"]


def test_a_loss_only_improvement_is_validated_by_the_default_score() -> None:
    """The issue's case: the patch raises every row's likelihood but flips no choice."""
    right = [1 if i % 10 == 0 else 0 for i in range(40)]  # accuracy 0.1 with and without the patch
    base = _noisy(40, 0.0, 0.2, seed=3)
    patched = _arm([b + 0.24 for b in base], right)
    decision = _trained(patched, _arm(base, right))
    assert decision.status == "validated"
    assert decision.metrics["accuracy"] == 0.1 and decision.metrics["evidence"]["metric"] == "score"
    by_accuracy = _trained(patched, _arm(base, right), GateConfig(metric="accuracy"))
    # by accuracy, as the gate decided before: no row changed, so nothing beats the base alone
    assert by_accuracy.status == "degraded" and "gain +0.0000 [+0.0000, +0.0000], n=40" in by_accuracy.why
    with pytest.raises(ConfigError, match="no row has choices"):
        _trained(_arm(base), _arm(base), GateConfig(metric="accuracy"))


def _port(ported: list[float], source: list[float], gate: GateConfig | None = None, noop: dict = CHANGES):
    row = {
        "dataset": "d/eval",
        "base": _arm(BASE),
        "ported": _arm(ported),
        "source_base": _arm(BASE),
        "source": _arm(source),
    }
    return decide(Measurement(rows=[row], noop=noop), gate or GateConfig(), patched="ported", source="source")


def test_a_port_must_beat_its_base_and_keep_its_source_gain() -> None:
    source = [b + 0.30 for b in BASE]
    kept = _port([b + 0.29 for b in BASE], source)
    assert kept.status == "validated" and kept.why.endswith("97% of its source gain")
    assert kept.metrics["evidence"]["kept"]["fraction"] == pytest.approx(0.29 / 0.30)
    lost = _port([b + 0.10 for b in BASE], source)
    assert lost.status == "degraded"
    expected = "keeps 33% of its source gain, under 80% (gain − 80% of the source's -0.1400 ["
    assert lost.why.startswith(expected)
    noisy = _port([b + 0.24 + (0.3 if i % 2 else -0.3) for i, b in enumerate(BASE)], source)
    assert noisy.status == "inconclusive" and noisy.why.startswith(
        "cannot tell whether it keeps 80% of its source gain (80% measured)"
    )
    assert _port([b + 0.10 for b in BASE], source, GateConfig(keep_fraction=0.3)).status == "validated"
    noop = _port([b + 0.29 for b in BASE], source, noop=NO_CHANGE)
    assert noop.why.startswith("no-op (max output change 0")


def test_arms_that_scored_different_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="different rows"):
        _trained(_arm(BASE[:10]), _arm(BASE[:12]))
    with pytest.raises(ValueError, match="no per-row evidence"):
        _trained({"loss": 1.0, "accuracy": None}, _arm(BASE))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep_fraction": 1.5}, "keep_fraction=1.5 must be in"),
        ({"margin": float("nan")}, "margin=nan must be a finite number"),
        ({"noop_tolerance": -1}, "noop_tolerance=-1 must be a number"),
        ({"metric": "vibes"}, "metric='vibes' must be one of score, accuracy"),
        ({"confidence": 1.0}, "confidence=1.0 must be in"),
        ({"resamples": 5}, "resamples=5 must be an integer"),
    ],
)
def test_gate_settings_are_validated(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GateConfig(**settings)
