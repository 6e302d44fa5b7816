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


def _same_delta(a, b) -> bool:
    from dataclasses import astuple

    pairs = zip(astuple(a), astuple(b), strict=True)
    return type(a) is type(b) and all(
        torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y for x, y in pairs
    )


def _structure(model) -> list[tuple[str, str, bool]]:
    return [(n, type(m).__name__, m.training) for n, m in model.named_modules()]


def test_training_on_a_borrowed_base_hands_it_back_as_it_was(
    tiny_model_dir: Path, train_rows, write_jsonl, tmp_path: Path
) -> None:
    """Every method trains on the resident base and leaves it bit-identical to a fresh load, with
    the same modules and mode; each patch equals the one a fresh load trains (nothing leaks from
    one borrower to the next), and the base was loaded once for all of them."""
    from trainer.loop import TrainArgs, train_to_patch
    from trainer.patch.io import load_patch

    data = write_jsonl(train_rows)
    models = ResidentModels(budget_bytes=1 << 30)
    with models.borrow(tiny_model_dir) as (model, _):
        structure = _structure(model)
    for method in ("lora", "full", "s2ft", "propulsion"):
        args = TrainArgs(steps=2, device="cpu")
        out, _ = train_to_patch(
            tiny_model_dir, data, method, out_path=tmp_path / f"{method}.borrowed", args=args, models=models
        )
        fresh, _ = train_to_patch(
            tiny_model_dir, data, method, out_path=tmp_path / f"{method}.fresh", args=args
        )
        borrowed, alone = load_patch(out), load_patch(fresh)
        assert borrowed.modules == alone.modules
        for name in borrowed.modules:
            assert _same_delta(borrowed.deltas[name], alone.deltas[name]), (method, name)
        with models.borrow(tiny_model_dir) as (model, _):
            assert _same_as_fresh(model, tiny_model_dir), method
            assert _structure(model) == structure, method
    assert models.loads == 1


def test_importance_on_a_borrowed_base_hands_it_back_as_it_was(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tests.trainer.conftest import corpus_rows
    from trainer.regularizers.alewr.importance import compute_importance

    models = ResidentModels(budget_bytes=1 << 30)
    kwargs = {"steps": 2, "device": "cpu"}
    borrowed = compute_importance(
        tiny_model_dir, corpus_rows(4), out_path=tmp_path / "borrowed.safetensors", models=models, **kwargs
    )
    fresh = compute_importance(
        tiny_model_dir, corpus_rows(4), out_path=tmp_path / "fresh.safetensors", **kwargs
    )
    a, b = load_file(borrowed), load_file(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with models.borrow(tiny_model_dir, torch.float32) as (model, _):
        assert _same_as_fresh(model, tiny_model_dir) and not model.training
    assert models.loads == 1
