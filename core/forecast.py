"""Will a port hold? A logistic forecast from the portability statistics, before any evaluation.

The statistics (`trainer.port.stats`: per module, the base's relative evolution, the patch's size
and the evolution's overlap and alignment with the patch) become a few size-weighted features; a
logistic regression fitted on measured ports (outcome 1: the gate validated the port) turns them
into a probability. Its quality is the AUC on ports it was not fitted on (`cross_validated_auc`),
reported as measured — the heuristic `score` alone is one of the features, so the fit shows whether
anything beyond it carries signal.

The fit the product shows (`core/forecast_fit.json`, written by `bench/science.py --fit-out`) is
loaded by `shipped()`; `forecast(portability)` is what `compat` and every port report: the
probability, the gate it predicts, the held-out AUC it was measured at, and each feature's value and
pull. Fitting needs numpy; scoring is plain Python, so the registry scores a verdict without it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FIT_FILE = Path(__file__).with_name("forecast_fit.json")

FEATURES = (
    "score",
    "mean_evolution",
    "max_evolution",
    "mean_abs_overlap",
    "mean_alignment",
    "mean_patch_ratio",
)


def features(portability: Mapping[str, Any]) -> dict[str, float]:
    """The forecast's inputs from a verdict's portability statistics (modules weighted by size)."""
    modules = portability.get("modules") or []
    if not modules:
        raise ValueError("portability statistics without modules: nothing to forecast from")
    sizes = [float(math.prod(m["shape"])) for m in modules]
    total = sum(sizes)

    def mean(key: str, transform: Callable[[Any], float] = float) -> float:
        return sum(w * transform(m[key]) for w, m in zip(sizes, modules, strict=True)) / total

    return {
        "score": float(portability["score"]),
        "mean_evolution": mean("evolution"),
        "max_evolution": max(float(m["evolution"]) for m in modules),
        "mean_abs_overlap": mean("overlap", lambda v: abs(float(v))),
        "mean_alignment": mean("alignment"),
        "mean_patch_ratio": mean("patch_ratio"),
    }


@dataclass(frozen=True)
class Forecast:
    """A fitted logistic model over standardised FEATURES."""

    weights: tuple[float, ...]
    bias: float
    means: tuple[float, ...]
    scales: tuple[float, ...]
    fitted_on: int  # ports
    l2: float

    def pulls(self, row: Mapping[str, float]) -> dict[str, float]:
        """Each feature's term in the log-odds: how far it moves this port from the average one."""
        return {
            f: w * (float(row[f]) - m) / s
            for w, f, m, s in zip(self.weights, FEATURES, self.means, self.scales, strict=True)
        }

    def probability(self, row: Mapping[str, float]) -> float:
        z = self.bias + sum(self.pulls(row).values())
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Forecast:
        if list(data["features"]) != list(FEATURES):
            raise ValueError(f"forecast fitted on features {data['features']}, this code computes {FEATURES}")
        return cls(
            weights=tuple(float(w) for w in data["weights"]),
            bias=float(data["bias"]),
            means=tuple(float(m) for m in data["means"]),
            scales=tuple(float(s) for s in data["scales"]),
            fitted_on=int(data["fitted_on"]),
            l2=float(data["l2"]),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "features": list(FEATURES),
            "weights": list(self.weights),
            "bias": self.bias,
            "means": list(self.means),
            "scales": list(self.scales),
            "fitted_on": self.fitted_on,
            "l2": self.l2,
        }


def fit(rows: Sequence[Mapping[str, float]], held: Sequence[int], *, l2: float = 1.0) -> Forecast:
    """Maximum-likelihood logistic regression with an L2 penalty `l2` on the weights (not the
    bias), by Newton's method on standardised features: deterministic, no learning rate."""
    import numpy as np

    y = np.asarray(held, dtype=np.float64)
    if len(rows) != len(y) or len(y) < 4:
        raise ValueError("fit needs one outcome per row and at least 4 ports")
    if not set(np.unique(y)) <= {0.0, 1.0} or len(np.unique(y)) < 2:
        raise ValueError("fit needs ports that held (1) and ports that did not (0)")
    x = np.asarray([[float(r[f]) for f in FEATURES] for r in rows], dtype=np.float64)
    means, scales = x.mean(axis=0), x.std(axis=0)
    scales[scales == 0] = 1.0
    design = np.hstack([np.ones((len(y), 1)), (x - means) / scales])
    beta = np.zeros(design.shape[1])
    penalty = np.diag([0.0] + [l2] * len(FEATURES))
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ beta, -60, 60)))
        gradient = design.T @ (y - p) - penalty @ beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + penalty
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return Forecast(
        weights=tuple(float(b) for b in beta[1:]),
        bias=float(beta[0]),
        means=tuple(float(m) for m in means),
        scales=tuple(float(s) for s in scales),
        fitted_on=len(y),
        l2=l2,
    )


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """The probability that a random port that held scores above one that did not (ties count
    half): the Mann-Whitney form of the ROC AUC."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y == 1]
    negatives = [s for s, y in zip(scores, labels, strict=True) if y == 0]
    if not positives or not negatives:
        raise ValueError("AUC needs ports that held and ports that did not")
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def cross_validated_auc(
    rows: Sequence[Mapping[str, float]],
    held: Sequence[int],
    *,
    folds: int = 5,
    seed: int = 0,
    l2: float = 1.0,
) -> float:
    """AUC of forecasts for ports the model was not fitted on: each fold is scored by a model fitted
    on the others. Folds are stratified (each outcome dealt round the folds after a shuffle drawn
    with `seed`), so with at least `folds` ports of each outcome every fit sees both."""
    import numpy as np

    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [[] for _ in range(folds)]
    for outcome in (1, 0):
        members = [i for i, y in enumerate(held) if y == outcome]
        if len(members) < folds:
            raise ValueError(f"{folds} folds need at least {folds} ports of each outcome")
        for k, i in enumerate(rng.permutation(members)):
            parts[k % folds].append(int(i))
    scores = [0.0] * len(held)
    for part in parts:
        inside = set(part)
        train = [i for i in range(len(held)) if i not in inside]
        model = fit([rows[i] for i in train], [held[i] for i in train], l2=l2)
        for i in inside:
            scores[i] = model.probability(rows[i])
    return auc(scores, held)


@dataclass(frozen=True)
class Shipped:
    """A fit with what it was fitted on and how well it ranked ports it had not seen."""

    model: Forecast
    keep_fraction: float  # the gate it predicts: validated when keeping this share of the source's gain
    held_out_auc: float
    validated: int  # of model.fitted_on ports
    testbed: str  # digest of the testbed family the ports were measured on


def shipped() -> Shipped | None:
    """The fit in FIT_FILE, or None where none has been written (no gate saw both outcomes)."""
    return _load(FIT_FILE)


@cache
def _load(path: Path) -> Shipped | None:
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Shipped(
        model=Forecast.from_dict(data),
        keep_fraction=float(data["target"]["keep_fraction"]),
        held_out_auc=float(data["held_out_auc"]),
        validated=int(data["validated"]),
        testbed=str(data["testbed"]),
    )


def forecast(portability: Mapping[str, Any] | None, fit: Shipped | None = None) -> dict[str, Any] | None:
    """What a user sees before any evaluation: the probability that the port validates under the
    fitted gate, with every feature's value and pull (log-odds), strongest first; None without
    statistics or a fit."""
    fit = fit or shipped()
    if fit is None or not portability or not portability.get("modules"):
        return None
    try:
        row = features(portability)
    except (KeyError, TypeError, ValueError):  # statistics recorded before a field existed: no forecast
        return None
    pulls = fit.model.pulls(row)
    evidence = [
        {"feature": f, "value": row[f], "pull": pulls[f]}
        for f in sorted(FEATURES, key=lambda f: -abs(pulls[f]))
    ]
    return {
        "probability": fit.model.probability(row),
        "predicts": f"validated by a gate keeping {fit.keep_fraction:.0%} of the source's gain",
        "keep_fraction": fit.keep_fraction,
        "held_out_auc": fit.held_out_auc,
        "fitted_on": fit.model.fitted_on,
        "validated": fit.validated,
        "testbed": fit.testbed[:16],
        "evidence": evidence,
    }


def describe(prediction: Mapping[str, Any]) -> str:
    """One line: the probability, what it predicts, how it was measured, the two strongest pulls."""
    pulls = ", ".join(
        f"{e['feature']} {e['value']:.3g} ({e['pull']:+.2f})" for e in prediction["evidence"][:2]
    )
    return (
        f"{prediction['probability']:.0%} chance to be {prediction['predicts']} "
        f"(fitted on {prediction['fitted_on']} testbed ports, held-out AUC {prediction['held_out_auc']:.2f};"
        f" strongest: {pulls})"
    )
