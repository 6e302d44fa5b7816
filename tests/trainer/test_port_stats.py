"""Portability statistics on real tiny checkpoints: values against hand computations, streaming."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.errors import IncompatibleModel
from trainer.patch.types import Columns, Dense, LowRank, Patch, Rows, Scale
from trainer.port.stats import portability_stats

Q0 = "model.layers.0.self_attn.q_proj"
UP1 = "model.layers.1.mlp.up_proj"
DOWN1 = "model.layers.1.mlp.down_proj"


def _weight(model_dir, module: str) -> torch.Tensor:
    return load_file(str(model_dir / "model.safetensors"))[f"{module}.weight"]


def _evolved(src, dst, changes: dict[str, torch.Tensor]):
    """Copy checkpoint `src` to `dst`, adding `changes[module]` to that module's weight."""
    shutil.copytree(src, dst)
    tensors = load_file(str(src / "model.safetensors"))
    for module, change in changes.items():
        tensors[f"{module}.weight"] = tensors[f"{module}.weight"] + change
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _patch(deltas) -> Patch:
    return Patch(method="test", method_config={}, deltas=deltas)


def _rank_one(out_f: int, in_f: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, 1, generator=gen) * 0.1, torch.randn(1, in_f, generator=gen) * 0.1


def test_relative_evolution_matches_hand_computation(make_tiny_model, tmp_path):
    base_a = make_tiny_model(seed=0)
    w = _weight(base_a, Q0)
    change = torch.full_like(w, 0.01)
    change[0, :] = 0.5  # one heavily moved row
    base_b = _evolved(base_a, tmp_path / "b", {Q0: change})
    patch = _patch({Q0: Dense(delta=torch.ones_like(w) * 0.02), UP1: Dense(torch.zeros(128, 64))})

    stats = portability_stats(patch, base_a, base_b)

    by_name = {m.module: m for m in stats.modules}
    expected = math.sqrt(float((change.double() ** 2).sum())) / math.sqrt(float((w.double() ** 2).sum()))
    assert by_name[Q0].evolution == pytest.approx(expected, rel=1e-4)  # fp32 sums
    assert by_name[Q0].evolution > 0.1  # the hand value is not trivially small
    ratio = 0.02 * math.sqrt(w.numel()) / math.sqrt(float((w.double() ** 2).sum()))
    assert by_name[Q0].patch_ratio == pytest.approx(ratio, rel=1e-4)
    assert by_name[UP1].evolution == 0.0
    assert by_name[UP1].alignment == 0.0  # zero patch and zero evolution: defined as 0, not NaN
    assert 0.0 < stats.score < 1.0


def _aligned_case(kind: str, w_a: torch.Tensor):
    """(delta, evolution change) with the patch's ΔW equal to the change, for each delta kind."""
    out_f, in_f = w_a.shape
    u, v = _rank_one(out_f, in_f, seed=3)
    if kind == "lowrank":
        return LowRank(A=v / 2, B=u, scale=2.0), u @ v
    if kind == "dense":
        return Dense(delta=u @ v), u @ v
    if kind == "columns":
        idx = torch.tensor([1, 5, 7])
        change = torch.zeros_like(w_a)
        change[:, idx] = (u @ v)[:, idx]
        return Columns(idx=idx, values=change[:, idx].clone()), change
    if kind == "rows":
        idx = torch.tensor([0, 9])
        change = torch.zeros_like(w_a)
        change[idx, :] = (u @ v)[idx, :]
        return Rows(idx=idx, values=change[idx, :].clone()), change
    s = 1.0 + 0.2 * torch.rand(out_f, generator=torch.Generator().manual_seed(4))
    return Scale(s=s), (s[:, None] - 1.0) * w_a  # ΔW of a scale patch is (s − 1)·W_A


@pytest.mark.parametrize("kind", ["lowrank", "dense", "columns", "rows", "scale"])
def test_patch_equal_to_evolution_has_cosine_one(make_tiny_model, tmp_path, kind):
    base_a = make_tiny_model(seed=0)
    delta, change = _aligned_case(kind, _weight(base_a, UP1))
    base_b = _evolved(base_a, tmp_path / "b", {UP1: change})

    (module,) = portability_stats(_patch({UP1: delta}), base_a, base_b).modules

    assert module.alignment == pytest.approx(1.0, abs=1e-4)
    assert module.overlap == pytest.approx(1.0, abs=1e-3)  # the evolution already contains the patch
    assert module.evolution == pytest.approx(module.patch_ratio, rel=1e-4)


def test_opposite_patch_has_cosine_minus_one_and_orthogonal_patch_zero(make_tiny_model, tmp_path):
    base_a = make_tiny_model(seed=0)
    w = _weight(base_a, UP1)
    change = torch.zeros_like(w)
    change[:, :8] = 0.05
    base_b = _evolved(base_a, tmp_path / "b", {UP1: change})
    opposite = Columns(idx=torch.arange(8), values=torch.full((w.shape[0], 8), -0.1))
    orthogonal = Columns(idx=torch.arange(8, 16), values=torch.full((w.shape[0], 8), 0.1))

    [opp] = portability_stats(_patch({UP1: opposite}), base_a, base_b).modules
    [orth] = portability_stats(_patch({UP1: orthogonal}), base_a, base_b).modules

    assert opp.alignment == pytest.approx(-1.0, abs=1e-5)
    assert opp.overlap == pytest.approx(-0.5, abs=1e-5)
    assert orth.alignment == pytest.approx(0.0, abs=1e-6)


def test_identical_checkpoints_have_zero_evolution_and_full_score(make_tiny_model, random_patch, tiny_model):
    base = make_tiny_model(seed=0)
    patch = random_patch(tiny_model, {Q0: "lowrank", UP1: "rows", DOWN1: "scale"})

    stats = portability_stats(patch, base, base)

    assert [m.evolution for m in stats.modules] == [0.0, 0.0, 0.0]
    assert [m.alignment for m in stats.modules] == [0.0, 0.0, 0.0]
    assert all(m.patch_ratio > 0 for m in stats.modules)
    assert stats.score == 1.0
    as_json = json.loads(json.dumps(stats.to_dict()))
    assert {m["module"] for m in as_json["modules"]} == {Q0, UP1, DOWN1}
    assert as_json["score"] == 1.0


def test_score_falls_as_the_base_drifts(make_tiny_model, random_patch, tiny_model, tmp_path):
    base_a = make_tiny_model(seed=0)
    patch = random_patch(tiny_model, {Q0: "lowrank"})
    w = _weight(base_a, Q0)
    noise = torch.randn(w.shape, generator=torch.Generator().manual_seed(5))
    scores = [
        portability_stats(patch, base_a, _evolved(base_a, tmp_path / f"b{i}", {Q0: eps * noise})).score
        for i, eps in enumerate([0.001, 0.01, 0.05])
    ]
    assert scores[0] > scores[1] > scores[2]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_streams_two_tensors_per_module(make_tiny_model, random_patch, tiny_model, monkeypatch):
    import safetensors

    real_open = safetensors.safe_open
    reads: list[str] = []

    class Counting:
        def __init__(self, *args, **kwargs):
            self._inner = real_open(*args, **kwargs)

        def __enter__(self):
            self._handle = self._inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self._inner.__exit__(*exc)

        def get_tensor(self, key):
            reads.append(key)
            return self._handle.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self._handle, name)

    monkeypatch.setattr(safetensors, "safe_open", Counting)
    patch = random_patch(tiny_model, {Q0: "lowrank", DOWN1: "columns"})
    portability_stats(patch, make_tiny_model(seed=0), make_tiny_model(seed=1))

    assert sorted(reads) == sorted([f"{Q0}.weight"] * 2 + [f"{DOWN1}.weight"] * 2)


def test_sharded_checkpoint_gives_the_same_numbers(make_tiny_model, random_patch, tiny_model, tmp_path):
    from trainer.tiny import build_model

    single_b = make_tiny_model(seed=1)
    sharded_b = tmp_path / "sharded"
    build_model(seed=1).save_pretrained(sharded_b, max_shard_size="100KB")
    assert (sharded_b / "model.safetensors.index.json").is_file()
    patch = random_patch(tiny_model, {Q0: "lowrank", DOWN1: "dense"})

    single = portability_stats(patch, make_tiny_model(seed=0), single_b).to_dict()
    sharded = portability_stats(patch, make_tiny_model(seed=0), sharded_b).to_dict()

    assert sharded == single
    assert single["modules"][0]["evolution"] > 0.5  # two different seeds: a real difference


def test_missing_module_and_shape_mismatch_name_the_module(make_tiny_model, random_patch, tiny_model):
    base_a = make_tiny_model(seed=0)
    bad = Patch("test", {}, {"model.layers.7.mlp.up_proj": Dense(torch.ones(128, 64))})
    with pytest.raises(IncompatibleModel, match=r"model\.layers\.7\.mlp\.up_proj"):
        portability_stats(bad, base_a, base_a)

    wider = make_tiny_model(seed=0, intermediate_size=96)
    patch = random_patch(tiny_model, {Q0: "lowrank", UP1: "lowrank"})
    with pytest.raises(IncompatibleModel, match=rf"{UP1}.*\[128, 64\].*\[96, 64\]"):
        portability_stats(patch, base_a, wider)


ARCH_CASES = {
    "gpt2": ["transformer.h.0.attn.c_attn", "transformer.h.1.mlp.c_proj"],  # Conv1D, saved [in, out]
    "mixtral": ["model.layers.0.mlp.experts.gate_up_proj.2"],  # w1 and w3 of expert 2, stacked
    "qwen2": ["lm_head"],  # tied: the checkpoint has only the embedding
    "gemma3": ["model.language_model.layers.1.self_attn.o_proj"],  # saved as language_model.model.*
}


@pytest.mark.parametrize("model_type", list(ARCH_CASES))
def test_runtime_weights_are_read_through_the_architecture(make_zoo_model, model_type):
    """A dense patch equal to the live models' [out, in] evolution has cosine 1: the checkpoint's
    tensors were found, transposed, stacked or shared exactly as the model holds them."""
    from trainer import zoo
    from trainer.patch.targets import all_targets

    live_a, live_b = (all_targets(zoo.build(model_type, seed)) for seed in (0, 1))
    deltas = {m: Dense(live_b[m].weight.detach() - live_a[m].weight.detach()) for m in ARCH_CASES[model_type]}

    stats = portability_stats(_patch(deltas), make_zoo_model(model_type, 0), make_zoo_model(model_type, 1))

    for module in stats.modules:
        assert module.shape == live_a[module.module].shape
        assert module.alignment == pytest.approx(1.0, abs=1e-5)
        assert module.overlap == pytest.approx(1.0, abs=1e-4)
        assert module.evolution > 0.1


def test_statistics_hold_two_tensors_and_one_shard_per_checkpoint(large_checkpoints, tmp_path):
    """Every linear of a 235 MB pair (40 MB shards) patched: the peak RSS increase (in a fresh
    process) stays under one mapped shard per checkpoint plus a few fp32 weights. Keeping every
    shard mapped until the end grew file-backed RSS with both checkpoints: measured +406 MB file,
    +112 MB anonymous before; +71 MB file, +71-88 MB anonymous after (allocator slack included).
    The anonymous peak is noisy (1 ms sampling, allocator): 37-138 MB over nine runs of the same
    files on 2026-12-03, so its bound is 12 fp32 weights (201 MB), still under one checkpoint held
    whole (235 MB in bf16, 470 MB as fp32)."""
    from tests.trainer.conftest import make_random_patch, measure_peak
    from trainer.hf import load_causal_lm
    from trainer.patch.io import save_patch
    from trainer.patch.targets import all_targets

    base_a, base_b = large_checkpoints
    model = load_causal_lm(base_a)
    linears = [n for n in all_targets(model) if n != "lm_head"]
    patch = make_random_patch(model, dict.fromkeys(linears, "lowrank"))
    patch = save_patch(patch, tmp_path / "p.safetensors")
    largest_weight = max(t.numel() * 4 for n, t in model.state_dict().items() if "layers" in n)
    del model
    shard = max(p.stat().st_size for p in base_a.glob("*.safetensors"))

    peak = measure_peak("stats", str(base_a), str(base_b), str(patch))

    print(f"stats: RSS +{peak['anon_bytes'] / 1e6:.0f} MB anonymous, +{peak['file_bytes'] / 1e6:.0f} MB file")
    assert peak["file_bytes"] < 2 * shard + 10e6, peak
    assert peak["anon_bytes"] < 12 * largest_weight, peak  # 4 fp32 weights + bf16 reads + slack
