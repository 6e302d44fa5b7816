"""Every method on every architecture in the catalog (issue 10): tiny random models built here.

For each (architecture, method) the method trains a few steps with a learning rate high enough to
move the logits, then: the patch touches exactly the weights the architecture description says;
our apply reproduces the trained model; revert is bit-exact; the PEFT export loaded by
`PeftModel.from_pretrained` and the merged export both equal our apply; porting onto an evolved
copy of the base gives a verdict and a patch that is not a no-op.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from core.arch import find_architecture
from core.arch.spec import channel_offset, dims_of, head_rows
from core.errors import ConfigError
from core.plans import PORT_ARMS, EvalSet, MeasurePlan
from trainer import zoo
from trainer.hf import load_causal_lm
from trainer.methods import get_method, parse_overrides
from trainer.patch.apply import apply_patch
from trainer.patch.io import save_patch
from trainer.patch.merge import merge_into_directory
from trainer.patch.targets import all_targets
from trainer.patch.types import Patch

METHODS = ("lora", "full", "propulsion", "s2ft")
SETTINGS = {  # s2ft trains all four unit kinds, so fused v rows and fused up rows are exercised
    "s2ft": ["o_ratio=0.25", "v_ratio=0.5", "d_ratio=0.05", "u_ratio=0.05"],
}
LR = {"lora": 2e-2, "full": 2e-3, "propulsion": 2e-2, "s2ft": 2e-2}
IDS = torch.tensor([[1, 5, 9, 20, 33, 40, 77, 101, 150, 260, 300, 511]])
CASES = [(m, method) for m in zoo.MODEL_TYPES for method in METHODS]


class Zoo:
    """Tiny models saved once per test module: the base and an evolved copy of each type."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, Path] = {}

    def base(self, model_type: str) -> Path:
        if model_type not in self.built:
            self.built[model_type] = zoo.save(model_type, self.root / model_type)
        return self.built[model_type]

    def evolved(self, model_type: str) -> Path:
        path = self.root / f"{model_type}-v2"
        if not path.exists():
            model = _load(self.base(model_type))
            gen = torch.Generator().manual_seed(7)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(torch.randn(p.shape, generator=gen) * 0.002)
            model.save_pretrained(path)
            for file in self.base(model_type).glob("tokenizer*"):
                (path / file.name).write_bytes(file.read_bytes())
        return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("zoo"))


def _load(path: Path) -> Any:
    return load_causal_lm(path, dtype=torch.float32).eval()


def _logits(model: Any) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits.float()


def _train(model: Any, method_name: str) -> tuple[Patch, torch.Tensor, torch.Tensor]:
    """(patch, logits of the trained model, logits of the base before training)."""
    method = get_method(method_name)
    config = parse_overrides(method_name, SETTINGS.get(method_name, []))
    before = _logits(model)
    prepared = method.prepare(model, config)
    optimizer = torch.optim.Adam(prepared.params.values(), lr=LR[method_name])
    torch.manual_seed(0)
    for _ in range(3):
        batch = torch.randint(3, zoo.VOCAB, (2, 16))
        loss = prepared.model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    prepared.model.eval()
    trained = _logits(prepared.model)
    patch = method.extract_patch(prepared, config)
    method.cleanup(prepared)
    return patch, trained, before


def _expected(model: Any, method: str) -> set[str]:
    """Weight names the description says a method trains by default (all projections)."""
    arch = find_architecture(model.config.to_dict())
    assert arch is not None
    present = all_targets(model)
    dims = dims_of(model.config.to_dict(), arch)
    names = set()
    for layer in range(dims.layers):
        for path in arch.default_targets(method):
            name = f"{arch.layers}.{layer}.{path}"
            names |= {n for n in present if n == name or n.rsplit(".", 1)[0] == name}
    return names


def _s2ft_allowed(model: Any, name: str, kind: str) -> set[int]:
    """Rows/columns of `name` S²FT may touch per the description (heads, KV heads, channels)."""
    config = model.config.to_dict()
    arch = find_architecture(config)
    assert arch is not None
    dims = dims_of(config, arch)
    target = all_targets(model)[name]
    path = name.split(f"{arch.layers}.", 1)[1].split(".", 1)[1]
    projection = arch.projection(path) or arch.projection(path.rsplit(".", 1)[0])
    assert projection is not None, name
    out_rows, in_cols = target.shape
    if kind == "columns":
        assert projection.parts in (("o",), ("down",)), name
        return set(range(in_cols))
    if "v" in projection.parts:
        return {i for h in range(dims.kv_heads) for i in head_rows(projection, "v", dims, h)}
    assert "up" in projection.parts, name
    start, width = channel_offset(projection, "up", out_rows)
    return set(range(start, start + width))


@pytest.mark.parametrize(("model_type", "method"), CASES, ids=[f"{a}-{m}" for a, m in CASES])
def test_method_on_architecture(models: Zoo, model_type: str, method: str, tmp_path: Path) -> None:
    base_dir = models.base(model_type)
    model = _load(base_dir)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    patch, trained, before = _train(model, method)

    # the patch touches what the description says
    if method == "s2ft":
        kinds = {d.kind for d in patch.deltas.values()}
        assert kinds == {"columns", "rows"}
        for name, delta in patch.deltas.items():
            assert set(delta.idx.tolist()) <= _s2ft_allowed(model, name, delta.kind), name
    else:
        assert set(patch.deltas) == _expected(model, method)

    # our apply reproduces training, changes the outputs, and reverts bit for bit
    assert torch.equal(_logits(model), before)
    with apply_patch(model, patch):
        applied = _logits(model)
    assert (applied - before).abs().max() > 1e-3, "the trained patch is a no-op"
    torch.testing.assert_close(applied, trained, atol=1e-4, rtol=1e-4)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())

    # PEFT export loads in PEFT with the same logits. Full has no PEFT form, nor has a scale on MoE
    # experts (PEFT's IA3 has no target_parameters): both are refused in one line, merged only.
    from peft import PeftModel

    from trainer.patch.peft_export import export_peft

    adapter = tmp_path / "peft"
    shapes = {n: t.shape for n, t in all_targets(model).items()}
    experts = any(t.expert is not None for t in all_targets(model).values())
    if method == "full" or (method == "propulsion" and experts):
        with pytest.raises(ConfigError, match="--format merged"):
            export_peft(patch, adapter, str(base_dir), module_shapes=shapes)
        assert not adapter.exists()
    else:
        export_peft(patch, adapter, str(base_dir), module_shapes=shapes)
        peft_logits = _logits(PeftModel.from_pretrained(_load(base_dir), adapter).eval())
        torch.testing.assert_close(peft_logits, applied, atol=1e-5, rtol=0)

    # merged export equals our apply
    merged = merge_into_directory(base_dir, patch, tmp_path / "merged")
    torch.testing.assert_close(_logits(_load(merged)), applied, atol=1e-5, rtol=1e-5)

    # port onto an evolved copy: a verdict, and a patch that still changes the outputs
    from trainer.gate import GateConfig, decide
    from trainer.measure import measure

    patch_path = save_patch(patch, tmp_path / "patch.safetensors")
    eval_path = tmp_path / "eval.jsonl"
    rows = [{"prompt": "The value of x is", "choices": [" one", " two"], "answer": i % 2} for i in range(4)]
    eval_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plan = MeasurePlan(
        patch_path,
        models.evolved(model_type),
        source_base_dir=base_dir,
        eval_sets=(EvalSet(1, "d/eval", eval_path),),
        arms=dict(PORT_ARMS),
        portability=True,
    )
    measured = measure(plan)
    assert measured.noop is not None and measured.noop["max_abs_change"] > 1e-3
    verdict = decide(measured, GateConfig(), patched="ported", source="source")
    assert verdict.status in ("validated", "degraded", "inconclusive")


@pytest.fixture(scope="module")
def importance_files(models: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """ALEWR importance per model type, measured once (two steps of full training on text)."""
    from tests.trainer.conftest import corpus_rows
    from trainer.regularizers.alewr.importance import compute_importance

    made: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("importance")

    def get(model_type: str) -> Path:
        if model_type not in made:
            made[model_type] = compute_importance(
                models.base(model_type),
                corpus_rows(4, start=200),
                out_path=root / f"{model_type}.safetensors",
                steps=2,
                max_length=32,
            )
        return made[model_type]

    return get


ALEWR_CASES = [(m, method) for m in zoo.MODEL_TYPES for method in ("full", "s2ft")]


@pytest.mark.parametrize(("model_type", "method"), ALEWR_CASES, ids=[f"{a}-{m}" for a, m in ALEWR_CASES])
def test_alewr_regularises_exactly_what_the_method_trains(
    models: Zoo, importance_files: Any, model_type: str, method: str
) -> None:
    from trainer.regularizers.alewr import AlewrConfig
    from trainer.regularizers.alewr.penalty import build_penalty

    model = _load(models.base(model_type))
    trainer_method = get_method(method)
    config = parse_overrides(method, SETTINGS.get(method, []))
    prepared = trainer_method.prepare(model, config)
    alewr = AlewrConfig(importance=str(importance_files(model_type)), lambda_=1.0)
    penalty = build_penalty(trainer_method, prepared, alewr, torch.device("cpu"))
    assert penalty is not None
    assert {id(t.param) for t in penalty.terms} == {id(p) for p in prepared.params.values()}
    assert all(t.omega.shape == t.param.shape for t in penalty.terms)
    with torch.no_grad():
        for p in prepared.params.values():
            p.add_(0.01)
    value = penalty(1.0)
    value.backward()
    assert float(value.detach()) > 0
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in prepared.params.values())
    trainer_method.cleanup(prepared)


FUSED_QKV = ("phi3", "gpt2", "gpt_neox", "falcon")


@pytest.mark.parametrize("model_type", FUSED_QKV)
def test_v_rows_of_a_fused_projection_are_where_the_model_reads_values(model_type: str) -> None:
    """Changing the rows the description calls v leaves every attention pattern as it was (only
    values move); changing the other rows of the fused projection changes the patterns."""
    model = zoo.build(model_type)
    model.set_attn_implementation("eager")
    config = model.config.to_dict()
    arch = find_architecture(config)
    assert arch is not None
    dims = dims_of(config, arch)
    projection = arch.with_part("v")[0]
    target = all_targets(model)[f"{arch.layers}.0.{projection.path}"]
    v_rows = sorted({i for h in range(dims.kv_heads) for i in head_rows(projection, "v", dims, h)})
    other = sorted(set(range(target.shape[0])) - set(v_rows))

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            out = model(input_ids=IDS, output_attentions=True)
        return out.attentions[0], out.logits

    attn, logits = run()
    weight = target.weight
    saved = weight.detach().clone()
    noise = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        weight[v_rows] += noise[v_rows]
    v_attn, v_logits = run()
    assert torch.equal(v_attn, attn) and not torch.allclose(v_logits, logits)
    with torch.no_grad():
        weight.copy_(saved)
        weight[other] += noise[other]
    assert not torch.allclose(run()[0], attn)
