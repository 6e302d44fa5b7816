"""core.forecast on a synthetic table: features from portability statistics, a logistic fit that
finds the signal, AUC (exact on small cases) and its cross-validated form."""

from __future__ import annotations

import math
import random

import pytest

from core.forecast import FEATURES, auc, cross_validated_auc, features, fit


def _portability(evolution: float, overlap: float, rng: random.Random) -> dict:
    modules = [
        {
            "module": f"layers.{i}.q_proj",
            "shape": [8, 8 * (i + 1)],
            "evolution": evolution * (0.8 + 0.4 * rng.random()),
            "overlap": overlap,
            "alignment": rng.uniform(-0.1, 0.1),
            "patch_ratio": 0.01,
        }
        for i in range(3)
    ]
    return {"score": math.exp(-evolution / 0.1), "modules": modules}


def _table(n: int, seed: int) -> tuple[list[dict], list[int]]:
    """Ports whose chance to hold falls with the base's evolution (the signal a fit must find)."""
    rng = random.Random(seed)
    rows, held = [], []
    for _ in range(n):
        evolution = rng.uniform(0.0, 0.4)
        rows.append(features(_portability(evolution, rng.uniform(-0.5, 0.5), rng)))
        held.append(int(rng.random() < 1 / (1 + math.exp(20 * (evolution - 0.2)))))
    return rows, held


def test_features_weight_modules_by_size() -> None:
    stats = {
        "score": 0.5,
        "modules": [
            {"shape": [1, 1], "evolution": 1.0, "overlap": -2.0, "alignment": 0.0, "patch_ratio": 0.0},
            {"shape": [3, 1], "evolution": 0.0, "overlap": 2.0, "alignment": 1.0, "patch_ratio": 0.4},
        ],
    }
    row = features(stats)
    assert set(row) == set(FEATURES)
    assert row["mean_evolution"] == 0.25 and row["max_evolution"] == 1.0 and row["mean_abs_overlap"] == 2.0
    assert row["mean_alignment"] == 0.75 and row["mean_patch_ratio"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="without modules"):
        features({"score": 1.0, "modules": []})


def test_auc_is_exact_on_small_cases() -> None:
    assert auc([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0]) == 1.0
    assert auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 0.0
    assert auc([0.5, 0.5], [1, 0]) == 0.5
    assert auc([0.9, 0.3, 0.5, 0.1], [1, 1, 0, 0]) == 0.75
    with pytest.raises(ValueError, match="held and ports that did not"):
        auc([0.1, 0.2], [1, 1])


def test_the_fit_finds_the_signal_and_scores_ports_it_never_saw() -> None:
    rows, held = _table(240, seed=1)
    model = fit(rows, held)
    assert model.fitted_on == 240 and model == fit(rows, held)  # deterministic
    evolving = dict(rows[0], mean_evolution=0.35, max_evolution=0.4, score=math.exp(-3.5))
    still = dict(rows[0], mean_evolution=0.02, max_evolution=0.03, score=math.exp(-0.2))
    assert model.probability(still) > 0.8 > 0.2 > model.probability(evolving)
    test_rows, test_held = _table(200, seed=2)
    # the table's outcomes are random draws: even the true model ranks them with an AUC near 0.85
    assert auc([model.probability(r) for r in test_rows], test_held) > 0.8
    assert cross_validated_auc(rows, held, folds=5, seed=0) > 0.8
    noise_rows, _ = _table(120, seed=3)
    flips = random.Random(4)
    coin = [flips.randint(0, 1) for _ in noise_rows]
    assert 0.3 < cross_validated_auc(noise_rows, coin, seed=0) < 0.7  # no signal: near a coin flip


def test_a_fit_needs_both_outcomes() -> None:
    rows, _ = _table(10, seed=5)
    with pytest.raises(ValueError, match="held \\(1\\) and ports that did not"):
        fit(rows, [1] * 10)
