"""Resident models: loaded once, handed back clean, evicted when a borrower fails or the budget
is full."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.hf import load_causal_lm
from trainer.patch import apply as apply_module
from trainer.patch.apply import apply_patch
from trainer.patch.types import LowRank, Patch, Scale
from trainer.resident import ResidentModels, model_bytes

Q = "model.layers.{}.self_attn.q_proj"


def _same_as_fresh(model, directory: Path) -> bool:
    fresh = load_causal_lm(directory).state_dict()
    return all(torch.equal(v, fresh[k]) for k, v in model.state_dict().items())


def _patch() -> Patch:
    g = torch.Generator().manual_seed(0)
    return Patch(
        "test",
        {},
        {
            Q.format(0): LowRank(torch.randn(2, 64, generator=g), torch.randn(64, 2, generator=g), 1.0),
            Q.format(1): Scale(1 + 0.3 * torch.randn(64, generator=g)),
        },
    )


def test_borrowed_twice_loaded_once_and_clean_after_apply_revert(tiny_model_dir: Path) -> None:
    models = ResidentModels(budget_bytes=1 << 30)
    for _ in range(3):
        with models.borrow(tiny_model_dir) as (model, tokenizer), apply_patch(model, _patch()):
            assert tokenizer is not None
    assert models.loads == 1
    with models.borrow(tiny_model_dir) as (model, _):
        assert _same_as_fresh(model, tiny_model_dir)


def test_a_patch_failing_mid_apply_leaves_the_resident_model_clean(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = ResidentModels(budget_bytes=1 << 30)
    real, calls = apply_module._apply_one, []

    def fail_on_second(target, delta):
        calls.append(target.name)
        if len(calls) == 2:
            raise RuntimeError("device lost")
        return real(target, delta)

    monkeypatch.setattr(apply_module, "_apply_one", fail_on_second)
    with models.borrow(tiny_model_dir) as (model, _):
        with pytest.raises(RuntimeError, match="device lost"):
            apply_patch(model, _patch())
        assert len(calls) == 2 and _same_as_fresh(model, tiny_model_dir)  # the first delta was reverted
    assert models.loads == 1 and models.resident()


def test_a_borrower_that_raises_evicts_the_model(tiny_model_dir: Path) -> None:
    models = ResidentModels(budget_bytes=1 << 30)
    with pytest.raises(ValueError), models.borrow(tiny_model_dir) as (model, _):
        with torch.no_grad():
            model.lm_head.weight.add_(1.0)  # a job that dirtied the model and then failed
        raise ValueError("job failed")
    assert models.resident() == []
    with models.borrow(tiny_model_dir) as (model, _):
        assert _same_as_fresh(model, tiny_model_dir)
    assert models.loads == 2


def test_the_budget_evicts_least_recently_used(tiny_model_dir: Path, make_tiny_model) -> None:
    other = make_tiny_model(seed=5)
    size = model_bytes(load_causal_lm(tiny_model_dir))
    models = ResidentModels(budget_bytes=int(size * 1.5))  # room for one
    for directory in (tiny_model_dir, other, tiny_model_dir):
        with models.borrow(directory):
            pass
    assert models.loads == 3 and models.resident() == [str(Path(tiny_model_dir).resolve())]
    nothing = ResidentModels(budget_bytes=0)
    for _ in range(2):
        with nothing.borrow(tiny_model_dir):
            pass
    assert nothing.loads == 2 and nothing.resident() == []
