"""Export a patch as the LoRA adapter a serving engine loads exactly (`core.serving` says which form).

One form serves vLLM, SGLang, LoRAX, TGI and llama.cpp: a uniform rank R for every module of every
layer (zero-padded), `r = lora_alpha = R` with each module's scale folded into B, no rank or alpha
patterns, HF per-projection names, and zero tensors wherever the patch has nothing. Per delta kind:

- lowrank: A, and B·scale;
- columns: A = one-hot of the columns, B = the values; rows: A = the values, B = one-hot of the rows
  (always the delta, never the new values);
- scale (Propulsion): ΔW = diag(s − 1)·W. Exact when few channels differ from 1: B selects those
  rows and carries s − 1, A is those rows of the base weight W (read from the base's checkpoint);
- otherwise (scale on many channels, dense), only with an explicit `approximate` rank: the
  truncated SVD of ΔW, whose relative error ‖ΔW − ΔW_r‖/‖ΔW‖ per module is returned.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.errors import ConfigError
from core.serving import (
    ENGINE_TABLE,
    HEAD,
    LAYER_MODULE,
    MAX_RANK,
    Assessment,
    BaseFacts,
    ModuleFacts,
    assess,
    emitted_modules,
    exact_scale_rank,
)
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows, Scale

PREFIX = "base_model.model."
Weights = Callable[[str], torch.Tensor]  # runtime module name -> its base weight [out, in]


@dataclass
class EngineExport:
    """What was written: the assessment it followed, and each approximated module's error."""

    assessment: Assessment
    modules: list[str]
    errors: dict[str, float] = field(default_factory=dict)  # ‖ΔW − ΔW_r‖/‖ΔW‖ per approximated module

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "target": self.assessment.target,
            "status": self.assessment.status,
            "rank": self.assessment.rank,
            "padded_bytes": self.assessment.padded_bytes,
            "rule": self.assessment.rule,
            "note": self.assessment.note,
        }
        if self.errors:
            out["approximation"] = {"rank": self.assessment.rank, "relative_error": self.errors}
        return out


def module_facts(patch: Patch) -> list[ModuleFacts]:
    facts = []
    for name, d in sorted(patch.deltas.items()):
        if isinstance(d, LowRank):
            facts.append(ModuleFacts(name, "lowrank", rank=int(d.A.shape[0])))
        elif isinstance(d, Columns | Rows):
            facts.append(ModuleFacts(name, d.kind, rank=int(d.idx.shape[0])))
        elif isinstance(d, Scale):
            facts.append(ModuleFacts(name, "scale", changed=int((d.s != 1).sum())))
        else:
            facts.append(ModuleFacts(name, "dense"))
    return facts


def _one_hot(idx: torch.Tensor, size: int) -> torch.Tensor:
    out = torch.zeros(idx.shape[0], size)
    out[torch.arange(idx.shape[0]), idx.to(torch.int64).cpu()] = 1
    return out


def _svd(delta_w: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(A [r, in], B [out, r], ‖ΔW − BA‖/‖ΔW‖) of the rank-`rank` truncated SVD."""
    u, s, vh = torch.linalg.svd(delta_w.double(), full_matrices=False)
    total = float(s.square().sum())
    kept = min(rank, s.shape[0])
    error = (float(s[kept:].square().sum()) / total) ** 0.5 if total > 0 else 0.0
    return vh[:kept].float(), (u[:, :kept] * s[:kept]).float(), error


def lora_form(
    name: str, delta: Delta, shape: tuple[int, int], weights: Weights | None, approximate: int | None
) -> tuple[torch.Tensor, torch.Tensor, float | None]:
    """(A [r, in], B [out, r] with the scale folded in, relative error or None when exact)."""
    out_f, in_f = shape
    if isinstance(delta, LowRank):
        return delta.A.float(), delta.B.float() * float(delta.scale), None
    if isinstance(delta, Columns):
        return _one_hot(delta.idx, in_f), delta.values.float(), None
    if isinstance(delta, Rows):
        return delta.values.float(), _one_hot(delta.idx, out_f).T.contiguous(), None
    if isinstance(delta, Scale):
        if weights is None:
            raise ConfigError(f"module '{name}': a scale delta's LoRA form needs the base's weights")
        factor = delta.s.float() - 1
        rows = torch.nonzero(factor).flatten()
        if exact_scale_rank(int(rows.numel()), shape) is not None:
            w = weights(name)
            a = w.index_select(0, rows).float() if rows.numel() else torch.zeros(1, in_f)
            b = _one_hot(rows, out_f).T * factor[rows] if rows.numel() else torch.zeros(out_f, 1)
            return a, b.contiguous(), None
        assert approximate is not None, "the assessment asks for --approximate first"
        return _svd(factor[:, None] * weights(name).float(), approximate)
    assert isinstance(delta, Dense) and approximate is not None
    return _svd(delta.delta.float(), approximate)


def engine_tensors(
    patch: Patch,
    base: BaseFacts,
    target: str,
    *,
    weights: Weights | None = None,
    approximate: int | None = None,
) -> tuple[dict[str, torch.Tensor], EngineExport]:
    """The adapter's tensors for `target` (a LoRA engine) and what was decided; ConfigError, with
    the rule and the alternative, when the engine cannot load the patch."""
    if approximate is not None and not 1 <= approximate <= MAX_RANK:
        raise ConfigError(f"--approximate {approximate}: the rank must be between 1 and {MAX_RANK}")
    facts = module_facts(patch)
    verdict = assess(facts, base, target, approximate)
    if verdict.status == "merged":
        alternative = f"; {verdict.note}" if verdict.note else ""
        raise ConfigError(
            f"{ENGINE_TABLE[target].label} cannot load this patch: {verdict.rule}; "
            f"export --format merged instead{alternative}"
        )
    rank = verdict.rank
    assert rank is not None
    tensors: dict[str, torch.Tensor] = {}
    errors: dict[str, float] = {}
    emitted = emitted_modules(facts, base, ENGINE_TABLE[target])
    for name in emitted:
        out_f, in_f = base.shapes[name]
        a_pad, b_pad = torch.zeros(rank, in_f), torch.zeros(out_f, rank)
        if name in patch.deltas:
            a, b, error = lora_form(name, patch.deltas[name], (out_f, in_f), weights, approximate)
            a_pad[: a.shape[0]], b_pad[:, : b.shape[1]] = a, b
            if error is not None:
                errors[name] = error
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a_pad
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b_pad
    return tensors, EngineExport(verdict, emitted, errors)


def engine_config(export: EngineExport, base_name: str, revision: str | None) -> dict[str, Any]:
    """adapter_config.json: everything each engine requires, nothing any of them rejects."""
    rank = export.assessment.rank
    leaves = sorted(
        {m.group(3) for n in export.modules if (m := LAYER_MODULE.match(n))} | ({HEAD} & set(export.modules))
    )
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "revision": revision,
        "r": rank,
        "lora_alpha": rank,
        "rank_pattern": {},
        "alpha_pattern": {},
        "target_modules": leaves,
        "lora_dropout": 0.0,
        "bias": "none",
        "use_dora": False,
        "use_rslora": False,
        "fan_in_fan_out": False,
        "modules_to_save": None,
        "init_lora_weights": True,
        "layers_to_transform": None,
        "layers_pattern": None,
        "inference_mode": True,
    }


def write_engine_adapter(
    patch: Patch,
    directory: Path,
    target: str,
    base: BaseFacts,
    base_name: str,
    revision: str | None = None,
    *,
    weights: Weights | None = None,
    approximate: int | None = None,
) -> tuple[EngineExport, dict[str, torch.Tensor]]:
    """Write the adapter for `target` into `directory` (a staging directory the caller makes appear
    atomically): `adapter_config.json` + `adapter_model.safetensors`. Returns what was decided and
    the tensors written."""
    from safetensors.torch import save_file

    tensors, export = engine_tensors(patch, base, target, weights=weights, approximate=approximate)
    save_file(tensors, str(directory / "adapter_model.safetensors"), metadata={"format": "pt"})
    config = engine_config(export, base_name, revision)
    (directory / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return export, tensors


def approximated_patch(patch: Patch, tensors: dict[str, torch.Tensor], export: EngineExport) -> Patch:
    """`patch` with each approximated module replaced by the low-rank form the export wrote."""
    deltas = dict(patch.deltas)
    for name in export.errors:
        a, b = tensors[f"{PREFIX}{name}.lora_A.weight"], tensors[f"{PREFIX}{name}.lora_B.weight"]
        deltas[name] = LowRank(A=a, B=b, scale=1.0)
    return Patch(patch.method, patch.method_config, deltas)


@torch.inference_mode()
def logit_error(model: Any, tokenizer: Any, exact: Patch, approximate: Patch, texts: list[str]) -> float:
    """‖L_approx − L_exact‖ / ‖L_exact − L_base‖ over the logits of `texts`: how much of the patch's
    effect on the outputs the approximation misses (0 = none, 1 = as much as the whole effect)."""
    from trainer.patch.apply import apply_patch

    device = next(model.parameters()).device
    batches = [tokenizer(t, return_tensors="pt") for t in texts]
    inputs = [{k: b[k].to(device) for k in ("input_ids", "attention_mask")} for b in batches]

    def logits() -> torch.Tensor:
        return torch.cat([model(**batch).logits.flatten() for batch in inputs])

    base = logits().double()
    with apply_patch(model, exact):
        full = logits().double()
    with apply_patch(model, approximate):
        approx = logits().double()
    effect = float(torch.linalg.vector_norm(full - base))
    return float(torch.linalg.vector_norm(approx - full)) / effect if effect > 0 else 0.0


def write_engine_for_base(
    patch: Patch,
    directory: Path,
    target: str,
    base: BaseFacts,
    base_name: str,
    revision: str | None,
    *,
    base_dir: Path | None,
    approximate: int | None = None,
    texts: list[str] | None = None,
) -> dict[str, Any]:
    """`write_engine_adapter` with the base's weights read from `base_dir` when the patch needs
    them (scale deltas, approximations), and an approximation's logit error measured on `texts`
    (default: the no-op check's probe sentences). Returns the export's manifest entry."""
    needs_weights = any(isinstance(d, Scale | Dense) for d in patch.deltas.values())
    if not needs_weights:
        return write_engine_adapter(patch, directory, target, base, base_name, revision)[0].manifest()
    if base_dir is None:
        raise ConfigError(
            f"exporting this patch for {target} reads the base's weights (scale or dense deltas), "
            "and the base's files are not on this machine"
        )
    from trainer.checkpoint_weights import CheckpointWeights

    with CheckpointWeights(base_dir, "the base") as checkpoint:
        export, tensors = write_engine_adapter(
            patch, directory, target, base, base_name, revision,
            weights=lambda name: checkpoint.load(checkpoint.source(name)), approximate=approximate,
        )  # fmt: skip
    manifest = export.manifest()
    if export.errors:
        from trainer.hf import load_causal_lm, load_tokenizer
        from trainer.port.noop import DEFAULT_PROBES

        model = load_causal_lm(base_dir).eval()
        probes = list(texts or DEFAULT_PROBES)
        error = logit_error(
            model, load_tokenizer(base_dir), patch, approximated_patch(patch, tensors, export), probes
        )
        manifest["approximation"]["logit_error"] = error
        manifest["approximation"]["logit_texts"] = len(probes)
    return manifest
