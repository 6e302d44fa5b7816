"""Training requests checked against the base's architecture before a job row exists: targets
that select nothing, default targets or S²FT on an architecture patchreg does not know, S²FT
ratios for parts the architecture lacks; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.arch import Architecture, Projection, unknown_message
from core.errors import InvalidInput
from registry.db import transaction
from registry.services import bases, datasets, domains, train_checks, training
from tests.conftest import Registry
from tests.helpers import NothingWritten


def unknown_model(make_tiny_model: Callable[..., Path], directory: Path) -> Path:
    """The tiny Llama under a model_type the catalog does not know."""
    copy = shutil.copytree(make_tiny_model(seed=0), directory)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "model_type": "mysterylm"}))
    return copy


@pytest.fixture
def zoo_registry(
    registry: Registry,
    make_zoo_model: Callable[..., Path],
    make_tiny_model: Callable[..., Path],
    tmp_path: Path,
) -> Registry:
    """gpt2:v1, mixtral:v1, odd:v1 (unknown model_type); domain med with a train dataset."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(4)))
    with transaction(registry.factory) as s:
        bases.register_base(s, "gpt2:v1", str(make_zoo_model("gpt2")))
        bases.register_base(s, "mixtral:v1", str(make_zoo_model("mixtral")))
        bases.register_base(s, "odd:v1", str(unknown_model(make_tiny_model, tmp_path / "odd")))
        domains.create_domain(s, "med")
        datasets.add_dataset(s, registry.store, "med", "notes", rows, "train")
    return registry


def queue(reg: Registry, base: str, method: str = "lora", **kw: Any) -> Any:
    with transaction(reg.factory) as s:
        job, _ = training.enqueue_train(s, domain="med", base=base, method=method, **kw)
    return job


UNKNOWN = re.escape("model_type 'mysterylm' is not in patchreg's architecture catalog")
REFUSED = [
    ("gpt2:v1", "lora", ["target_modules=q_proj,c_attn"], r"^gpt2:v1: target_modules \['q_proj'\] match no"),
    ("gpt2:v1", "full", ["target_modules=vision_tower"], r"\(this GPT-2 model's defaults: attn.c_attn,"),
    ("odd:v1", "lora", [], "^" + re.escape(unknown_message("mysterylm", "default targets")) + "$"),
    ("odd:v1", "propulsion", [], UNKNOWN),
    ("odd:v1", "s2ft", [], UNKNOWN + ", so it has no attention heads or FFN channels that s2ft can find"),
    ("odd:v1", "s2ft", ["o_ratio=0.5"], UNKNOWN),
    ("gpt2:v1", "s2ft", ["v_ratio=lots"], re.escape("--set v_ratio='lots': expected a number")),
]


@pytest.mark.parametrize(("base", "method", "overrides", "message"), REFUSED)
def test_refusals_are_one_line_and_queue_nothing(
    zoo_registry: Registry, base: str, method: str, overrides: list[str], message: str
) -> None:
    with (
        NothingWritten(zoo_registry.engine, zoo_registry.store.root),
        pytest.raises(InvalidInput, match=message) as refused,
    ):
        queue(zoo_registry, base, method, overrides=overrides)
    assert "\n" not in refused.value.message


ACCEPTED = [
    ("gpt2:v1", "lora", ["target_modules=c_attn,mlp.c_proj"]),
    ("gpt2:v1", "propulsion", ["target_modules=transformer.h.0.attn.c_attn"]),
    ("gpt2:v1", "full", ["target_modules=lm_head"]),  # GPT-2's head is tied: it is still a weight
    ("gpt2:v1", "lora", []),  # GPT-2's default targets
    ("mixtral:v1", "lora", ["target_modules=mlp.experts.down_proj"]),  # a 3-D parameter: all experts
    ("mixtral:v1", "full", ["target_modules=model.layers.0.mlp.experts.gate_up_proj.2"]),
    ("mixtral:v1", "s2ft", ["o_ratio=0.5", "d_ratio=0.25"]),
    ("odd:v1", "lora", ["target_modules=q_proj,model.layers.1.mlp.down_proj"]),  # named: no catalog needed
]


@pytest.mark.parametrize(("base", "method", "overrides"), ACCEPTED)
def test_settings_that_fit_the_architecture_queue(
    zoo_registry: Registry, base: str, method: str, overrides: list[str]
) -> None:
    job = queue(zoo_registry, base, method, overrides=overrides)
    assert (job.kind, job.status, job.payload["overrides"]) == ("train", "queued", overrides)


def test_a_stored_method_config_is_checked_too(zoo_registry: Registry) -> None:
    """A retrain carries its source's stored settings: its targets must exist on the new base."""
    with (
        NothingWritten(zoo_registry.engine, zoo_registry.store.root),
        pytest.raises(InvalidInput, match="q_proj"),
    ):
        queue(zoo_registry, "gpt2:v1", method_config={"r": 8, "target_modules": ["q_proj"]})
    job = queue(zoo_registry, "gpt2:v1", method_config={"r": 8, "target_modules": ["c_attn"]})
    assert job.payload["method_config"]["target_modules"] == ["c_attn"]


NO_VALUE = Architecture(
    "No-V", ("novalue",), "layers", (Projection("attn.o", ("o",)), Projection("ffn.down", ("down",)))
)


@pytest.mark.parametrize(("key", "part"), [("v_ratio", "v"), ("u_ratio", "up")])
def test_s2ft_ratio_for_a_part_the_architecture_lacks_is_refused(key: str, part: str) -> None:
    with pytest.raises(
        InvalidInput, match=rf"s2ft: {key}=0.1 trains the '{part}' part, but no No-V projection"
    ):
        train_checks.check_s2ft(NO_VALUE, "novalue", {"o_ratio": 0.2, key: 0.1})
    train_checks.check_s2ft(NO_VALUE, "novalue", {"o_ratio": 0.2, key: 0.0})  # zero asks for nothing
    train_checks.check_s2ft(NO_VALUE, "novalue", {"o_ratio": 0.2, "d_ratio": 0.5})


def test_settings_are_read_from_set_strings_or_a_stored_config() -> None:
    read = train_checks.requested
    assert read("lora", [" target_modules = q_proj, v_proj ", "r=4"], None) == {
        "target_modules": ["q_proj", "v_proj"]
    }
    assert read("lora", ["target_modules=none"], None) == {"target_modules": None}
    assert read("full", [], {"target_modules": ["lm_head"], "regularizer": {"name": "alewr"}}) == {
        "target_modules": ["lm_head"]
    }
    assert read("s2ft", ["v_ratio=0.25", "o_ratio=null"], None) == {
        "o_ratio": None,
        "d_ratio": None,
        "v_ratio": 0.25,
        "u_ratio": None,
    }
