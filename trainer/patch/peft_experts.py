"""PEFT's form of the targets that are no plain module: Conv1D weights and MoE expert parameters.

Which patch names are which is read from the architecture catalog (`core.arch`), by name alone, so
an export needs no model: `transformer.h.N.attn.c_attn` is a GPT-2 Conv1D, and
`model.layers.N.mlp.experts.gate_up_proj.3` is expert 3 of a transformers-5 3-D expert parameter.

Conv1D: PEFT's LoRA and IA3 layers keep [out, in] factors for Conv1D too (lora_A [r, in], lora_B
[out, r], ia3_l [out, 1]); `fan_in_fan_out` only tells PEFT how to merge, so it is true when the
adapter targets a Conv1D, and an adapter saved either way imports the same.

Experts: PEFT adapts a 3-D parameter [experts, out, in] as a whole (`target_parameters`, one
`ParamWrapper` per parameter): lora_A is [experts·r, in] expert-major, lora_B [out, r·experts]
expert-minor, one rank and one scale for all experts. Several parameters of one module nest: the
parameter PEFT wraps last (the module's registration order, which the catalog lists in) is the
outermost wrapper at `<module>`, the one before it `<module>.base_layer`, and so on, and the saved
tensor names follow that nesting.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import torch

from core.arch.catalog import ARCHITECTURES
from core.arch.spec import CONV1D, EXPERTS
from core.errors import ConfigError, MalformedFile
from trainer.patch.types import LowRank

BASE_LAYER = ".base_layer"


def _catalog(storage: str) -> list[tuple[re.Pattern[str], str]]:
    """(regex of a full runtime name, layer-relative path) of every catalog projection of `storage`."""
    return [
        (re.compile(re.escape(a.layers) + r"\.\d+\." + re.escape(p.path)), p.path)
        for a in ARCHITECTURES
        for p in a.projections
        if p.storage == storage
    ]


_CONV1D = _catalog(CONV1D)
_EXPERTS = _catalog(EXPERTS)
EXPERT_LEAVES = tuple(dict.fromkeys(path.rsplit(".", 1)[-1] for _, path in _EXPERTS))
_SLICE = re.compile(r"(.+)\.(\d+)")


def is_conv1d(name: str) -> bool:
    """Whether `name` is a Conv1D weight of a catalog architecture (GPT-2's c_attn, c_proj, c_fc)."""
    return any(rx.fullmatch(name) for rx, _ in _CONV1D)


def is_expert_param(name: str) -> bool:
    """Whether `name` is a 3-D expert parameter of a catalog architecture."""
    return any(rx.fullmatch(name) for rx, _ in _EXPERTS)


def expert_slice(name: str) -> tuple[str, int] | None:
    """(parameter, expert) for a patch name `<parameter>.<e>` of an expert parameter, else None."""
    match = _SLICE.fullmatch(name)
    if match is None or not is_expert_param(match.group(1)):
        return None
    return match.group(1), int(match.group(2))


def param_order(module: str) -> list[str]:
    """The expert parameter leaves of `module` in registration order (the order PEFT wraps them)."""
    return list(
        dict.fromkeys(
            path.rsplit(".", 1)[-1]
            for rx, path in _EXPERTS
            if rx.fullmatch(f"{module}.{path.rsplit('.', 1)[-1]}")
        )
    )


def wrapper_paths(params: Iterable[str]) -> dict[str, str]:
    """{parameter: the module path of its PEFT ParamWrapper} when PEFT adapts exactly `params`: the
    last-wrapped parameter of a module sits at the module, earlier ones one `.base_layer` deeper each."""
    by_module: dict[str, list[str]] = {}
    for param in params:
        module, _, leaf = param.rpartition(".")
        by_module.setdefault(module, []).append(leaf)
    paths = {}
    for module, leaves in by_module.items():
        order = [leaf for leaf in param_order(module) if leaf in leaves]
        for depth, leaf in enumerate(reversed(order)):
            paths[f"{module}.{leaf}"] = module + BASE_LAYER * depth
    return paths


@dataclass
class Packed:
    """One PEFT ParamWrapper adapter: every expert's pair at one rank and one scale."""

    A: torch.Tensor  # [experts·rank, in], expert-major
    B: torch.Tensor  # [out, rank·experts], expert-minor
    rank: int
    scale: float


def expert_counts(shapes: Mapping[str, tuple[int, int]] | None) -> dict[str, int]:
    """{expert parameter: how many experts} among a base's target shapes (`<param>.<e>` names)."""
    counts: Counter[str] = Counter()
    for name in shapes or {}:
        if (where := expert_slice(name)) is not None:
            counts[where[0]] += 1
    return dict(counts)


def expert_count(param: str, experts: Iterable[int], counts: Mapping[str, int]) -> int:
    """How many experts `param` has: from the base (`expert_counts`) when known, else the patch's."""
    indices = list(experts)
    count = counts.get(param) or max(indices) + 1
    beyond = [e for e in indices if e >= count]
    if beyond:
        raise ConfigError(f"module '{param}.{beyond[0]}': the base's {param} has {count} experts")
    return count


def common_setting(pairs: Iterable[tuple[torch.Tensor, torch.Tensor, float]]) -> tuple[int, float]:
    """(rank, scale) that all expert adapters share: the largest rank and the most common scale.

    One setting for every expert parameter keeps them out of rank_pattern/alpha_pattern, which PEFT
    applies to parameters but, checking only module names, warns it ignored."""
    listed = list(pairs)
    rank = max(int(a.shape[0]) for a, _, _ in listed)
    return rank, Counter(s for _, _, s in listed).most_common(1)[0][0]


def pack(
    param: str,
    pairs: Mapping[int, tuple[torch.Tensor, torch.Tensor, float]],
    count: int,
    rank: int,
    scale: float,
) -> Packed:
    """PEFT's packed factors from per-expert (A [r, in], B [out, r], scale): ranks padded with zeros
    to `rank`, experts missing from `pairs` all zeros, a scale other than `scale` folded into B."""
    first_a, first_b, _ = next(iter(pairs.values()))
    in_f, out_f = int(first_a.shape[1]), int(first_b.shape[0])
    for e, (a, b, _) in sorted(pairs.items()):
        if (int(a.shape[1]), int(b.shape[0])) != (in_f, out_f):
            raise ConfigError(
                f"module '{param}.{e}': [{b.shape[0]}, {a.shape[1]}] differs from the other experts' "
                f"[{out_f}, {in_f}]"
            )
    dtypes = {t.dtype for a, b, _ in pairs.values() for t in (a, b)}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    a3 = torch.zeros(count, rank, in_f, dtype=dtype)
    b3 = torch.zeros(out_f, rank, count, dtype=dtype)
    for e, (a, b, s) in pairs.items():
        r = int(a.shape[0])
        a3[e, :r] = a.to(dtype)
        b3[:, :r, e] = b.to(dtype) if s == scale else (b.float() * (s / scale)).to(dtype)
    return Packed(a3.reshape(count * rank, in_f), b3.reshape(out_f, rank * count), rank, scale)


def unpack(param: str, a: torch.Tensor, b: torch.Tensor, rank: int, scale: float) -> dict[str, LowRank]:
    """Per-expert LowRank deltas `<param>.<e>` from PEFT's packed factors; rank components that
    are zero on either side are dropped, and so are experts left with none (they change nothing)."""
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] % rank or b.shape[1] != a.shape[0]:
        raise MalformedFile(
            f"parameter '{param}': lora_A {list(a.shape)} and lora_B {list(b.shape)} are not "
            f"[experts·r, in] and [out, r·experts] with r={rank}"
        )
    count = a.shape[0] // rank
    a3 = a.reshape(count, rank, a.shape[1])
    b3 = b.reshape(b.shape[0], rank, count)
    deltas = {}
    for e in range(count):
        a_e, b_e = a3[e], b3[:, :, e]
        keep = (a_e != 0).any(dim=1) & (b_e != 0).any(dim=0)
        if bool(keep.any()):
            deltas[f"{param}.{e}"] = LowRank(A=a_e[keep].clone(), B=b_e[:, keep].clone(), scale=scale)
    return deltas


def check_target_parameters(entries: Sequence[str]) -> None:
    """ConfigError for a `target_parameters` entry that names no catalog expert parameter."""
    for entry in entries:
        if entry.rpartition(".")[2] not in EXPERT_LEAVES:
            raise ConfigError(
                f"PEFT LORA adapter with target_parameters entry {entry!r}: patchreg imports "
                f"target_parameters only for MoE expert parameters ({', '.join(EXPERT_LEAVES)}); "
                "adapt other weights with target_modules"
            )


def adapted_param(name: str, entries: Sequence[str]) -> str | None:
    """The expert parameter a saved adapter module name (`<module>`, `<module>.base_layer`, ...)
    adapts, given the config's `target_parameters`; None for a plain module adapter."""
    module, depth = name, 0
    while module.endswith(BASE_LAYER):
        module, depth = module.removesuffix(BASE_LAYER), depth + 1
    targeted = set()
    for entry in entries:
        key = f"{module}.{entry.rpartition('.')[2]}"
        if key == entry or key.endswith("." + entry):
            targeted.add(entry.rpartition(".")[2])
    order = [leaf for leaf in param_order(module) if leaf in targeted]
    if not order:
        if depth:
            raise MalformedFile(f"unexpected adapter module '{name}' (no target_parameters entry adapts it)")
        return None
    if depth >= len(order):
        raise MalformedFile(
            f"unexpected adapter module '{name}': target_parameters adapt {len(order)} "
            f"parameter(s) of {module}"
        )
    return f"{module}.{order[len(order) - 1 - depth]}"
