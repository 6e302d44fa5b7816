"""llama.cpp loads every `--target llama.cpp` export, after its own converters
(convert_hf_to_gguf.py for the base, convert_lora_to_gguf.py for the adapter), with our apply's
logits. Loader rules: convert_lora_to_gguf.py (names, one global lora_alpha), src/llama-adapter.cpp
(scale = alpha / each tensor's rank)."""

from __future__ import annotations

import pytest
import torch

from tests.engines.conftest import Exported, export_all, llama_cpp_scripts, run_engine

# one engine start serves every adapter; its first answer waits for the start (a minute or two)
pytestmark = pytest.mark.timeout(900)

NAMES = ("lora", "s2ft", "propulsion", "propulsion-approx", "mixed")


@pytest.fixture(scope="module")
def served(make_tiny_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Exported, dict]:
    root = tmp_path_factory.mktemp("llama-cpp")
    exported = export_all(make_tiny_model, root / "adapters", "llama.cpp")
    request = {
        "base": str(exported.base),
        "adapters": {name: str(path) for name, path in exported.adapters.items()},
        "ids": exported.ids,
        "scripts": str(llama_cpp_scripts()),
        "work": str(root / "gguf"),
    }
    (root / "gguf").mkdir()
    return exported, run_engine("llama_cpp_logits.py", request, root / "run")


def test_llama_cpp_runs_the_base_as_transformers_does(served) -> None:
    exported, answer = served
    torch.testing.assert_close(answer[""], exported.expected[""], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_llama_cpp_runs_each_export_with_our_logits(served, name: str) -> None:
    exported, answer = served
    torch.testing.assert_close(answer[name], exported.expected[name], atol=1e-4, rtol=0)
    moved = (exported.expected[name] - exported.expected[""]).abs().max().item()
    assert moved > 1e-2, f"{name} barely changes the model ({moved}); the check would not see a no-op"
