"""Export a patch as a PEFT adapter directory that `PeftModel.from_pretrained` (and vLLM) can load.

lowrank -> LoRA with alpha / r == scale. columns/rows -> LoRA exactly, one side being a one-hot
selector (rank k, alpha = k, so the scale is 1). scale -> IA3 on outputs (`feedforward_modules=[]`).
dense has no adapter form. `target_modules` lists full module names, so PEFT attaches adapters only
where the patch has deltas (short names such as "o_proj" would match every layer).

Linear and Conv1D targets (fused ones included: a fused qkv is one module) are `target_modules`,
with `fan_in_fan_out` true when a Conv1D is among them. The experts of one 3-D MoE parameter are
one `target_parameters` entry (layout: `trainer.patch.peft_experts`); IA3 has no such form, so a
scale delta on an expert is refused.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.atomic import atomic_output_dir
from core.errors import ConfigError
from core.patchfile import peft_adapter_type
from core.peft_config import pattern_owner
from trainer.patch.io import describe
from trainer.patch.peft_experts import (
    common_setting,
    expert_count,
    expert_counts,
    expert_slice,
    is_conv1d,
    pack,
    wrapper_paths,
)
from trainer.patch.types import Columns, Delta, LowRank, Patch, Rows, Scale

PREFIX = "base_model.model."


def export_rank(patch: Patch) -> int | None:
    """The largest LoRA rank `export_peft` would write (vLLM's `max_lora_rank` must cover it);
    None for IA3 (scale) and for patches that have no LoRA export (dense, mixed with scale)."""
    return describe(patch).export_rank


def _one_hot(idx: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """[k, size] with row j selecting idx[j]."""
    out = torch.zeros(idx.shape[0], size, dtype=dtype)
    out[torch.arange(idx.shape[0]), idx.to(torch.int64).cpu()] = 1
    return out


def _lora_pair(
    name: str, delta: Delta, shapes: Mapping[str, tuple[int, int]] | None
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(lora_A [r,in], lora_B [out,r], scale) for one target."""
    if isinstance(delta, LowRank):
        return delta.A.detach().cpu(), delta.B.detach().cpu(), float(delta.scale)
    assert isinstance(delta, Columns | Rows)
    if shapes is None or name not in shapes:
        raise ConfigError(
            f"module '{name}': exporting a {delta.kind} delta needs the base weight shape to build its "
            "one-hot selector; pass module_shapes (the CLI reads them from --model)"
        )
    out_features, in_features = shapes[name]
    values = delta.values.detach().cpu()
    if isinstance(delta, Columns):
        return _one_hot(delta.idx, in_features, values.dtype), values, 1.0
    return values, _one_hot(delta.idx, out_features, values.dtype).T, 1.0


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _lora(
    patch: Patch, shapes: Mapping[str, tuple[int, int]] | None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    settings: dict[str, tuple[int, int | float]] = {}  # module or expert parameter -> (r, alpha)
    experts: dict[str, dict[int, tuple[torch.Tensor, torch.Tensor, float]]] = {}
    for name, delta in sorted(patch.deltas.items()):
        a, b, scale = _lora_pair(name, delta, shapes)
        if (where := expert_slice(name)) is not None:
            experts.setdefault(where[0], {})[where[1]] = (a, b, scale)
            continue
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.contiguous()
        settings[name] = (int(a.shape[0]), _number(scale * a.shape[0]))
    # The most common (r, alpha) is the default, the rest go to the patterns; with one scale across
    # modules the default alpha/r is right everywhere, which matters for servers that ignore patterns.
    # Expert parameters all share one setting, the default (`peft_experts.common_setting`).
    if experts:
        rank, scale = common_setting(p for pairs in experts.values() for p in pairs.values())
        r0, alpha0 = rank, _number(scale * rank)
    else:
        r0, alpha0 = Counter(settings.values()).most_common(1)[0][0]
    paths, counts = wrapper_paths(experts), expert_counts(shapes)
    for param, pairs in sorted(experts.items()):
        packed = pack(param, pairs, expert_count(param, pairs, counts), rank, scale)
        tensors[f"{PREFIX}{paths[param]}.lora_A.weight"] = packed.A.contiguous()
        tensors[f"{PREFIX}{paths[param]}.lora_B.weight"] = packed.B.contiguous()
        settings[param] = (r0, alpha0)
    rank_pattern = {n: r for n, (r, _) in settings.items() if r != r0}
    alpha_pattern = {n: a for n, (_, a) in settings.items() if a != alpha0}
    for pattern in (rank_pattern, alpha_pattern):
        for name in settings:
            owner = pattern_owner(pattern, name)
            if owner not in (None, name):
                raise ConfigError(f"module '{name}' would take the PEFT rank/alpha pattern of '{owner}'")
    modules = sorted(n for n in patch.deltas if expert_slice(n) is None)
    config = {
        "peft_type": "LORA",
        "r": r0,
        "lora_alpha": alpha0,
        "rank_pattern": rank_pattern,
        "alpha_pattern": alpha_pattern,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": any(is_conv1d(n) for n in modules),
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
        "target_modules": modules,
    }
    if experts:  # only then: PEFT releases before 0.17 have no such field
        config["target_parameters"] = sorted(experts)
    return tensors, config


def _ia3(patch: Patch) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {}
    for name, delta in sorted(patch.deltas.items()):
        assert isinstance(delta, Scale)
        if expert_slice(name) is not None:
            raise ConfigError(
                f"module '{name}': a scale delta on an MoE expert has no PEFT form (IA3 cannot adapt "
                "expert parameters); export --format merged instead"
            )
        tensors[f"{PREFIX}{name}.ia3_l"] = (
            delta.s.detach().cpu().to(torch.float32).reshape(-1, 1).contiguous()
        )
    config = {
        "peft_type": "IA3",
        "feedforward_modules": [],
        "fan_in_fan_out": any(is_conv1d(n) for n in patch.deltas),
        "init_ia3_weights": True,
        "target_modules": sorted(patch.deltas),
    }
    return tensors, config


def write_peft(
    patch: Patch,
    directory: Path,
    base_model_name_or_path: str,
    revision: str | None = None,
    *,
    module_shapes: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Write `adapter_config.json` + `adapter_model.safetensors` into `directory`, which exists (a
    staging directory that the caller makes appear atomically).

    `module_shapes` ({target: (out, in)}: every patch target's [out, in] shape, Conv1D transposed and
    expert slices included; `trainer.patch.model_shapes.target_shapes`) is needed for columns/rows
    deltas, whose one-hot selector spans the full weight dimension that the patch does not record,
    and tells how many experts an expert parameter has (else: up to the patch's last one).
    """
    from safetensors.torch import save_file

    adapter_type = peft_adapter_type(d.kind for d in patch.deltas.values())
    tensors, config = _ia3(patch) if adapter_type == "IA3" else _lora(patch, module_shapes)
    config.update(
        task_type="CAUSAL_LM",
        modules_to_save=None,
        base_model_name_or_path=base_model_name_or_path,
        revision=revision,
        inference_mode=True,
    )
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_peft(
    patch: Patch,
    out_dir: Path | str,
    base_model_name_or_path: str,
    revision: str | None = None,
    *,
    module_shapes: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """`write_peft` into a new directory `out_dir`, atomically (an existing non-empty one is refused)."""
    with atomic_output_dir(out_dir) as tmp:
        write_peft(patch, tmp, base_model_name_or_path, revision, module_shapes=module_shapes)
    return Path(out_dir)
