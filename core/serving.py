"""What each serving engine loads, and what a patch becomes for it: torch-free rules, one per engine.

PEFT reads all of `adapter_config.json`; serving engines read far less (as read in their sources;
notes with quoted lines in docs/serving.md):

- vLLM (`vllm/lora/peft_helper.py`, `vllm/config/lora.py`, `vllm/lora/lora_model.py`): per-module
  alpha/r only from 0.32 (older releases drop `rank_pattern`/`alpha_pattern`); the server's
  `--max-lora-rank` is one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (default 16); DoRA, bias and
  `modules_to_save` are errors; a module path that does not match the model is silently unused.
- SGLang (`python/sglang/srt/lora/lora.py`, `mem_pool.py`, `utils.py`): one global alpha/r; every
  module's rank must equal `r`; q/k/v and gate/up are packed per layer, and `q_proj` needs `v_proj`.
- LoRAX and TGI (`server/lorax_server/adapters/lora.py`, TGI's copy in
  `server/text_generation_server/adapters/lora.py`): one global alpha/r; a module type missing from
  any layer is dropped for every layer; ranks are padded to 8 or a multiple of 16, and padding
  rewrites `r` for the module types after it (wrong scale); TGI does not load `lm_head`.
- llama.cpp (`convert_lora_to_gguf.py`, `src/llama-adapter.cpp`): one global alpha, the rank taken
  from each tensor's shape; `lm_head` is refused on a base with tied embeddings.

So every LoRA engine gets one form that is exact in all of them: one rank R for every module of
every layer (zero-padded, which changes nothing), `r = lora_alpha = R` with each module's scale
folded into B, no patterns, HF per-projection names, and zeros wherever the patch has nothing.
"""

from __future__ import annotations

import re
import sys
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from core.errors import InvalidInput
from core.safetensors_header import TensorInfo

Target = Literal["peft", "vllm", "sglang", "lorax", "tgi", "llama.cpp"]
TARGETS: tuple[str, ...] = get_args(Target)
ENGINES: tuple[str, ...] = TARGETS[1:]
# The per-projection modules of a decoder layer every engine knows by these names.
LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LAYER_MODULE = re.compile(r"^model\.layers\.(\d+)\.(self_attn|mlp)\.(\w+)$")
HEAD = "lm_head"
MAX_RANK = 512  # vLLM's largest --max-lora-rank; beyond it a LoRA outgrows what it adapts
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_CAP = 16
MERGED = "--format merged"

Status = Literal["exact", "padded", "approximate", "merged"]


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise InvalidInput(f"unknown export target {target!r}: expected one of {', '.join(TARGETS)}")
    return target


def _vllm_rank(needed: int) -> int:
    return next((r for r in VLLM_RANKS if r >= needed), needed)


def _lorax_rank(needed: int) -> int:
    """A rank LoRAX/TGI leave alone (on one GPU): 8, or a multiple of 16 (`pad_to_min_rank`)."""
    return 8 if needed <= 8 else -(-needed // 16) * 16


@dataclass(frozen=True)
class Engine:
    name: str
    label: str
    loader: str  # the source files its rules come from
    lm_head: bool
    companions: tuple[tuple[str, ...], ...] = ()  # leaf groups a layer must carry together
    head_untied_only: bool = False

    def rank(self, needed: int) -> int:
        """The uniform rank R the export uses: the smallest this engine takes without changing it."""
        if self.name == "vllm":
            return _vllm_rank(needed)
        if self.name in ("lorax", "tgi"):
            return _lorax_rank(needed)
        return needed

    def serve_note(self, rank: int) -> str | None:
        if self.name == "vllm" and rank > VLLM_DEFAULT_CAP:
            return f"serve with --max-lora-rank {rank} (vLLM's default is {VLLM_DEFAULT_CAP})"
        if self.name == "sglang":
            return f"serve with --max-lora-rank >= {rank} when other adapters are smaller"
        if self.name == "llama.cpp":
            return "convert with llama.cpp's convert_lora_to_gguf.py --base <the base's directory>"
        if self.name in ("lorax", "tgi") and rank > 128:
            return "ranks above 128 run on LoRAX/TGI's slow path"
        return None


ENGINE_TABLE: dict[str, Engine] = {
    e.name: e
    for e in (
        Engine(
            "vllm",
            "vLLM",
            "vllm/lora/peft_helper.py, vllm/config/lora.py, vllm/lora/lora_model.py",
            lm_head=True,
        ),
        Engine(
            "sglang",
            "SGLang",
            "python/sglang/srt/lora/lora.py, mem_pool.py, utils.py",
            lm_head=True,
            companions=(("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")),
        ),
        Engine("lorax", "LoRAX", "server/lorax_server/adapters/lora.py, utils/punica.py", lm_head=True),
        Engine("tgi", "TGI", "server/text_generation_server/adapters/lora.py", lm_head=False),
        Engine(
            "llama.cpp",
            "llama.cpp",
            "convert_lora_to_gguf.py, src/llama-adapter.cpp",
            lm_head=True,
            head_untied_only=True,
        ),
    )
}


@dataclass(frozen=True)
class ModuleFacts:
    """One patched module as the rules need it: its kind, LoRA rank (lowrank, columns, rows), and
    for a scale delta the number of output channels whose scale is not 1."""

    name: str
    kind: str
    rank: int | None = None
    changed: int | None = None


@dataclass(frozen=True)
class BaseFacts:
    """The base a patch is served on: its model type, every target's [out, in] shape, and whether
    its head shares the embedding's weight."""

    model_type: str
    shapes: Mapping[str, tuple[int, int]]
    tied_head: bool = False

    @property
    def layers(self) -> int:
        found = [int(m.group(1)) for n in self.shapes if (m := LAYER_MODULE.match(n))]
        return max(found) + 1 if found else 0

    def module(self, layer: int, leaf: str) -> str | None:
        """The runtime name of `leaf` in `layer`, if the base has it."""
        for group in ("self_attn", "mlp"):
            name = f"model.layers.{layer}.{group}.{leaf}"
            if name in self.shapes:
                return name
        return None


@dataclass(frozen=True)
class Assessment:
    """What a patch becomes for one target: `status`, the uniform rank, the size cost of padding,
    the rule behind the answer, and what to do instead when it cannot load."""

    target: str
    status: Status
    rule: str
    rank: int | None = None
    padded_bytes: int = 0  # bytes the padding adds over the patch's own LoRA tensors (fp32)
    note: str | None = None

    def line(self) -> str:
        label = ENGINE_TABLE[self.target].label if self.target in ENGINE_TABLE else "PEFT"
        if self.status == "exact":
            head = "loads exactly" + (f" (rank {self.rank})" if self.rank else "")
        elif self.status == "padded":
            head = f"loads with padding (rank {self.rank}, +{self.padded_bytes / 1e6:.1f} MB)"
        elif self.status == "approximate":
            head = f"loads a rank-{self.rank} approximation (--approximate {self.rank})"
        else:
            head = f"needs {MERGED}"
        tail = f"; {self.note}" if self.note else ""
        return f"{label}: {head}: {self.rule}{tail}"


# The bit pattern of 1.0 per float dtype, and the array typecode of that width.
_ONE_BITS = {"F32": ("I", 0x3F800000), "BF16": ("H", 0x3F80), "F16": ("H", 0x3C00)}


def changed_channels(path: Path, info: TensorInfo) -> int | None:
    """How many entries of a scale vector are not exactly 1, read from the file's bytes (no torch);
    None when the dtype or offset is unknown."""
    if info.dtype not in _ONE_BITS or info.offset < 0:
        return None
    code, one = _ONE_BITS[info.dtype]
    values = array(code)
    with open(path, "rb") as f:
        f.seek(info.offset)
        values.frombytes(f.read(info.numel * values.itemsize))
    if sys.byteorder != "little":
        values.byteswap()
    return sum(1 for v in values if v != one)


def patch_facts(path: Path | str) -> list[ModuleFacts]:
    """The serving rules' view of a patch file: from its header, plus each scale vector's count of
    channels that differ from 1 (the rank of its exact LoRA form)."""
    from core.patchfile import read_patch_header

    path = Path(path)
    header = read_patch_header(path, where=path.name)
    return [
        ModuleFacts(
            name,
            m.kind,
            rank=m.rank,
            changed=changed_channels(path, m.tensors["s"]) if m.kind == "scale" else None,
        )
        for name, m in sorted(header.modules.items())
    ]


def reads_base_weights(path: Path | str) -> bool:
    """Whether a serving export of this patch file reads the base's weights (scale, dense deltas)."""
    from core.patchfile import read_patch_header

    header = read_patch_header(Path(path), where=Path(path).name)
    return any(m.kind in ("scale", "dense") for m in header.modules.values())


def exact_scale_rank(changed: int | None, shape: tuple[int, int]) -> int | None:
    """The rank of a scale delta's exact LoRA form (one per channel that is not 1), when few
    channels change: at most a quarter of the weight's smaller side (a larger LoRA outgrows the
    weight it adapts) and at most `MAX_RANK`. None otherwise: only an approximation fits then."""
    if changed is None or changed > min(MAX_RANK, min(shape) // 4):
        return None
    return max(changed, 1)


def _needed_rank(
    m: ModuleFacts, shape: tuple[int, int], approximate: int | None
) -> tuple[int | None, bool, str | None]:
    """(rank of the LoRA form, whether it is approximate, why there is none)."""
    if m.kind in ("lowrank", "columns", "rows"):
        return m.rank, False, None
    if m.kind == "scale" and (rank := exact_scale_rank(m.changed, shape)) is not None:
        return rank, False, None
    if approximate is not None:
        return approximate, True, None
    what = "a dense delta" if m.kind == "dense" else f"a scale delta changing {m.changed or 'all'} channels"
    return None, False, f"module '{m.name}' is {what}: its exact LoRA form would be larger than the weight"


def assess(
    modules: list[ModuleFacts], base: BaseFacts, target: str, approximate: int | None = None
) -> Assessment:
    """Whether and how `target` loads the patch described by `modules` on `base` (no tensor read)."""
    check_target(target)
    if target == "peft":
        return _assess_peft(modules)
    engine = ENGINE_TABLE[target]
    where = f"({engine.loader})"
    for m in modules:
        if m.name not in base.shapes:
            return Assessment(target, "merged", f"module '{m.name}' is not a weight of this base")
        if m.name == HEAD:
            if not engine.lm_head:
                return Assessment(target, "merged", f"{engine.label} does not load an lm_head LoRA {where}")
            if engine.head_untied_only and base.tied_head:
                tied = f"{engine.label} refuses an lm_head LoRA on a base with tied embeddings {where}"
                return Assessment(target, "merged", tied)
            continue
        found = LAYER_MODULE.match(m.name)
        if found is None or found.group(3) not in LEAVES:
            return Assessment(
                target,
                "merged",
                f"module '{m.name}' is not a per-projection decoder module ({', '.join(LEAVES)}) "
                f"under model.layers.N, the names {engine.label} loads {where}",
            )
    needed, approximated = 0, []
    for m in modules:
        rank, approximated_here, why = _needed_rank(m, base.shapes[m.name], approximate)
        if rank is None:
            note = "or --approximate RANK (truncated SVD)"
            return Assessment(target, "merged", f"{why} {where}", note=note)
        if approximated_here:
            approximated.append(m.name)
        needed = max(needed, rank)
    rank = engine.rank(needed)
    if rank > MAX_RANK:
        return Assessment(
            target, "merged", f"rank {needed} is above {MAX_RANK}, the largest any engine serves {where}"
        )
    padding = _padding_bytes(modules, base, rank, engine)
    status: Status = "approximate" if approximated else ("exact" if padding == 0 else "padded")
    rule = (
        f"one rank R={rank} for every module of every layer, r = lora_alpha = R, scales folded into B, "
        f"no rank/alpha patterns {where}"
    )
    return Assessment(
        target,
        status,
        rule,
        rank=rank,
        padded_bytes=padding,
        note=engine.serve_note(rank),
    )


def _assess_peft(modules: list[ModuleFacts]) -> Assessment:
    from core.patchfile import peft_adapter_type

    try:
        adapter = peft_adapter_type(m.kind for m in modules)
    except Exception as exc:  # ConfigError: dense or mixed kinds
        return Assessment("peft", "merged", str(exc))
    ranks = [m.rank for m in modules if m.rank is not None]
    rule = "LoRA with per-module rank_pattern/alpha_pattern" if adapter == "LORA" else "IA3 on outputs"
    return Assessment("peft", "exact", f"PEFT {rule}", rank=max(ranks) if ranks else None)


def emitted_modules(modules: list[ModuleFacts], base: BaseFacts, engine: Engine) -> list[str]:
    """Every module the export writes: each patched leaf in every layer that has it (LoRAX/TGI drop
    a module type missing from any layer), with the engine's companions, plus the head."""
    leaves = {found.group(3) for m in modules if (found := LAYER_MODULE.match(m.name))}
    for group in engine.companions:
        if leaves & set(group):
            leaves |= set(group)
    names = [
        name
        for layer in range(base.layers)
        for leaf in LEAVES
        if leaf in leaves and (name := base.module(layer, leaf)) is not None
    ]
    return names + [HEAD for m in modules if m.name == HEAD]


def _padding_bytes(modules: list[ModuleFacts], base: BaseFacts, rank: int, engine: Engine) -> int:
    """fp32 bytes the export at uniform `rank` writes beyond the patch's own LoRA tensors."""
    own: dict[str, int] = {}
    for m in modules:
        r = m.rank if m.rank is not None else (m.changed or rank)
        out_f, in_f = base.shapes[m.name]
        own[m.name] = 4 * min(r, rank) * (out_f + in_f)
    total = 0
    for name in emitted_modules(modules, base, engine):
        out_f, in_f = base.shapes[name]
        total += 4 * rank * (out_f + in_f)
    return total - sum(own.values())


def approximation_summary(approx: Mapping[str, Any]) -> str:
    """One phrase for an export's `approximation` entry: rank, worst weight error, logit error."""
    worst = max(approx["relative_error"].values())
    said = f"rank-{approx['rank']} SVD: weight error up to {worst:.3%} per module"
    if "logit_error" in approx:
        said += f", logit error {approx['logit_error']:.3%} of the patch's effect"
    return said
