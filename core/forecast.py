"""Will a port hold? A logistic forecast from the portability statistics, before any evaluation.

The statistics (`trainer.port.stats`: per module, the base's relative evolution, the patch's size
and the evolution's overlap and alignment with the patch) become a few size-weighted features; a
logistic regression fitted on measured ports (outcome 1: the gate validated the port) turns them
into a probability. Its quality is the AUC on ports it was not fitted on (`cross_validated_auc`),
reported as measured — the heuristic `score` alone is one of the features, so the fit shows whether
anything beyond it carries signal.

numpy only (imported when a fit or a forecast runs), so the registry can score a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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

    def probability(self, row: Mapping[str, float]) -> float:
        z = self.bias + sum(
            w * (float(row[f]) - m) / s
            for w, f, m, s in zip(self.weights, FEATURES, self.means, self.scales, strict=True)
        )
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

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
    on the others (folds drawn with `seed`; a fold whose complement lacks an outcome is an error)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(held))
    parts = [order[i::folds] for i in range(folds)]
    scores = [0.0] * len(held)
    for part in parts:
        inside = set(int(i) for i in part)
        train = [i for i in range(len(held)) if i not in inside]
        model = fit([rows[i] for i in train], [held[i] for i in train], l2=l2)
        for i in inside:
            scores[i] = model.probability(rows[i])
    return auc(scores, held)
