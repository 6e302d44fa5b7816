"""`GET /v1/fetch`: the same bytes as `patchreg fetch`, as a tar; refusals in the API's JSON shape."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

from tests.cli.conftest import Patchreg
from tests.registry.api.conftest import Api
from trainer.patch.io import save_patch
from trainer.patch.types import Columns, LowRank, Rows
from trainer.patch.types import Patch as PatchFile

WHERE = {"domain": "medical", "base": "tiny:v1"}


def _lora_kinds_patch(path: Path) -> Path:
    """lowrank, columns and rows: one PEFT LoRA adapter; columns/rows need the base's module shapes."""
    g = torch.Generator().manual_seed(5)
    deltas = {
        "model.layers.0.self_attn.q_proj": LowRank(
            torch.randn(4, 64, generator=g) * 0.3, torch.randn(64, 4, generator=g) * 0.3, 0.5
        ),
        "model.layers.1.self_attn.o_proj": Columns(torch.tensor([3, 7, 9]), torch.randn(64, 3, generator=g)),
        "model.layers.0.mlp.up_proj": Rows(torch.tensor([1, 100]), torch.randn(2, 64, generator=g)),
    }
    return save_patch(PatchFile("s2ft", {}, deltas), path)


def _untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir()}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's temp directory, to see that every fetch removes its own."""
    path = tmp_path / "server-tmp"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


@pytest.fixture
def fetchable(api: Api, make_tiny_model, tmp_path: Path) -> Api:
    """tiny:v1 registered from its own copy of a tiny model (a test may take the files away)."""
    model = shutil.copytree(make_tiny_model(seed=0), tmp_path / "tiny-v1")
    api.ok("POST", "/v1/bases", 201, json={"ref": "tiny:v1", "source": str(model)}, as_="admin")
    api.ok("POST", "/v1/domains", 201, json={"name": "medical"})
    return api


def test_http_and_cli_fetch_write_the_same_bytes(fetchable: Api, scratch: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch

    api = fetchable
    file = _lora_kinds_patch(tmp_path / "s2ft.safetensors")
    pid = api.upload_patch(file).json()["id"]
    cli = Patchreg(api.registry.home, api.registry.url)
    for fmt in ("peft", "native"):
        response = api.get("/v1/fetch", params={**WHERE, "format": fmt})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/x-tar"
        assert response.headers["content-disposition"] == f'attachment; filename="{pid}-{fmt}.tar"'
        assert response.headers["x-patchreg-patch"] == pid
        assert int(response.headers["content-length"]) == len(response.content)
        served = _untar(response.content)
        cli("fetch", "medical", "--base", "tiny:v1", "--format", fmt, "-o", str(tmp_path / fmt))
        assert served == _files(tmp_path / fmt)  # the manifest too: nothing differs
        assert list(scratch.iterdir()) == []  # the server's temp directory is gone once sent

    response = api.get("/v1/fetch", params={**WHERE, "target": "vllm"})  # format peft by default
    assert response.status_code == 200, response.text
    cli("fetch", "medical", "--base", "tiny:v1", "--target", "vllm", "-o", str(tmp_path / "vllm"))
    assert _untar(response.content) == _files(tmp_path / "vllm")
    assert json.loads((tmp_path / "vllm" / "adapter_config.json").read_text())["r"] == 8
    card = (tmp_path / "vllm" / "README.md").read_text()
    assert card.startswith('---\nbase_model_relation: "adapter"\nlibrary_name: "peft"\n')
    assert f"1. `{pid}` on tiny:v1 (imported, candidate)" in card

    default = _untar(api.get("/v1/fetch", params=WHERE).content)  # native unless asked
    assert sorted(default) == ["patch.safetensors", "patchreg.json"]
    manifest = json.loads((tmp_path / "peft" / "patchreg.json").read_text())
    assert (manifest["patch_id"], manifest["format"], manifest["method"]) == (pid, "peft", "s2ft")
    assert (tmp_path / "native" / "patch.safetensors").read_bytes() == file.read_bytes()

    # The adapter is right, not only the same: columns/rows selectors span the registered shapes.
    base_dir = tmp_path / "tiny-v1"
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = AutoModelForCausalLM.from_pretrained(base_dir).eval()
        apply_patch(expected, load_patch(file))
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        served_adapter = PeftModel.from_pretrained(base, tmp_path / "peft").eval()
        assert (expected(ids).logits - served_adapter(ids).logits).abs().max() <= 1e-5


def test_merged_over_http(fetchable: Api, scratch: Path, tmp_path: Path) -> None:
    api = fetchable
    pid = api.upload_patch(_lora_kinds_patch(tmp_path / "s2ft.safetensors")).json()["id"]
    response = api.get("/v1/fetch", params={**WHERE, "format": "merged"})
    assert response.status_code == 200, response.text
    served = _untar(response.content)
    assert {"config.json", "model.safetensors", "tokenizer.json", "patchreg.json"} <= set(served)
    assert json.loads(served["patchreg.json"])["patch_id"] == pid
    assert list(scratch.iterdir()) == []

    shutil.rmtree(tmp_path / "tiny-v1")  # the base's files are no longer on the server
    gone = api.ok("GET", "/v1/fetch", 424, params={**WHERE, "format": "merged"})
    assert gone["error"]["code"] == "source_unavailable" and "no such directory" in gone["error"]["message"]
    assert list(scratch.iterdir()) == []


def test_refusals_are_json_errors_and_leave_nothing(
    fetchable: Api, scratch: Path, patch_file: Path, tmp_path: Path
) -> None:
    api = fetchable
    pid = api.upload_patch(patch_file).json()["id"]  # lowrank, columns and scale: no single PEFT adapter
    unknown = api.ok("GET", "/v1/fetch", 404, params={"domain": "legal", "base": "tiny:v1"})
    assert unknown["error"]["code"] == "not_found" and "legal" in unknown["error"]["message"]
    bad = api.ok("GET", "/v1/fetch", 422, params={**WHERE, "format": "zip"})
    assert bad["error"]["code"] == "invalid_input" and "format" in bad["error"]["message"]
    missing = api.ok("GET", "/v1/fetch", 422, params={"domain": "medical"})
    assert missing["error"]["code"] == "invalid_input" and "base" in missing["error"]["message"]
    nothing = api.ok("GET", "/v1/fetch", 404, params={**WHERE, "method": "s2ft"})
    assert nothing["error"]["message"] == (
        f"no patch for medical on tiny:v1 with method s2ft: {pid} (tiny:v1, method lora)"
    )
    assert nothing["error"]["detail"]["patches"] == [{"id": pid, "why": "tiny:v1, method lora"}]
    mixed = api.ok("GET", "/v1/fetch", 422, params={**WHERE, "format": "peft"})
    assert "mixes scale deltas" in mixed["error"]["message"]
    scale = api.ok("GET", "/v1/fetch", 422, params={**WHERE, "target": "sglang"})  # a scale on all channels
    assert scale["error"]["message"].startswith(
        "SGLang cannot load this patch: module 'model.layers.0.mlp.down_proj'"
    )
    wrong = api.ok("GET", "/v1/fetch", 422, params={**WHERE, "target": "tgi", "format": "merged"})
    assert "does not apply to format=merged" in wrong["error"]["message"]
    assert api.ok("GET", "/v1/fetch", 401, params=WHERE, as_=None)["error"]["code"] == "unauthorized"
    assert list(scratch.iterdir()) == []


def test_fetch_is_in_the_openapi_schema(api: Api) -> None:
    route = api.client.get("/openapi.json").json()["paths"]["/v1/fetch"]["get"]
    assert "application/x-tar" in route["responses"]["200"]["content"]
    assert {p["name"] for p in route["parameters"]} == {
        "domain",
        "base",
        "method",
        "format",
        "target",
        "approximate",
    }
    assert route["description"]
