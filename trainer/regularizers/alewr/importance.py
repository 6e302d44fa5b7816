"""Element-wise importance Ω of a base's target weights for general ability.

Computed once per (base, general dataset) by full fine-tuning the target modules on the general
rows while accumulating the synaptic-intelligence path integral ω_i += −g_i·Δθ_i (g the post-clip
gradient, Δθ the real post-optimizer step, both in fp32). Then Ω = max(ω, 0) / (Δ_i² + ξ), with Δ
the total movement, normalised per tensor to mean 1 so no tensor dominates by scale.

The file covers `<module>.weight` of every target module, shaped like the weight ([out, in]):
a whole-weight view (`full`) uses it whole, a sliced view (`s2ft`) gathers its columns/rows. The
anchor θ* is the base weight itself (domain training starts from the base), so the file is
reusable for any domain on that base.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from core.errors import ConfigError, IncompatibleModel

if TYPE_CHECKING:
    from trainer.resident import ResidentModels

FILE_KIND = "patchreg.alewr_importance"


class PathIntegral:
    """StepObserver accumulating ω in fp32 from the post-clip gradient and the actual step."""

    def __init__(self, params: dict[str, nn.Parameter]) -> None:
        self.start = {n: p.detach().float().clone() for n, p in params.items()}
        self.omega = {n: torch.zeros_like(s) for n, s in self.start.items()}
        self._prev: dict[str, torch.Tensor] = {}
        self._grad: dict[str, torch.Tensor] = {}

    def before_step(self, params: dict[str, nn.Parameter]) -> None:
        for n, p in params.items():
            self._prev[n] = p.detach().float().clone()
            self._grad[n] = (
                p.grad.detach().float().clone() if p.grad is not None else torch.zeros_like(self._prev[n])
            )

    def after_step(self, params: dict[str, nn.Parameter]) -> None:
        for n, p in params.items():
            self.omega[n] -= self._grad[n] * (p.detach().float() - self._prev[n])

    def importance(self, params: dict[str, nn.Parameter], xi: float) -> dict[str, torch.Tensor]:
        out = {}
        for n, p in params.items():
            moved = p.detach().float() - self.start[n]
            omega = self.omega[n].clamp_min(0) / (moved.square() + xi)
            mean = omega.mean()
            out[n] = (omega / mean if mean > 0 else omega).cpu().contiguous()
        return out


def compute_importance(
    model_dir: Path | str,
    general_rows: Sequence[Any],
    *,
    out_path: Path | str,
    target_modules: Sequence[str] | None = None,
    steps: int = 50,
    lr: float = 1e-4,
    xi: float = 1e-3,
    batch_size: int = 4,
    max_length: int = 256,
    seed: int = 0,
    device: str = "auto",
    models: ResidentModels | None = None,
) -> Path:
    """Measure Ω on `general_rows` for the base in `model_dir`; write it to `out_path` (safetensors).

    With `models` (a worker's resident bases) the fp32 base is borrowed and restored bit for bit."""
    from safetensors.torch import save_file

    from trainer.data import as_rows, encode_rows, pad_token_id
    from trainer.hf import load_causal_lm, load_tokenizer
    from trainer.loop import TrainArgs, optimize
    from trainer.methods.full import FullConfig, FullMethod

    if not xi > 0:
        raise ConfigError(f"xi={xi} must be > 0")
    args = TrainArgs(
        lr=lr, steps=steps, batch_size=batch_size, max_length=max_length, seed=seed, device=device
    )
    config = FullConfig(target_modules=tuple(target_modules) if target_modules else None)
    with contextlib.ExitStack() as stack:
        if models is not None:
            model, tokenizer = stack.enter_context(models.borrow(model_dir, torch.float32, alone=True))
        else:
            model, tokenizer = load_causal_lm(model_dir, dtype=torch.float32), load_tokenizer(model_dir)
        model.to(args.resolved_device())
        examples = encode_rows(tokenizer, as_rows(general_rows, "general rows"), max_length)
        torch.manual_seed(seed)
        method, was_training = FullMethod(), model.training
        prepared = method.prepare(model, config)
        try:
            tracker = PathIntegral(prepared.params)
            optimize(
                prepared.model,
                prepared.params,
                examples,
                args,
                lr=lr,
                pad_id=pad_token_id(tokenizer),
                observer=tracker,
            )
            omega = tracker.importance(prepared.params, xi)
        finally:  # the base comes back bit for bit: a resident model serves the next job
            method.cleanup(prepared)
            model.train(was_training)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "kind": FILE_KIND,
        "xi": repr(xi),
        "steps": str(steps),
        "lr": repr(lr),
        "rows": str(len(examples)),
        "model_type": str(getattr(model.config, "model_type", "")),
        "modules": json.dumps(sorted(n.removesuffix(".weight") for n in omega)),
    }
    save_file(omega, str(out_path), metadata=meta)
    return out_path


def load_importance(path: Path | str, model: nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Read an importance file; with `model`, check every tensor matches a weight of the same shape."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"importance file not found: {path}")
    with safe_open(str(path), framework="pt") as handle:
        if (handle.metadata() or {}).get("kind") != FILE_KIND:
            raise ConfigError(f"{path} is not an ALEWR importance file")
    omega = load_file(str(path))
    if model is not None:
        weights = {n: p.shape for n, p in model.named_parameters()}
        for name, tensor in omega.items():
            if weights.get(name) != tensor.shape:
                raise IncompatibleModel(
                    f"importance entry {name} {tuple(tensor.shape)} matches no weight of the model"
                )
    return omega
