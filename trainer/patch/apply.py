"""Apply a patch to a loaded model in place and revert it exactly (merging into a checkpoint is
`trainer.patch.merge`).

Revert restores saved copies of what was touched instead of subtracting the delta: in bf16,
(W + D) - D != W, and a registry that hot-swaps patches must get the base back bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.errors import IncompatibleModel
from core.fit import module_misfit
from trainer.patch.targets import Target, all_targets
from trainer.patch.tying import Untied, shared_weights, untie
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows, delta_shapes, max_index


def check_compatible(model: nn.Module, patch: Patch) -> dict[str, Target]:
    """Map each patched name to its target weight, or raise IncompatibleModel naming the first
    mismatch (module, expected, found). Works on meta-device models too: only shapes are read."""
    targets = all_targets(model)
    modules = dict(model.named_modules())
    found: dict[str, Target] = {}
    for name, delta in sorted(patch.deltas.items()):
        hit = targets.get(name)
        if hit is None and name in modules:
            what = type(modules[name]).__name__
            raise IncompatibleModel(
                f"module {name}: patch ({delta.kind}) needs a Linear, Conv1D or expert weight, "
                f"the model has {what}"
            )
        misfit = module_misfit(
            name,
            delta.kind,
            delta_shapes(delta),
            hit.shape if hit is not None else None,
            target="the model",
            max_index=max_index(delta),
        )
        if misfit is not None:
            raise IncompatibleModel(misfit.message)
        assert hit is not None
        found[name] = hit
    return found


@dataclass
class _Saved:
    """What one weight looked like before the patch: the whole [out, in] view, or the touched slice."""

    target: Target
    weight: torch.Tensor
    idx: torch.Tensor | None = None  # set for columns/rows: `weight` holds only those slices
    axis: int = 0  # 1 for columns, 0 for rows
    bias: torch.Tensor | None = None  # set for scale when the layer has a bias

    def restore(self) -> None:
        w = self.target.weight
        if self.idx is None:
            w.copy_(self.weight)
        else:
            w.index_copy_(self.axis, self.idx, self.weight)
        if self.bias is not None:
            bias = self.target.bias
            assert bias is not None
            bias.copy_(self.bias)


class AppliedPatch:
    """Handle returned by `apply_patch`; `revert()` (or leaving a `with` block) undoes it exactly.

    `untied` names the patched modules whose weight was tied to another module's (a tied
    `lm_head`): they got a private copy, and `revert()` ties them back to the shared weight."""

    def __init__(self, saved: list[_Saved], untied: dict[str, Untied] | None = None) -> None:
        self._saved = saved
        self._untied = dict(untied or {})

    @property
    def active(self) -> bool:
        return bool(self._saved)

    @property
    def untied(self) -> list[str]:
        return sorted(self._untied)

    @torch.no_grad()
    def revert(self) -> None:
        """Restore every touched weight bit for bit, and every tie; a second call does nothing."""
        for item in reversed(self._saved):
            item.restore()
        for tie in self._untied.values():
            tie.retie()
        self._saved, self._untied = [], {}

    def __enter__(self) -> AppliedPatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revert()


def _apply_one(target: Target, delta: Delta) -> _Saved:
    """Add one delta: arithmetic in fp32, result cast back to the weight's dtype."""
    w = target.weight
    dev, dtype = w.device, w.dtype
    if isinstance(delta, Columns | Rows):
        axis = 1 if isinstance(delta, Columns) else 0
        idx = delta.idx.to(device=dev, dtype=torch.int64)
        original = w.index_select(axis, idx)
        updated = original.float() + delta.values.to(device=dev, dtype=torch.float32)
        w.index_copy_(axis, idx, updated.to(dtype))
        return _Saved(target, original, idx=idx, axis=axis)
    saved = _Saved(target, w.detach().clone())
    if isinstance(delta, LowRank):
        a = delta.A.to(device=dev, dtype=torch.float32)
        b = delta.B.to(device=dev, dtype=torch.float32)
        update = b @ a  # scale·(B·A) + W, in place on one temporary: the same bits as W + scale·(B·A)
        w.copy_(update.mul_(delta.scale).add_(w.float()).to(dtype))
    elif isinstance(delta, Dense):
        w.copy_((w.float() + delta.delta.to(device=dev, dtype=torch.float32)).to(dtype))
    else:
        s = delta.s.to(device=dev, dtype=torch.float32)
        w.copy_((s[:, None] * w.float()).to(dtype))
        if (bias := target.bias) is not None:
            saved.bias = bias.detach().clone()
            bias.copy_((s * bias.float()).to(bias.dtype))
    return saved


@torch.no_grad()
def apply_patch(model: nn.Module, patch: Patch) -> AppliedPatch:
    """Add `patch` to `model`'s weights (Linear, Conv1D, expert slices) in place; return a handle
    that can revert it.

    Compatibility is checked for every module before any weight changes, so a mismatch leaves the
    model untouched. A patched module whose weight is tied to another's (a tied `lm_head`) gets a
    private copy first, so only it changes: the input embeddings stay as they are, as in PEFT.
    """
    targets = check_compatible(model, patch)
    shared = shared_weights(model)
    saved: list[_Saved] = []
    untied: dict[str, Untied] = {}
    try:
        for name, delta in sorted(patch.deltas.items()):
            hit = targets[name]
            if hit.is_module and (tie := untie(model, hit.module, shared)) is not None:
                untied[name] = tie
            saved.append(_apply_one(hit, delta))
    except BaseException:
        AppliedPatch(saved, untied).revert()
        raise
    return AppliedPatch(saved, untied)
