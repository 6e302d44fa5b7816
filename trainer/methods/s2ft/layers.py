"""S²FT's trainable slices as additive deltas on frozen Linears.

Columns (o_proj, down_proj): W[:, idx] += Δ with Δ [out, k]. The weight gradient needs only
x[..., idx], so `SlicedColumns` saves just that slice (k/in of the activation) and produces the
[out, k] gradient for the separate Δ parameter; the input gradient uses the frozen W plus Δ.
Rows (v_proj, up_proj): W[idx, :] += Δ with Δ [k, in]; its gradient needs the whole input, so
rows save the full activation, like any trained Linear.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SlicedColumns(torch.autograd.Function):
    """y = x Wᵀ + b + x[..., idx] Δᵀ, saving x[..., idx] instead of x."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, x, weight, bias, idx, delta):
        xs = x.index_select(-1, idx)
        ctx.save_for_backward(xs, weight, idx, delta)
        ctx.x_dtype = x.dtype
        return F.linear(x, weight, bias) + F.linear(xs, delta.to(xs.dtype))

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):
        xs, weight, idx, delta = ctx.saved_tensors
        grad_x = grad_delta = None
        if ctx.needs_input_grad[0]:
            grad_x = (grad @ weight.to(grad.dtype)).to(ctx.x_dtype)
            grad_x.index_add_(-1, idx, (grad @ delta.to(grad.dtype)).to(ctx.x_dtype))
        if ctx.needs_input_grad[4]:
            flat_g = grad.reshape(-1, grad.shape[-1])
            flat_x = xs.reshape(-1, xs.shape[-1]).to(flat_g.dtype)
            grad_delta = (flat_g.t() @ flat_x).to(delta.dtype)
        return grad_x, None, None, None, grad_delta


class S2ColumnsLinear(nn.Module):
    """A frozen Linear (or Conv1D) whose input columns `idx` train through the fp32 parameter
    `s2ft_delta`, [out, k].

    `sliced=False` uses stock autograd on x[..., idx] @ Δᵀ (also memory-light, one extra small
    matmul); `sliced=True` uses `SlicedColumns`, which needs an nn.Linear weight layout."""

    idx: torch.Tensor  # a buffer: it moves with the module

    def __init__(self, base: nn.Module, idx: torch.Tensor, out_features: int, sliced: bool = True) -> None:
        super().__init__()
        self.base = base
        self.sliced = sliced and isinstance(base, nn.Linear)
        device = _device(base)
        self.register_buffer("idx", idx.to(device=device, dtype=torch.long))
        self.s2ft_delta = nn.Parameter(
            torch.zeros(out_features, len(idx), dtype=torch.float32, device=device)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sliced:
            base: nn.Linear = self.base  # type: ignore[assignment]  # `sliced` is only kept for Linears
            return SlicedColumns.apply(x, base.weight, base.bias, self.idx, self.s2ft_delta)
        xs = x.index_select(-1, self.idx)
        return self.base(x) + F.linear(xs, self.s2ft_delta.to(xs.dtype))


class S2RowsLinear(nn.Module):
    """A frozen Linear (or Conv1D) whose output rows `idx` train through the fp32 parameter
    `s2ft_delta`, [k, in]."""

    idx: torch.Tensor  # a buffer: it moves with the module

    def __init__(self, base: nn.Module, idx: torch.Tensor, in_features: int) -> None:
        super().__init__()
        self.base = base
        device = _device(base)
        self.register_buffer("idx", idx.to(device=device, dtype=torch.long))
        self.s2ft_delta = nn.Parameter(torch.zeros(len(idx), in_features, dtype=torch.float32, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y.index_add(-1, self.idx, F.linear(x, self.s2ft_delta.to(x.dtype)).to(y.dtype))


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class S2ExpertSlices(nn.Module):
    """A parametrization of a 3-D expert parameter [E, out, in]: selected experts get trainable
    columns (`axis` 1) or rows (`axis` 0) added, each an fp32 parameter `s2ft_delta_<e>`.

    Registered with `torch.nn.utils.parametrize`, so the MoE block's own forward (whatever expert
    kernel it uses) sees W + Δ; removing the parametrization gives back the original parameter."""

    def __init__(self, weight: torch.Tensor, axis: int, selected: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.axis = axis
        self.experts = sorted(selected)
        _, out_features, in_features = weight.shape
        for e in self.experts:
            idx = selected[e].to(device=weight.device, dtype=torch.long)
            self.register_buffer(f"idx_{e}", idx)
            shape = (out_features, len(idx)) if axis == 1 else (len(idx), in_features)
            setattr(
                self,
                f"s2ft_delta_{e}",
                nn.Parameter(torch.zeros(shape, dtype=torch.float32, device=weight.device)),
            )

    def idx(self, expert: int) -> torch.Tensor:
        value = getattr(self, f"idx_{expert}")
        assert isinstance(value, torch.Tensor)
        return value

    def delta(self, expert: int) -> nn.Parameter:
        value = getattr(self, f"s2ft_delta_{expert}")
        assert isinstance(value, nn.Parameter)
        return value

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        out = weight.clone()
        for e in self.experts:
            out[e] = weight[e].index_add(self.axis, self.idx(e), self.delta(e).to(weight.dtype))
        return out
