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


def _write_fit(path, keep: float = 0.5) -> None:
    import json

    rows, held = _table(80, seed=3)
    data = {
        **fit(rows, held).to_dict(),
        "target": {"gate": "keep50", "keep_fraction": keep, "metric": "score"},
        "validated": sum(held),
        "held_out_auc": 0.8,
        "folds": 5,
        "testbed": "ab" * 32,
    }
    path.write_text(json.dumps(data))


def test_a_shipped_fit_scores_a_port_and_explains_itself(tmp_path, monkeypatch) -> None:
    import core.forecast as forecast_module

    monkeypatch.setattr(forecast_module, "FIT_FILE", tmp_path / "none.json")
    assert forecast_module.forecast(_portability(0.1, 0.0, random.Random(0))) is None  # no fit: nothing shown
    _write_fit(tmp_path / "fit.json")
    monkeypatch.setattr(forecast_module, "FIT_FILE", tmp_path / "fit.json")
    rng = random.Random(0)
    calm, drifted = (forecast_module.forecast(_portability(e, 0.0, rng)) for e in (0.02, 0.38))
    assert calm is not None and drifted is not None
    assert calm["probability"] > 0.8 > 0.2 > drifted["probability"]  # the fit learned: drift breaks ports
    assert {e["feature"] for e in calm["evidence"]} == set(FEATURES) and calm["fitted_on"] == 80
    pulls = [abs(e["pull"]) for e in calm["evidence"]]
    assert pulls == sorted(pulls, reverse=True)  # strongest evidence first
    line = forecast_module.describe(calm)
    assert line.startswith(f"{calm['probability']:.0%} chance to be validated by a gate keeping 50%")
    assert "fitted on 80 testbed ports, held-out AUC 0.80" in line
    assert forecast_module.forecast({"score": 1.0, "modules": []}) is None
    assert forecast_module.forecast({"score": 1.0, "modules": [{"module": "old", "evolution": 0.1}]}) is None
    assert forecast_module.forecast(None) is None


def test_a_fit_for_other_features_is_refused(tmp_path) -> None:
    from core.forecast import Forecast

    rows, held = _table(40, seed=1)
    data = fit(rows, held).to_dict()
    assert Forecast.from_dict(data) == fit(rows, held)
    with pytest.raises(ValueError, match="fitted on features"):
        Forecast.from_dict({**data, "features": ["score"]})


def test_cross_validation_is_stratified_so_every_fit_sees_both_outcomes() -> None:
    rows, _ = _table(40, seed=5)
    held = [1, 1] + [0] * 38  # two ports held: unstratified 2-fold splits could leave a fit without one
    for seed in range(20):
        assert 0.0 <= cross_validated_auc(rows, held, folds=2, seed=seed) <= 1.0
    with pytest.raises(ValueError, match="3 folds need at least 3 ports of each outcome"):
        cross_validated_auc(rows, held, folds=3)
