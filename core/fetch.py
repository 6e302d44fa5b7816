"""What a fetch will write, decided once by the registry and carried out by one materialiser.

The registry resolves a `FetchPlan` (which patch, for which base, and everything an export needs to
know about that base); the trainer's `materialize` turns a plan and the verified patch file into
one output directory in any of `FORMATS`. The CLI (`patchreg fetch`) and the API (`GET /v1/fetch`)
both go through these two steps, so they write the same bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from core.errors import InvalidInput
from core.serving import BaseFacts

Format = Literal["native", "peft", "merged"]
FORMATS: tuple[str, ...] = get_args(Format)
MANIFEST = "patchreg.json"  # written beside every fetch: what was fetched, for which base, and why
NATIVE_FILE = "patch.safetensors"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown fetch format {fmt!r}: expected one of {', '.join(FORMATS)}")
    return fmt


@dataclass(frozen=True)
class FetchPlan:
    """The patch chosen for (domain, base), and what its exports must say about the base."""

    patch_id: str
    domain: str
    base: str  # "family:version", the registry's name for the base
    base_name: str  # PEFT's base_model_name_or_path: the hub repo id, else the local path
    revision: str | None  # the base's resolved commit (hub sources), else None
    source_uri: str  # where the base's files come from (merged needs them)
    method: str
    origin: str
    status: str
    digest: str  # sha256 of the patch file
    why: str  # one sentence: why this patch was chosen
    # {target: (out, in)} of the base's patch targets, from the registered tensor table
    # (`registry.services.architecture.runtime_shapes`): columns/rows deltas need them to build
    # their one-hot PEFT selectors, and an expert parameter's experts how many experts it has.
    module_shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict, hash=False, repr=False)
    model_type: str = ""
    tied_head: bool = False  # the base's lm_head shares the embedding's weight
    weights_digest: str | None = None  # what a download of the base's files must hash to (s3://)
    # lineage, training data digest, evaluations and gate verdict, for the model card
    provenance: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    def serving_facts(self) -> BaseFacts:
        return BaseFacts(self.model_type, self.module_shapes, self.tied_head)

    def manifest(self, fmt: str, target: str = "peft") -> dict[str, Any]:
        """The content of `patchreg.json` for a fetch in `fmt` (key order is the file's order)."""
        return {
            "patch_id": self.patch_id,
            "domain": self.domain,
            "base": self.base,
            "base_source": self.source_uri,
            "revision": self.revision,
            "method": self.method,
            "origin": self.origin,
            "status": self.status,
            "digest": self.digest,
            "format": check_format(fmt),
            **({"target": target} if fmt == "peft" else {}),
            "why": self.why,
        }
