"""Portability statistics: how far each patched module moved between base A and base B, and how
that movement lines up with the patch (DESIGN.md, "Porting", step 2; methods.md §1).

Weights are streamed from the two checkpoints one module at a time (`trainer.checkpoint_weights`:
by runtime name, one open shard per checkpoint), so a 70B pair costs two weight matrices of memory,
not two models; modules are visited in the order base A stores them. Inner products with the
patch delta use its factored form where it has one, so ΔW itself is never built at full size for
lowrank, columns and rows.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from core.arch import WeightSource
from core.errors import ConfigError, IncompatibleModel
from core.fit import module_misfit
from trainer.checkpoint_weights import CheckpointWeights
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows, delta_shapes, max_index

DEFAULT_TAU = 0.1


@dataclass(frozen=True)
class ModuleStats:
    """One patched module. Norms are Frobenius, in fp32."""

    module: str
    kind: str
    shape: tuple[int, int]
    evolution: float  # ‖W_B − W_A‖ / ‖W_A‖
    patch_ratio: float  # ‖ΔW‖ / ‖W_A‖
    alignment: float  # cos(ΔW, W_B − W_A); 0 when either is zero
    overlap: float  # ⟨W_B − W_A, ΔW⟩ / ‖ΔW‖²: how much of the patch the evolution adds (+) or undoes (−)
    survival: float  # exp(−evolution/τ) · exp(−|overlap|), in [0, 1]


@dataclass(frozen=True)
class PortabilityStats:
    """Per-module statistics plus one aggregate `score` in [0, 1]; higher = more likely to survive.

    score = Σ_m n_m · exp(−evolution_m/τ) · exp(−|overlap_m|) / Σ_m n_m, with n_m the number of
    weights of module m. Why: evolution orthogonal to the patch only moves the point the patch was
    learned at (penalised relative to the weight, on scale τ), while evolution along the patch's own
    direction re-applies or cancels the patch itself (penalised in units of the patch size, either
    sign). τ = 0.1 is a heuristic, not a calibration: 10 % relative drift scores e^-1.
    """

    modules: list[ModuleStats]
    score: float
    tau: float

    @property
    def max_evolution(self) -> float:
        return max((m.evolution for m in self.modules), default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "tau": self.tau,
            "max_evolution": self.max_evolution,
            "modules": [{**asdict(m), "shape": list(m.shape)} for m in self.modules],
        }


def _check_shapes(module: str, delta: Delta, shape_a: tuple[int, int], shape_b: tuple[int, int]) -> None:
    """The delta fits its own base A, and B has the very same weight shape (`core.fit`'s rule)."""
    shapes, top = delta_shapes(delta), max_index(delta)
    misfit = module_misfit(module, delta.kind, shapes, shape_a, target="base A", max_index=top) or (
        module_misfit(
            module, delta.kind, shapes, shape_b, target="base B", max_index=top, expected_weight=shape_a
        )
    )
    if misfit is not None:
        raise IncompatibleModel(misfit.message)


def _dot_and_norm2(delta: Delta, w_a: torch.Tensor, evo: torch.Tensor) -> tuple[float, float]:
    """(⟨evo, ΔW⟩, ‖ΔW‖²) in fp64 scalars, from the delta's factored form where it has one.

    A scale delta's ΔW is (s − 1)·W_A row-wise: the change it made on its own base A (on B it would
    scale W_B instead, which is part of what the evolution statistics are about).
    """
    if isinstance(delta, LowRank):
        a, b = delta.A.to(torch.float32), delta.B.to(torch.float32)
        dot = delta.scale * float(((b.T @ evo) * a).sum())  # ⟨E, sBA⟩ = s·Σ (BᵀE) ⊙ A
        norm2 = delta.scale**2 * float(((b.T @ b) * (a @ a.T)).sum())  # ‖BA‖² = tr(BᵀB·AAᵀ)
        return dot, max(norm2, 0.0)
    if isinstance(delta, Columns | Rows):
        axis = 1 if isinstance(delta, Columns) else 0
        values = delta.values.to(torch.float32)
        picked = evo.index_select(axis, delta.idx.to(torch.int64))
        return float((picked * values).sum()), float(values.square().sum())
    if isinstance(delta, Dense):
        d = delta.delta.to(torch.float32)
        return float((evo * d).sum()), float(d.square().sum())
    row = delta.s.to(torch.float32) - 1.0  # Scale
    dot = float((row * torch.einsum("ij,ij->i", w_a, evo)).sum())
    norm2 = float((row.square() * w_a.square().sum(dim=1)).sum())
    return dot, norm2


def _module_stats(module: str, delta: Delta, w_a: torch.Tensor, evo: torch.Tensor, tau: float) -> ModuleStats:
    norm_a = float(torch.linalg.vector_norm(w_a))
    norm_e = float(torch.linalg.vector_norm(evo))
    dot, norm_d2 = _dot_and_norm2(delta, w_a, evo)
    norm_d = math.sqrt(norm_d2)
    alignment = dot / (norm_d * norm_e) if norm_d > 0 and norm_e > 0 else 0.0
    alignment = max(-1.0, min(1.0, alignment))
    overlap = dot / norm_d2 if norm_d2 > 0 else 0.0
    evolution = norm_e / norm_a if norm_a > 0 else (0.0 if norm_e == 0 else math.inf)
    patch_ratio = norm_d / norm_a if norm_a > 0 else (0.0 if norm_d == 0 else math.inf)
    survival = math.exp(-evolution / tau) * math.exp(-abs(overlap))
    return ModuleStats(
        module=module,
        kind=delta.kind,
        shape=(int(w_a.shape[0]), int(w_a.shape[1])),
        evolution=evolution,
        patch_ratio=patch_ratio,
        alignment=alignment,
        overlap=overlap,
        survival=survival,
    )


def portability_stats(
    patch: Patch, base_a_dir: Path | str, base_b_dir: Path | str, *, tau: float = DEFAULT_TAU
) -> PortabilityStats:
    """Statistics for porting `patch` from the checkpoint in `base_a_dir` to the one in `base_b_dir`.

    Every module is checked (present in both, same shape, fits the patch) from the headers before
    any tensor is read, so an incompatible pair fails fast with IncompatibleModel naming the module.
    Then each module reads exactly its two weights, which are dropped before the next module.
    """
    if not tau > 0:
        raise ConfigError(f"tau must be > 0, got {tau}")
    if not patch.deltas:
        raise ConfigError("patch has no modules")
    with CheckpointWeights(base_a_dir, "A") as ckpt_a, CheckpointWeights(base_b_dir, "B") as ckpt_b:
        sources: dict[str, tuple[WeightSource, WeightSource]] = {}
        for module, delta in sorted(patch.deltas.items()):
            source_a, source_b = ckpt_a.source(module), ckpt_b.source(module)
            _check_shapes(module, delta, source_a.shape, source_b.shape)
            sources[module] = (source_a, source_b)
        results: list[ModuleStats] = []
        with torch.no_grad():
            for module in sorted(sources, key=lambda m: ckpt_a.position(sources[m][0])):
                source_a, source_b = sources[module]
                w_a = ckpt_a.load(source_a)
                evo = ckpt_b.load(source_b).sub_(w_a)  # W_B − W_A in W_B's own copy: two tensors held
                results.append(_module_stats(module, patch.deltas[module], w_a, evo, tau))
                del w_a, evo
        results.sort(key=lambda m: m.module)
    sizes = [m.shape[0] * m.shape[1] for m in results]
    score = sum(n * m.survival for n, m in zip(sizes, results, strict=True)) / sum(sizes)
    return PortabilityStats(modules=results, score=score, tau=tau)
