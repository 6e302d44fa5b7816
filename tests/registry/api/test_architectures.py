"""The architecture over HTTP: the base detail names it, and the train route refuses settings that
cannot train on the base (422, one message, no job row); on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.helpers import row_counts
from tests.registry.api.conftest import Api, jsonl


def test_base_detail_names_the_architecture_and_train_refuses_before_queueing(
    api: Api, make_zoo_model: Callable[..., Path], make_tiny_model: Callable[..., Path], tmp_path: Path
) -> None:
    unknown = shutil.copytree(make_tiny_model(seed=0), tmp_path / "odd")
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "mysterylm"}))
    api.ok(
        "POST", "/v1/bases", 201, json={"ref": "gpt2:v1", "source": str(make_zoo_model("gpt2"))}, as_="admin"
    )
    api.ok("POST", "/v1/bases", 201, json={"ref": "odd:v1", "source": str(unknown)}, as_="admin")
    api.ok("POST", "/v1/domains", 201, json={"name": "medical"})
    form = {"domain": "medical", "name": "notes", "role": "train"}
    api.ok("POST", "/v1/datasets", 201, data=form, files={"file": ("notes.jsonl", jsonl({"text": "a b c"}))})

    gpt2 = api.ok("GET", "/v1/bases/gpt2:v1")
    assert gpt2["config"]["model_type"] == "gpt2"
    arch = gpt2["architecture"]
    assert (arch["name"], arch["layers"], arch["note"]) == ("GPT-2", "transformer.h", None)
    lora = next(m for m in arch["methods"] if m["method"] == "lora")
    assert lora["targets"] == ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"]
    odd = api.ok("GET", "/v1/bases/odd:v1")["architecture"]
    assert odd["name"] is None and "'mysterylm' is not in patchreg's architecture catalog" in odd["note"]

    before = row_counts(api.registry.engine)
    for base, method, overrides, message in [
        ("gpt2:v1", "lora", ["target_modules=q_proj"], "target_modules ['q_proj'] match no"),
        ("odd:v1", "lora", [], "so it has no default targets"),
        ("odd:v1", "s2ft", [], "so it has no attention heads or FFN channels that s2ft can find"),
    ]:
        body = {"domain": "medical", "base": base, "method": method, "overrides": overrides}
        error = api.ok("POST", "/v1/jobs/train", 422, json=body)["error"]
        assert error["code"] == "invalid_input" and message in error["message"]
    assert row_counts(api.registry.engine) == before
    body = {"domain": "medical", "base": "gpt2:v1", "method": "lora", "overrides": ["target_modules=c_attn"]}
    assert api.ok("POST", "/v1/jobs/train", 201, json=body)["status"] == "queued"
