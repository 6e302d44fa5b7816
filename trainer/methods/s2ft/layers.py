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
    """A frozen Linear whose input columns `idx` train through the fp32 parameter `s2ft_delta`.

    `sliced=False` uses stock autograd on x[..., idx] @ Δᵀ (also memory-light, one extra small
    matmul); `sliced=True` uses `SlicedColumns`."""

    idx: torch.Tensor  # a buffer: it moves with the module

    def __init__(self, base: nn.Linear, idx: torch.Tensor, sliced: bool = True) -> None:
        super().__init__()
        self.base = base
        self.sliced = sliced
        self.register_buffer("idx", idx.to(device=base.weight.device, dtype=torch.long))
        self.s2ft_delta = nn.Parameter(
            torch.zeros(base.out_features, len(idx), dtype=torch.float32, device=base.weight.device)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sliced:
            return SlicedColumns.apply(x, self.base.weight, self.base.bias, self.idx, self.s2ft_delta)
        xs = x.index_select(-1, self.idx)
        return self.base(x) + F.linear(xs, self.s2ft_delta.to(xs.dtype))


class S2RowsLinear(nn.Module):
    """A frozen Linear whose output rows `idx` train through the fp32 parameter `s2ft_delta`."""

    idx: torch.Tensor  # a buffer: it moves with the module

    def __init__(self, base: nn.Linear, idx: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("idx", idx.to(device=base.weight.device, dtype=torch.long))
        self.s2ft_delta = nn.Parameter(
            torch.zeros(len(idx), base.in_features, dtype=torch.float32, device=base.weight.device)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        return y.index_add(-1, self.idx, F.linear(x, self.s2ft_delta.to(x.dtype)).to(y.dtype))
