"""Patches on every kind of weight register, check compat and plan fetches against the base's
architecture (`core.arch.weight_sources`), and `base show` says what the architecture is; on SQLite
and PostgreSQL, with tiny real models of the catalog (`trainer.zoo`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update

from core.arch import find_architecture, unknown_message
from core.errors import InvalidInput
from registry.db import transaction
from registry.models import BaseVersion
from registry.services import architecture, bases, compat, domains, patches
from registry.services.fetch import plan_fetch
from tests.conftest import Registry
from tests.factories import write_zoo_patch
from tests.helpers import NothingWritten

# One patch per way a runtime weight can differ from a `<name>.weight` 2-D tensor in the checkpoint.
CASES: dict[str, dict[str, str]] = {
    # multimodal wrapper: runtime model.language_model.* is saved as language_model.model.*
    "gemma3": {
        "model.language_model.layers.0.self_attn.q_proj": "lowrank",
        "model.language_model.layers.1.mlp.down_proj": "columns",
    },
    # Conv1D: saved [in, out], patched [out, in]
    "gpt2": {"transformer.h.0.attn.c_attn": "lowrank", "transformer.h.1.mlp.c_fc": "rows"},
    # experts: 3-D runtime parameters, saved per expert (w1 + w3 stacked into gate_up)
    "mixtral": {
        "model.layers.0.mlp.experts.gate_up_proj.1": "lowrank",
        "model.layers.1.mlp.experts.down_proj.3": "dense",
        "model.layers.0.self_attn.o_proj": "scale",
    },
    # a tied lm_head: the checkpoint saves only the embedding
    "qwen2": {"lm_head": "lowrank", "model.layers.0.self_attn.v_proj": "scale"},
}
# The one-hot export shapes fetch plans hand out ([out, in], whatever the storage).
EXPECTED_SHAPES = {
    "gemma3": ("model.language_model.layers.1.mlp.down_proj", (64, 128)),
    "gpt2": ("transformer.h.0.attn.c_attn", (192, 64)),
    "mixtral": ("model.layers.0.mlp.experts.gate_up_proj.1", (128, 64)),
    "qwen2": ("lm_head", (512, 64)),
}


@pytest.fixture(scope="session")
def zoo_patches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("zoo-patches")
    return {mt: write_zoo_patch(root / f"{mt}.safetensors", mt, kinds) for mt, kinds in CASES.items()}


def _register_pair(registry: Registry, make_zoo_model: Callable[..., Path], model_type: str) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, f"{model_type}:v1", str(make_zoo_model(model_type, 0)))
        bases.register_base(
            s, f"{model_type}:v2", str(make_zoo_model(model_type, 1)), parent=f"{model_type}:v1"
        )
        domains.create_domain(s, "docs")


@pytest.mark.parametrize("model_type", list(CASES))
def test_patch_on_any_weight_kind_registers_checks_compat_and_plans_fetch(
    registry: Registry, make_zoo_model: Callable[..., Path], zoo_patches: dict[str, Path], model_type: str
) -> None:
    _register_pair(registry, make_zoo_model, model_type)
    with transaction(registry.factory) as s:
        row = patches.register_patch(
            s, registry.store, "docs", f"{model_type}:v1", zoo_patches[model_type], "imported"
        )
    with transaction(registry.factory) as s:
        verdict = compat.check_compat(s, registry.store, row.id, f"{model_type}:v2")
        plan = plan_fetch(s, "docs", f"{model_type}:v1")
    assert (verdict.verdict, verdict.reasons) == ("compatible", [])
    name, shape = EXPECTED_SHAPES[model_type]
    assert plan.module_shapes[name] == shape


def test_a_true_misfit_is_still_one_line_with_nothing_written(
    registry: Registry, make_zoo_model: Callable[..., Path], zoo_patches: dict[str, Path]
) -> None:
    _register_pair(registry, make_zoo_model, "gpt2")
    with (
        NothingWritten(registry.engine, registry.store.root),
        transaction(registry.factory) as s,
        pytest.raises(InvalidInput) as refused,  # a Mixtral patch on GPT-2
    ):
        patches.register_patch(s, registry.store, "docs", "gpt2:v1", zoo_patches["mixtral"], "imported")
    message = refused.value.message
    assert "\n" not in message and message.startswith("patch does not fit gpt2:v1: module ")
    assert "(+2 more)" in message


def test_compat_across_architectures_names_each_missing_weight(
    registry: Registry, make_zoo_model: Callable[..., Path], zoo_patches: dict[str, Path]
) -> None:
    _register_pair(registry, make_zoo_model, "gpt2")
    with transaction(registry.factory) as s:
        bases.register_base(s, "moe:v1", str(make_zoo_model("mixtral", 0)))
    with transaction(registry.factory) as s:
        row = patches.register_patch(s, registry.store, "docs", "gpt2:v1", zoo_patches["gpt2"], "imported")
        verdict = compat.check_compat(s, registry.store, row.id, "moe:v1")
    codes = sorted((r.code, r.module) for r in verdict.reasons)
    assert verdict.verdict == "incompatible"
    assert codes == [
        ("model_type_mismatch", None),
        ("module_missing", "transformer.h.0.attn.c_attn"),
        ("module_missing", "transformer.h.1.mlp.c_fc"),
    ]


def test_tied_head_patch_needs_the_same_tokenizer_on_the_target(
    registry: Registry, make_zoo_model: Callable[..., Path], zoo_patches: dict[str, Path], tmp_path: Path
) -> None:
    other_tokens = tmp_path / "qwen2-other-tokenizer"
    shutil.copytree(make_zoo_model("qwen2", 1), other_tokens)
    vocab = json.loads((other_tokens / "tokenizer.json").read_text())
    vocab["added_tokens"] = [*vocab.get("added_tokens", []), {**vocab["added_tokens"][0], "id": 511}]
    (other_tokens / "tokenizer.json").write_text(json.dumps(vocab))
    _register_pair(registry, make_zoo_model, "qwen2")
    with transaction(registry.factory) as s:
        bases.register_base(s, "qwen2:v3", str(other_tokens), parent="qwen2:v2")
        row = patches.register_patch(s, registry.store, "docs", "qwen2:v1", zoo_patches["qwen2"], "imported")
        verdict = compat.check_compat(s, registry.store, row.id, "qwen2:v3")
    assert [(r.code, r.module) for r in verdict.reasons] == [("tokenizer_changed", "lm_head")]


def test_base_records_its_config_and_shows_its_architecture(
    registry: Registry, make_zoo_model: Callable[..., Path]
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "phi:3", str(make_zoo_model("phi3")))
    with transaction(registry.factory) as s:
        shown = bases.show_base(s, "phi:3")
    config = json.loads((make_zoo_model("phi3") / "config.json").read_text())
    assert shown.config is not None and shown.config["model_type"] == "phi3"
    assert "transformers_version" not in shown.config and shown.config["hidden_size"] == config["hidden_size"]
    arch = shown.architecture
    assert (arch.name, arch.layers, arch.note) == ("Phi-3", "model.layers", None)
    assert arch.dims == {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 2, "head_dim": 16}
    by_method = {m.method: m for m in arch.methods}
    assert set(by_method) == {"lora", "full", "propulsion", "s2ft"}
    phi3 = find_architecture({"model_type": "phi3"})
    assert phi3 is not None
    for method in ("lora", "full", "propulsion"):
        assert tuple(by_method[method].targets) == phi3.default_targets(method)
    s2ft = by_method["s2ft"]
    assert (s2ft.parts, s2ft.targets) == (["o", "down"], ["self_attn.o_proj", "mlp.down_proj"])
    assert s2ft.optional_parts == ["v", "up"]


def test_unknown_model_type_and_rows_without_config(
    registry: Registry, make_tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    unknown = shutil.copytree(make_tiny_model(seed=0), tmp_path / "unknown")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "mysterylm"}))
    with transaction(registry.factory) as s:
        bases.register_base(s, "odd:v1", str(unknown))
        bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
        s.execute(update(BaseVersion).where(BaseVersion.version == "v1").values(config=None))  # pre-0003 rows
    with transaction(registry.factory) as s:
        odd, old = bases.show_base(s, "odd:v1"), bases.show_base(s, "tiny:v1")
    assert odd.architecture.name is None and odd.architecture.methods == []
    assert odd.architecture.note == unknown_message("mysterylm")
    # a row registered before configs were kept: its architecture still comes from model_type
    assert old.config is None and old.architecture.name == "Llama" and old.architecture.dims is None
    assert old.architecture.note == architecture.UNRECORDED
