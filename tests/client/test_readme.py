"""The README's five lines (fetch the best patch for a domain, load it with PEFT) run as written,
against a real server, with only the names swapped for the tiny model's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from client import Client
from tests.client.conftest import ROOT, Server


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## The Python client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's client section has no python example"
    return match.group(1)


def test_the_example_is_five_lines() -> None:
    assert len([line for line in readme_example().splitlines() if line.strip()]) == 5


def test_the_readme_example_loads_the_fetched_adapter_with_peft(
    server: Server,
    client: Client,
    domain: str,
    peft_adapter: Path,
    make_tiny_model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    patch = client.upload_patch(peft_adapter, domain, "tiny:v1")
    client.set_status(patch.id, "validated", "for the README")
    base_dir = str(make_tiny_model(seed=0))
    code = (
        readme_example()
        .replace('"medical"', repr(domain))
        .replace('"llama3:3.1"', '"tiny:v1"')
        .replace('"meta-llama/Llama-3.1-8B"', repr(base_dir))
    )
    monkeypatch.setenv("PATCHREG_URL", server.url)
    monkeypatch.setenv("PATCHREG_TOKEN", server.secrets["read"])
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), scope)

    model = scope["model"]
    assert isinstance(model, PeftModel)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert '"patch_id": "' + patch.id in (tmp_path / "adapter" / "patchreg.json").read_text()
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        patched = model(input_ids=ids).logits
        with model.disable_adapter():
            alone = model(input_ids=ids).logits
        fresh = AutoModelForCausalLM.from_pretrained(base_dir)(input_ids=ids).logits
    torch.testing.assert_close(alone, fresh)
    assert not torch.allclose(patched, alone)  # the fetched adapter changes the model
