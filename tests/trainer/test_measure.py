"""measure(): the no-op check rides on the eval arms a job already runs (no forward pass of its own),
falls back to a few rows when an arm it compares was stored, and still names zero patches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.plans import EVALUATE_ARMS, PORT_ARMS, EvalSet, MeasurePlan
from tests.trainer.conftest import make_random_patch
from trainer.gate import GateConfig, decide
from trainer.measure import NOOP_ROWS, measure
from trainer.patch.io import save_patch
from trainer.patch.types import Dense, Patch
from trainer.resident import ResidentModels, _load

Q0 = "model.layers.0.self_attn.q_proj"
ROWS = [
    {"prompt": f"Question {i}: the value is", "choices": [" one", " two"], "answer": i % 2} for i in range(6)
]


class CountingModels(ResidentModels):
    """Resident bases whose forward passes are counted (a pre-hook on every loaded model)."""

    def __init__(self) -> None:
        self.forwards = 0
        super().__init__(1 << 34, "cpu", loader=self._counted)

    def _counted(self, directory: Path, device: torch.device, dtype: torch.dtype) -> tuple[object, object]:
        model, tokenizer = _load(directory, device, dtype)
        model.register_forward_pre_hook(lambda *_: setattr(self, "forwards", self.forwards + 1))
        return model, tokenizer


@pytest.fixture
def files(tiny_model_dir: Path, tmp_path: Path) -> tuple[Path, Path, Path]:
    from trainer.hf import load_causal_lm

    model = load_causal_lm(tiny_model_dir)
    patch = save_patch(make_random_patch(model, {Q0: "lowrank"}), tmp_path / "patch.safetensors")
    zero = save_patch(
        Patch("test", {}, {Q0: Dense(delta=torch.zeros(64, 64))}), tmp_path / "zero.safetensors"
    )
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return patch, zero, data


def _forwards_of_one_evaluation(models: CountingModels, directory: Path, rows: list[dict]) -> int:
    from trainer.evaluate import evaluate

    with models.borrow(directory) as (model, tokenizer):
        before = models.forwards
        evaluate(model, tokenizer, rows)
        return models.forwards - before


def test_noop_check_costs_no_forward_pass_of_its_own(tiny_model_dir: Path, files) -> None:
    patch, _, data = files
    models = CountingModels()
    one = _forwards_of_one_evaluation(models, tiny_model_dir, ROWS)
    plan = MeasurePlan(
        patch, tiny_model_dir, eval_sets=(EvalSet(1, "d/eval", data),), arms=dict(EVALUATE_ARMS)
    )

    before = models.forwards
    measured = measure(plan, models=models)

    assert models.forwards - before == 2 * one  # base alone and base + patch, nothing else
    assert measured.noop is not None
    assert measured.noop["num_probes"] == len(ROWS) and measured.noop["max_abs_change"] > 1e-3
    assert decide(measured, GateConfig(), patched="patch").why.startswith(("beats", "does not beat"))


def test_stored_base_arm_is_compared_on_a_few_rows(tiny_model_dir: Path, files) -> None:
    patch, _, data = files
    models = CountingModels()
    one = _forwards_of_one_evaluation(models, tiny_model_dir, ROWS)
    probe = _forwards_of_one_evaluation(models, tiny_model_dir, ROWS[:NOOP_ROWS])
    stored = {"loss": 3.0, "perplexity": 20.0, "tokens": 10, "rows": 6, "accuracy": 0.5, "choice_rows": 6}
    plan = MeasurePlan(
        patch,
        tiny_model_dir,
        source_base_dir=tiny_model_dir,
        eval_sets=(EvalSet(1, "d/eval", data),),
        arms=dict(PORT_ARMS),
        stored={(1, "base"): stored, (1, "source_base"): stored, (1, "source"): stored},
    )

    before = models.forwards
    measured = measure(plan, models=models)

    assert models.forwards - before == one + probe  # the ported arm, then the base alone on a few rows
    assert measured.rows[0]["base"] == stored
    assert measured.noop is not None and measured.noop["num_probes"] == NOOP_ROWS
    assert measured.noop["max_abs_change"] > 1e-3


def test_zero_patch_is_named_without_measuring_it(tiny_model_dir: Path, files) -> None:
    _, zero, data = files
    plan = MeasurePlan(
        zero, tiny_model_dir, eval_sets=(EvalSet(1, "d/eval", data),), arms=dict(EVALUATE_ARMS)
    )

    measured = measure(plan)

    assert measured.noop is not None and measured.noop["reason"] == "zero delta"
    decision = decide(measured, GateConfig(), patched="patch")
    assert decision.status == "degraded" and decision.why.startswith("no-op (zero delta)")
