"""What the registry needs to know about a patch file, from its safetensors header alone.

The registry never imports torch or `trainer`, so it reads the header the trainer writes (see
`trainer/patch/io.py`): metadata `format_version`, `method`, `method_config`, `modules`
(module -> {"kind", "scale"?}), and tensors named `<module>.<A|B|idx|values|s|delta>`. Values are
validated by the trainer when a patch is loaded; here the structure is checked so that a file that
is not a patch is refused before anything is stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import MalformedFile
from registry.fingerprint import TensorInfo, read_safetensors_header

SUPPORTED_FORMAT_VERSIONS = {"1"}
TENSORS_BY_KIND = {
    "lowrank": ("A", "B"),
    "columns": ("idx", "values"),
    "rows": ("idx", "values"),
    "scale": ("s",),
    "dense": ("delta",),
}
EMBEDDING_MODULES = ("embed_tokens", "lm_head")


@dataclass(frozen=True)
class PatchModule:
    name: str
    kind: str
    tensors: dict[str, TensorInfo]

    @property
    def rank(self) -> int | None:
        """The LoRA rank this module has in a PEFT export (None: IA3 or no PEFT form)."""
        if self.kind == "lowrank":
            return self.tensors["A"].shape[0]
        if self.kind in ("columns", "rows"):
            return self.tensors["idx"].shape[0]
        return None

    @property
    def num_params(self) -> int:
        return sum(t.numel for name, t in self.tensors.items() if name != "idx")

    @property
    def touches_embeddings(self) -> bool:
        return self.name.rsplit(".", 1)[-1] in EMBEDDING_MODULES


@dataclass(frozen=True)
class PatchHeader:
    method: str
    method_config: dict[str, Any]
    format_version: str
    modules: dict[str, PatchModule]

    @property
    def num_params(self) -> int:
        return sum(m.num_params for m in self.modules.values())

    @property
    def export_rank(self) -> int | None:
        ranks = [m.rank for m in self.modules.values() if m.rank is not None]
        return max(ranks) if ranks else None


def read_patch_header(path: Path) -> PatchHeader:
    path = Path(path)
    tensors, meta = read_safetensors_header(path)
    version = meta.get("format_version")
    if version is None or "method" not in meta or "modules" not in meta:
        raise MalformedFile(f"{path.name}: not a patchreg patch (no format_version/method/modules metadata)")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise MalformedFile(f"{path.name}: patch format version {version} is not supported by this patchreg")
    try:
        modules_meta = json.loads(meta["modules"])
        method_config = json.loads(meta.get("method_config", "{}"))
    except json.JSONDecodeError as exc:
        raise MalformedFile(f"{path.name}: patch metadata is not valid JSON ({exc.msg})") from None
    if not isinstance(modules_meta, dict) or not modules_meta:
        raise MalformedFile(f"{path.name}: patch lists no modules")
    modules: dict[str, PatchModule] = {}
    for name, entry in modules_meta.items():
        kind = entry.get("kind") if isinstance(entry, dict) else None
        if kind not in TENSORS_BY_KIND:
            raise MalformedFile(f"{path.name}: module {name!r} has unknown kind {kind!r}")
        own = {}
        for tensor in TENSORS_BY_KIND[kind]:
            info = tensors.get(f"{name}.{tensor}")
            if info is None:
                raise MalformedFile(f"{path.name}: module {name!r} ({kind}) lacks tensor {tensor!r}")
            own[tensor] = info
        modules[name] = PatchModule(name, kind, own)
    return PatchHeader(str(meta["method"]), method_config, version, modules)


def expected_weight_shapes(
    header: PatchHeader, source_table: list[list[Any]]
) -> dict[str, tuple[int, ...] | None]:
    """The weight shape each patched module had on the patch's own base (None: not there)."""
    shapes = {name: tuple(shape) for name, shape, _ in source_table}
    return {m: shapes.get(f"{m}.weight") for m in header.modules}
