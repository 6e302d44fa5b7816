"""The training loop: argument validation, schedules, determinism, accumulation, progress."""

from __future__ import annotations

import itertools

import pytest
import torch

from core.errors import ConfigError
from trainer.loop import TrainArgs, lr_factor, total_steps, train
from trainer.methods import get_method, parse_overrides
from trainer.tiny import build_model


def _patch_tensors(patch):
    out = {}
    for name, delta in patch.deltas.items():
        for field in ("A", "B", "idx", "values", "s", "delta"):
            if hasattr(delta, field):
                out[f"{name}.{field}"] = getattr(delta, field)
    return out


def _run(name, tokenizer, rows, **kwargs):
    args = TrainArgs(**{"steps": 3, "batch_size": 4, "max_length": 64, **kwargs})
    return train(build_model(), tokenizer, rows, get_method(name), parse_overrides(name), args)


@pytest.mark.parametrize("name", ["lora", "s2ft", "propulsion", "full"])
def test_same_seed_gives_the_same_patch_bit_for_bit(name, tiny_tokenizer, train_rows):
    first = _patch_tensors(_run(name, tiny_tokenizer, train_rows, seed=7).patch)
    second = _patch_tensors(_run(name, tiny_tokenizer, train_rows, seed=7).patch)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_another_seed_gives_another_patch(tiny_tokenizer, train_rows):
    a = _patch_tensors(_run("lora", tiny_tokenizer, train_rows, seed=1).patch)
    b = _patch_tensors(_run("lora", tiny_tokenizer, train_rows, seed=2).patch)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_accumulation_optimises_the_same_token_weighted_loss(tiny_tokenizer, train_rows):
    """One batch of 8 vs 4 micro-batches of 2: same gradient up to float rounding, so same patch."""
    args = {"steps": 2, "seed": 0, "lr": 1e-3}
    rows = train_rows[:8]
    whole = _patch_tensors(_run("s2ft", tiny_tokenizer, rows, batch_size=8, **args).patch)
    accum = _patch_tensors(_run("s2ft", tiny_tokenizer, rows, batch_size=2, grad_accum=4, **args).patch)
    for key in whole:
        torch.testing.assert_close(accum[key], whole[key], atol=1e-6, rtol=1e-4)


def test_progress_reports_every_step_with_eta(tiny_tokenizer, train_rows):
    seen = []
    args = TrainArgs(steps=4, batch_size=4, max_length=64)
    train(
        build_model(),
        tiny_tokenizer,
        train_rows,
        get_method("propulsion"),
        parse_overrides("propulsion"),
        args,
        on_progress=seen.append,
    )
    assert [p.step for p in seen] == [1, 2, 3, 4] and all(p.total_steps == 4 for p in seen)
    assert seen[-1].eta_s == 0 and all(p.tokens_per_s > 0 and p.loss > 0 for p in seen)


def test_epochs_set_the_number_of_steps():
    assert total_steps(TrainArgs(epochs=2, batch_size=4, grad_accum=1), 10) == 6
    assert total_steps(TrainArgs(epochs=1, batch_size=2, grad_accum=2), 10) == 3
    assert total_steps(TrainArgs(steps=5, epochs=9), 10) == 5


def test_schedule_warms_up_then_decays_to_zero():
    cosine = [lr_factor(s, 10, 2, "cosine") for s in range(10)]
    assert cosine[:2] == [0.5, 1.0] and cosine[2] == 1.0
    assert all(a >= b for a, b in itertools.pairwise(cosine[2:])) and cosine[-1] > 0
    assert lr_factor(10, 10, 2, "linear") == 0.0 and lr_factor(6, 10, 2, "linear") == 0.5
    assert lr_factor(9, 10, 0, "constant") == 1.0


def test_bad_train_args_name_every_field():
    with pytest.raises(ConfigError) as err:
        TrainArgs(lr=-1, batch_size=0, schedule="step", device="tpu")
    for field in ("lr", "batch_size", "schedule", "device", "cosine, linear, constant"):
        assert field in err.value.message


def test_training_leaves_the_model_as_the_base(tiny_tokenizer, train_rows):
    model = build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name in ("lora", "full"):
        train(model, tiny_tokenizer, train_rows, get_method(name), parse_overrides(name), TrainArgs(steps=1))
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
