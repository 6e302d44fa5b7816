"""Real serving engines, run in their own virtual environment (`make engines`, pinned in
tests/engines/requirements.txt): vLLM's CPU build and llama.cpp (llama-cpp-python). Each engine
starts once per session and answers for every exported adapter at once."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from trainer.checkpoint_weights import serving_facts
from trainer.hf import load_causal_lm
from trainer.patch.apply import apply_patch
from trainer.patch.engine_export import write_engine_for_base
from trainer.patch.types import Columns, LowRank, Patch, Rows, Scale

ROOT = Path(__file__).resolve().parents[2]
ENGINES = ROOT / ".engines"
HERE = Path(__file__).parent
# vLLM's CPU attention kernels take head sizes of 32 and up; 128 / 2 heads = 64.
SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1}
HIDDEN, INTER, KV = 128, 256, 64
LAYERS = ("model.layers.0", "model.layers.1")


def engine_python() -> Path:
    python = ENGINES / "venv" / "bin" / "python"
    if not (ENGINES / ".installed").exists():
        pytest.fail("the serving engines are not installed: run `make engines` (part of `make test`)")
    return python


def llama_cpp_scripts() -> Path:
    (found,) = (ENGINES / "src").glob("llama_cpp_python-*/vendor/llama.cpp")
    return found


def _patches() -> dict[str, tuple[Patch, int | None]]:
    """One patch per method's delta kind (and one with all of them), with the `--approximate` rank
    where the export needs one. LoRA and ALEWR patches are low-rank; S²FT's are rows and columns;
    Propulsion's are channel scales (few channels: exact; every channel: a truncated SVD)."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 0.3) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    few = torch.ones(HIDDEN)
    few[[3, 7, 40]] = torch.tensor([1.4, 0.5, 1.2])
    lora = {
        f"{layer}.self_attn.{name}": LowRank(randn(4, HIDDEN), randn(out, 4), 2.0)
        for layer in LAYERS
        for name, out in (("q_proj", HIDDEN), ("v_proj", KV))
    }
    s2ft = {  # layer 0 has no down_proj columns: engines must not drop the module type
        f"{LAYERS[1]}.mlp.down_proj": Columns(torch.tensor([1, 5, 9]), randn(HIDDEN, 3)),
        f"{LAYERS[0]}.self_attn.o_proj": Rows(torch.tensor([0, 2, 64]), randn(3, HIDDEN)),
        f"{LAYERS[1]}.self_attn.o_proj": Rows(torch.tensor([10]), randn(1, HIDDEN)),
    }
    every = 1 + randn(INTER, scale=0.2)
    return {
        "lora": (Patch("lora", {}, lora), None),
        "s2ft": (Patch("s2ft", {}, s2ft), None),
        "propulsion": (Patch("propulsion", {}, {f"{LAYERS[0]}.self_attn.o_proj": Scale(few)}), None),
        "propulsion-approx": (Patch("propulsion", {}, {f"{LAYERS[1]}.mlp.up_proj": Scale(every)}), 16),
        "mixed": (Patch("mixed", {}, lora | s2ft | {f"{LAYERS[0]}.mlp.gate_proj": Scale(every)}), 8),
    }


@dataclass
class Exported:
    base: Path
    ids: list[int]
    adapters: dict[str, Path]
    expected: dict[str, torch.Tensor]  # our apply's logits for exact exports; PEFT's for approximations
    approximate: dict[str, bool]
    rank: int


def export_all(make_tiny_model, root: Path, target: str) -> Exported:
    from peft import PeftModel

    base = make_tiny_model(**SHAPE)
    model = load_causal_lm(base).eval()
    ids = torch.randint(3, 500, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = {"": model(ids).logits[0]}
    adapters, approximate, ranks = {}, {}, []
    for name, (patch, rank) in _patches().items():
        out = root / name
        out.mkdir(parents=True)
        decided = write_engine_for_base(
            patch, out, target, serving_facts(base), str(base), None, base_dir=base, approximate=rank
        )
        adapters[name], approximate[name] = out, rank is not None
        ranks.append(decided["rank"])
        with torch.no_grad():
            if rank is None:
                with apply_patch(model, patch):
                    expected[name] = model(ids).logits[0]
            else:  # an approximation: the engine must serve exactly what was written
                peft = PeftModel.from_pretrained(load_causal_lm(base), out).eval()
                expected[name] = peft(ids).logits[0]
    return Exported(base, ids[0].tolist(), adapters, expected, approximate, max(ranks))


def run_engine(script: str, request: dict, work: Path, attempts: int = 2) -> dict[str, torch.Tensor]:
    """Run `script` in the engines' venv on `request`; its answer. An engine process killed by a
    signal (a native abort on a busy 2-core machine) is started once more; one that exits with an
    error, or answers wrongly, fails the test at once."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "request.json").write_text(json.dumps(request))
    (work / "out.json").unlink(missing_ok=True)
    failures = []
    for _ in range(attempts):
        done = subprocess.run(
            [str(engine_python()), str(HERE / script), str(work / "request.json"), str(work / "out.json")],
            capture_output=True,
            text=True,
            timeout=900,
            env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "VLLM_CPU_KVCACHE_SPACE": "1",
                 "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        )  # fmt: skip
        if done.returncode == 0:
            break
        failures.append(f"exit {done.returncode}:\n{done.stderr[-3000:]}")
        assert done.returncode < 0, failures[-1]
    else:
        raise AssertionError("\n\n".join(failures))
    answer = json.loads((work / "out.json").read_text())
    return {name: torch.tensor(rows) for name, rows in answer.items()}
