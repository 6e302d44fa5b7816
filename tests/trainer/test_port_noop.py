"""The no-op check: silent no-ops (zero deltas, modules the model lacks) are caught and explained."""

from __future__ import annotations

import pytest
import torch

from core.errors import ConfigError, IncompatibleModel
from trainer.patch.types import Dense, LowRank, Patch
from trainer.port.noop import patch_effect

Q0 = "model.layers.0.self_attn.q_proj"
DOWN1 = "model.layers.1.mlp.down_proj"


def _snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_unchanged(model, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)


def test_random_patch_changes_output_and_leaves_model_as_it_was(tiny_model, tiny_tokenizer, random_patch):
    patch = random_patch(tiny_model, {Q0: "lowrank", DOWN1: "columns"})
    before = _snapshot(tiny_model)
    tiny_model.train()  # mode is restored too

    check = patch_effect(tiny_model, tiny_tokenizer, patch)

    assert check.changes_output()
    assert check.reason is None and check.no_op_reason() is None
    assert check.max_abs_change > 1e-2
    assert 0 < check.mean_abs_change <= check.max_abs_change
    assert check.missing_modules == () and check.zero_modules == ()
    _assert_unchanged(tiny_model, before)
    assert tiny_model.training


def test_zero_patch_is_a_no_op_with_reason_zero_delta(tiny_model, tiny_tokenizer):
    patch = Patch(
        "lora",
        {},
        {
            Q0: LowRank(A=torch.randn(4, 64), B=torch.zeros(64, 4), scale=2.0),
            DOWN1: Dense(delta=torch.zeros(64, 128)),
        },
    )
    before = _snapshot(tiny_model)

    check = patch_effect(tiny_model, tiny_tokenizer, patch, probes=["Hello world."])

    assert not check.changes_output(tol=0.0)
    assert check.reason == "zero delta"
    assert set(check.zero_modules) == {Q0, DOWN1}
    assert check.max_abs_change == 0.0
    _assert_unchanged(tiny_model, before)


def test_patch_on_absent_modules_is_a_no_op_naming_them(tiny_model, tiny_tokenizer):
    absent = ["model.layers.5.self_attn.q_proj", "transformer.h.0.attn.c_attn"]
    patch = Patch("lora", {}, {m: Dense(delta=torch.ones(64, 64)) for m in absent})

    check = patch_effect(tiny_model, tiny_tokenizer, patch)

    assert not check.changes_output(tol=0.0)
    assert check.reason is not None and check.reason.startswith("missing modules")
    assert all(m in check.reason for m in absent)
    assert set(check.missing_modules) == set(absent)
    assert "zero delta" not in check.reason
    assert check.to_dict()["missing_modules"] == sorted(absent)


def test_partly_missing_patch_reports_missing_but_still_measures(tiny_model, tiny_tokenizer, random_patch):
    patch = random_patch(tiny_model, {Q0: "dense"})
    patch.deltas["model.layers.9.mlp.up_proj"] = Dense(delta=torch.ones(128, 64))

    check = patch_effect(tiny_model, tiny_tokenizer, patch)

    assert check.changes_output()
    assert check.missing_modules == ("model.layers.9.mlp.up_proj",)


def test_tiny_delta_is_below_tolerance(tiny_model, tiny_tokenizer):
    patch = Patch("test", {}, {Q0: Dense(delta=torch.full((64, 64), 1e-9))})

    check = patch_effect(tiny_model, tiny_tokenizer, patch)

    assert check.reason is None  # not zero, not missing: measured
    assert not check.changes_output(tol=1e-4)
    assert "tolerance" in check.no_op_reason(tol=1e-4)


def test_shape_mismatch_still_raises_and_bad_probes_are_rejected(tiny_model, tiny_tokenizer):
    wrong = Patch("test", {}, {Q0: Dense(delta=torch.ones(64, 32))})
    with pytest.raises(IncompatibleModel, match=Q0):
        patch_effect(tiny_model, tiny_tokenizer, wrong)
    with pytest.raises(ConfigError, match="probes"):
        patch_effect(tiny_model, tiny_tokenizer, wrong, probes=[])
