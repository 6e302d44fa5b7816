"""Run inside the engines' virtual environment (`make engines`): convert a base and each adapter to
GGUF with llama.cpp's own scripts (`convert_hf_to_gguf.py`, `convert_lora_to_gguf.py`, from the
llama-cpp-python sdist), load them with llama.cpp (llama-cpp-python) and write every position's logits.

Input (argv[1], JSON): {"base": dir, "adapters": {name: dir}, "ids": [...], "scripts": dir, "work": dir}.
Output (argv[2], JSON): {name or "": [[logit per vocabulary entry] per position]}.

The tiny test tokenizer is a BPE that convert_hf_to_gguf.py's pre-tokenizer table does not list, so
the base conversion runs with that lookup answering "default"; token ids are fed directly, so the
GGUF vocabulary's pre-tokenizer never runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

F32 = 0  # GGML_TYPE_F32: a float32 KV cache (the default f16 cache rounds keys and values)
CONVERT_BASE = """
import runpy, sys
scripts = sys.argv.pop(1)
sys.path[:0] = [scripts, scripts + "/gguf-py"]
import conversion.base
conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
sys.argv[0] = scripts + "/convert_hf_to_gguf.py"
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _run(*args: str) -> None:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[:2]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def main() -> None:
    from llama_cpp import Llama

    request = json.loads(Path(sys.argv[1]).read_text())
    scripts, work = request["scripts"], Path(request["work"])
    base_gguf = work / "base.gguf"
    _run("-c", CONVERT_BASE, scripts, request["base"], "--outfile", str(base_gguf), "--outtype", "f32")
    loras: dict[str, str | None] = {"": None}
    for name, path in sorted(request["adapters"].items()):
        loras[name] = str(work / f"{name}.gguf")
        _run(
            f"{scripts}/convert_lora_to_gguf.py",
            path,
            "--base",
            request["base"],
            "--outfile",
            loras[name],
            "--outtype",
            "f32",
        )
    ids = request["ids"]
    result = {}
    for name, lora in loras.items():
        llm = Llama(
            model_path=str(base_gguf), lora_path=lora, n_ctx=64, n_batch=64, logits_all=True, n_threads=2,
            type_k=F32, type_v=F32, verbose=False, seed=0,
        )  # fmt: skip
        llm.eval(ids)
        result[name] = [list(map(float, llm.scores[i])) for i in range(len(ids))]
        llm.close()
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
