"""The no-op check (DESIGN.md, "Porting", step 4): a patch must change the model's outputs.

A ported patch can silently do nothing: its module names may not exist in the new base (a renamed
architecture), or its deltas may be zero (a broken export, a failed training run). Evaluation alone
would then report "B + patch == B" as a tie, so the check compares the log-probabilities the model
gives the same tokens with and without the patch, and says why when nothing changes. Missing modules
are reported, not raised, for that reason.

In a port or evaluate job the check costs no forward pass of its own: it compares the scored tokens
of the eval arms the job already runs, "base alone" against "base + patch" (`trainer.measure`).
`patch_effect` runs the same comparison on probe prompts, for use outside a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError
from trainer.patch.apply import apply_patch
from trainer.patch.targets import all_targets
from trainer.patch.types import Columns, Delta, Dense, LowRank, Patch, Rows

DEFAULT_TOL = 1e-4
DEFAULT_PROBES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "The patient reported a mild fever and a dry cough for three days.",
    "This agreement terminates on the last day of the month unless renewed in writing.",
    "To reset your password, open the settings page and choose a new one.",
)
ZERO_DELTA = "zero delta"


@dataclass(frozen=True)
class NoOpCheck:
    """Largest and mean absolute change of the compared outputs (in a job: the log-probabilities of
    the eval rows' scored tokens; in `patch_effect`: probe logits) over `num_probes` rows, plus why a
    patch is a no-op when that is known without measuring (`reason`: "zero delta" or "missing
    modules: ...")."""

    max_abs_change: float
    mean_abs_change: float
    num_probes: int
    missing_modules: tuple[str, ...] = ()
    zero_modules: tuple[str, ...] = ()
    reason: str | None = None

    def changes_output(self, tol: float = DEFAULT_TOL) -> bool:
        return self.reason is None and self.max_abs_change > tol

    def no_op_reason(self, tol: float = DEFAULT_TOL) -> str | None:
        """Why the patch does not change the output at this tolerance; None when it does."""
        if self.reason is not None:
            return self.reason
        if self.max_abs_change <= tol:
            return f"max output change {self.max_abs_change:.3g} <= tolerance {tol:g}"
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NoOpCheck:
        """The inverse of `to_dict` (measurements travel as JSON-ready dicts)."""
        return cls(
            max_abs_change=float(data["max_abs_change"]),
            mean_abs_change=float(data["mean_abs_change"]),
            num_probes=int(data["num_probes"]),
            missing_modules=tuple(data.get("missing_modules") or ()),
            zero_modules=tuple(data.get("zero_modules") or ()),
            reason=data.get("reason"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs_change": self.max_abs_change,
            "mean_abs_change": self.mean_abs_change,
            "num_probes": self.num_probes,
            "missing_modules": list(self.missing_modules),
            "zero_modules": list(self.zero_modules),
            "reason": self.reason,
        }


def is_zero_delta(delta: Delta) -> bool:
    """True when the delta leaves any weight unchanged (a scale of all ones counts as zero)."""
    if isinstance(delta, LowRank):
        return delta.scale == 0 or not bool((delta.B.float() @ delta.A.float()).any())
    if isinstance(delta, Columns | Rows):
        return not bool(delta.values.any())
    if isinstance(delta, Dense):
        return not bool(delta.delta.any())
    return bool((delta.s == 1).all())


@dataclass(frozen=True)
class Screened:
    """What of a patch can change `model` at all, found without a forward pass."""

    live: Patch  # the deltas on modules the model has, that are not zero
    missing: tuple[str, ...]
    zero: tuple[str, ...]
    probes: int

    @property
    def reason(self) -> str | None:
        """Why the patch cannot change the output, when that is known without measuring."""
        if self.live.deltas:
            return None
        parts = ([ZERO_DELTA] if self.zero else []) + (
            [f"missing modules: {', '.join(self.missing)}"] if self.missing else []
        )
        return "; ".join(parts)

    def unmeasured(self) -> NoOpCheck:
        """The result when `reason` already says the patch is a no-op."""
        return NoOpCheck(0.0, 0.0, self.probes, self.missing, self.zero, self.reason)

    def compare(self, before: Sequence[torch.Tensor], after: Sequence[torch.Tensor]) -> NoOpCheck:
        """The check from per-row log-probabilities (or logits) of the same tokens without and
        with the patch."""
        pairs = zip(after, before, strict=True)
        diffs = torch.cat([(a.float() - b.float()).abs().flatten() for a, b in pairs])
        if diffs.numel() == 0:
            raise ConfigError("the no-op check needs at least one scored token")
        return NoOpCheck(
            max_abs_change=float(diffs.max()),
            mean_abs_change=float(diffs.mean()),
            num_probes=len(before),
            missing_modules=self.missing,
            zero_modules=self.zero,
        )


def screen(model: nn.Module, patch: Patch, probes: int) -> Screened:
    """Split `patch` into what can change `model` and what cannot (missing modules, zero deltas).

    A shape mismatch on a module that exists is not screened out: applying the patch raises
    IncompatibleModel, because that is a wrong pairing rather than a silent no-op."""
    targets = all_targets(model)
    missing = tuple(m for m in patch.modules if m not in targets)
    present = {m: d for m, d in patch.deltas.items() if m not in missing}
    zero = tuple(m for m in sorted(present) if is_zero_delta(present[m]))
    live = Patch(patch.method, patch.method_config, {m: d for m, d in present.items() if m not in zero})
    return Screened(live, missing, zero, probes)


def _probe_logits(model: nn.Module, encoded: list[dict[str, torch.Tensor]]) -> list[torch.Tensor]:
    return [model(**batch).logits.float() for batch in encoded]


@torch.no_grad()
def patch_effect(
    model: nn.Module, tokenizer: Any, patch: Patch, probes: Sequence[str] | None = None
) -> NoOpCheck:
    """Run `probes` (default: a few fixed English sentences) through `model` without and with `patch`
    and compare their logits.

    The patch is applied and reverted in place (exact restore), and the model's train/eval mode is
    restored too, so `model` is left as it was.
    """
    probes = list(DEFAULT_PROBES if probes is None else probes)
    if not probes or not all(isinstance(p, str) and p for p in probes):
        raise ConfigError("probes must be a non-empty list of non-empty strings")
    screened = screen(model, patch, len(probes))
    if screened.reason is not None:
        return screened.unmeasured()
    device = next(model.parameters()).device
    encoded = [
        {
            k: v.to(device)
            for k, v in tokenizer(p, return_tensors="pt").items()
            if k in ("input_ids", "attention_mask")
        }
        for p in probes
    ]
    was_training = model.training
    model.eval()
    try:
        before = _probe_logits(model, encoded)
        with apply_patch(model, screened.live):
            after = _probe_logits(model, encoded)
    finally:
        model.train(was_training)
    return screened.compare(before, after)
