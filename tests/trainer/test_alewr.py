"""ALEWR: the importance file, λ = 0 is plain training, λ > 0 holds important weights back."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError, IncompatibleModel
from tests.trainer.conftest import corpus_rows
from trainer.loop import TrainArgs, train
from trainer.methods import get_method, parse_overrides
from trainer.regularizers import AlewrConfig, Regularization, get_regularizer, regularization
from trainer.regularizers.alewr.importance import compute_importance, load_importance
from trainer.tiny import TinyConfig, build_model


@pytest.fixture(scope="module")
def importance(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("alewr") / "importance.safetensors"
    return compute_importance(tiny_model_dir, corpus_rows(8, start=200), out_path=out, steps=4, max_length=64)


def _train(name, tokenizer, rows, reg=None, steps=6):
    args = TrainArgs(steps=steps, batch_size=8, max_length=64, lr=3e-3, schedule="constant")
    config = parse_overrides(name)
    return train(build_model(), tokenizer, rows, get_method(name), config, args, regularization=reg)


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
    plain = _train(name, tiny_tokenizer, train_rows)
    zero = _train(
        name, tiny_tokenizer, train_rows, regularization("alewr", lambda_=0, importance=str(importance))
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
    plain = _train(name, tiny_tokenizer, train_rows)
    held = _train(
        name, tiny_tokenizer, train_rows, regularization("alewr", lambda_=300, importance=str(importance))
    )
    assert _weighted_drift(held.patch, omega) < 0.7 * _weighted_drift(plain.patch, omega)
    # stored: the method's own settings plus the regulariser's, never the per-base importance path
    assert held.patch.method_config == {
        **parse_overrides(name).to_dict(),
        "regularizer": {"name": "alewr", "config": {"lambda": 300.0, "balance": 0.0}},
    }
    assert plain.patch.method_config == parse_overrides(name).to_dict()


def test_dynamic_balance_reports_a_penalty(importance, tiny_tokenizer, train_rows):
    seen = []
    reg = Regularization(get_regularizer("alewr"), AlewrConfig(balance=0.1, importance=str(importance)))
    args = TrainArgs(steps=3, batch_size=8, max_length=64, lr=3e-3)
    train(
        build_model(),
        tiny_tokenizer,
        train_rows,
        get_method("s2ft"),
        parse_overrides("s2ft"),
        args,
        on_progress=seen.append,
        regularization=reg,
    )
    assert seen[0].penalty == 0.0  # no drift yet at the first step
    assert seen[-1].penalty == pytest.approx(0.1 * seen[-1].loss, rel=1e-4)  # β · CE once drifting


def test_alewr_needs_an_importance_file(tiny_tokenizer, train_rows, tmp_path):
    with pytest.raises(ConfigError, match="importance"):
        _train("full", tiny_tokenizer, train_rows, regularization("alewr"), steps=1)
    missing = str(tmp_path / "nowhere.safetensors")
    with pytest.raises(ConfigError, match="importance file not found"):
        _train("s2ft", tiny_tokenizer, train_rows, regularization("alewr", importance=missing), steps=1)


@pytest.mark.parametrize("name", ["lora", "propulsion"])
def test_alewr_refuses_methods_without_weight_views(name, importance, tiny_tokenizer, train_rows):
    reg = regularization("alewr", importance=str(importance))
    expected = f"method '{name}' does not support regularize='alewr' (use full or s2ft)"
    with pytest.raises(ConfigError) as err:
        _train(name, tiny_tokenizer, train_rows, reg, steps=1)
    assert err.value.message == expected
    model = build_model()
    prepared = get_method(name).prepare(model, parse_overrides(name))
    try:  # the penalty itself refuses too, whoever calls it
        with pytest.raises(ConfigError, match="does not support regularize='alewr'"):
            reg.penalty(get_method(name), prepared, torch.device("cpu"))
    finally:
        get_method(name).cleanup(prepared)
    with pytest.raises(ConfigError, match="allowed"):
        parse_overrides(name, ["regularize=alewr"])


def test_alewr_config_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        AlewrConfig(lambda_=-1, balance="x")
    assert "lambda=-1 is outside [0.0, inf]" in err.value.message and "balance" in err.value.message
