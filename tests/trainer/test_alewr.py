"""ALEWR: the importance file, λ = 0 is plain training, λ > 0 holds important weights back."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError, IncompatibleModel
from tests.trainer.conftest import corpus_rows
from trainer.loop import TrainArgs, train
from trainer.methods import get_method, parse_overrides
from trainer.methods.alewr.importance import compute_importance, load_importance
from trainer.tiny import TinyConfig, build_model


@pytest.fixture(scope="module")
def importance(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("alewr") / "importance.safetensors"
    return compute_importance(tiny_model_dir, corpus_rows(8, start=200), out_path=out, steps=4, max_length=64)


def _train(name, tokenizer, rows, overrides, steps=6):
    args = TrainArgs(steps=steps, batch_size=8, max_length=64, lr=3e-3, schedule="constant")
    return train(build_model(), tokenizer, rows, get_method(name), parse_overrides(name, overrides), args)


def _weighted_drift(patch, omega) -> float:
    total = 0.0
    for name, d in patch.deltas.items():
        om = omega[f"{name}.weight"]
        if d.kind == "dense":
            total += float((om * d.delta.square()).sum())
        elif d.kind == "columns":
            total += float((om[:, d.idx] * d.values.square()).sum())
        else:
            total += float((om[d.idx, :] * d.values.square()).sum())
    return total


def test_importance_covers_the_target_weights_normalised(importance):
    omega = load_importance(importance, build_model())
    model_weights = dict(build_model().named_parameters())
    assert len(omega) == 2 * 7
    for name, om in omega.items():
        assert om.shape == model_weights[name].shape and om.dtype == torch.float32
        assert float(om.min()) >= 0
        torch.testing.assert_close(om.mean(), torch.tensor(1.0))
    with pytest.raises(IncompatibleModel):
        load_importance(importance, build_model(TinyConfig(hidden_size=32)))


@pytest.mark.parametrize("name", ["full", "s2ft"])
def test_lambda_zero_is_plain_training_bit_for_bit(name, importance, tiny_tokenizer, train_rows):
    plain = _train(name, tiny_tokenizer, train_rows, [])
    zero = _train(
        name, tiny_tokenizer, train_rows, ["regularize=alewr", "alewr_lambda=0", f"importance={importance}"]
    )
    assert plain.losses == zero.losses
    for module, delta in plain.patch.deltas.items():
        other = zero.patch.deltas[module]
        for field in ("delta", "values", "idx"):
            if hasattr(delta, field):
                assert torch.equal(getattr(delta, field), getattr(other, field))


@pytest.mark.parametrize("name", ["full", "s2ft"])
def test_positive_lambda_reduces_the_importance_weighted_drift(name, importance, tiny_tokenizer, train_rows):
    omega = load_importance(importance)
    plain = _train(name, tiny_tokenizer, train_rows, [])
    held = _train(
        name, tiny_tokenizer, train_rows, ["regularize=alewr", "alewr_lambda=300", f"importance={importance}"]
    )
    assert _weighted_drift(held.patch, omega) < 0.7 * _weighted_drift(plain.patch, omega)
    assert held.patch.method_config["regularize"] == "alewr"


def test_dynamic_balance_reports_a_penalty(importance, tiny_tokenizer, train_rows):
    seen = []
    overrides = ["regularize=alewr", "alewr_balance=0.1", f"importance={importance}"]
    args = TrainArgs(steps=3, batch_size=8, max_length=64, lr=3e-3)
    train(
        build_model(),
        tiny_tokenizer,
        train_rows,
        get_method("s2ft"),
        parse_overrides("s2ft", overrides),
        args,
        on_progress=seen.append,
    )
    assert seen[0].penalty == 0.0  # no drift yet at the first step
    assert seen[-1].penalty == pytest.approx(0.1 * seen[-1].loss, rel=1e-4)  # β · CE once drifting


def test_alewr_needs_an_importance_file_and_a_supporting_method(tiny_tokenizer, train_rows):
    with pytest.raises(ConfigError, match="importance"):
        _train("full", tiny_tokenizer, train_rows, ["regularize=alewr"], steps=1)
    with pytest.raises(ConfigError, match="allowed"):
        parse_overrides("lora", ["regularize=alewr"])
