"""Benchmark: release day at real sizes, as ratios measured in one run.

    .venv/bin/python bench/release_day.py --hidden 640 --layers 10 --patches 20 [--root DIR]

(a) release day: N LoRA patches (one per domain) on v1 of a random Llama (~60M parameters at
    the defaults), each evaluated on v1 beforehand (not timed); registering v2 queues
    `port_all`; one worker ports, evaluates and gates them all, first with resident bases
    (`--model-cache-gb` default), then reloading per job (`--model-cache-gb 0`). Reports
    patches/minute, model loads, and the ratio.
(b) merged export: peak anonymous RSS of the streamed merge at three model sizes, each in a fresh
    process (sampled every millisecond), against the largest shard.
(c) patch switch on a resident model: our apply + revert vs PEFT's load_adapter + merge + unmerge
    of the same LoRA patch (the adapter exported by us), median of repeats.
Port vs retrain (PortLLM's comparison) is `bench/port.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any


def llama(hidden: int, layers: int, seed: int = 0, vocab: int = 512) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def save(model: Any, directory: Path, shard: str = "100MB") -> Path:
    from trainer.tiny import build_tokenizer

    model.save_pretrained(directory, max_shard_size=shard)
    build_tokenizer(512).save_pretrained(directory)
    return directory


def lora_patch(model: Any, seed: int) -> Any:
    import torch

    from trainer.patch.types import LowRank, Patch

    g = torch.Generator().manual_seed(seed)
    deltas = {}
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            out_f, in_f = module.weight.shape
            deltas[name] = LowRank(
                torch.randn(8, in_f, generator=g) * 0.02, torch.randn(out_f, 8, generator=g) * 0.02, 2.0
            )
    return Patch("lora", {"r": 8}, deltas)


def release_day(root: Path, hidden: int, layers: int, n: int) -> dict[str, Any]:
    import torch

    from registry import migrate
    from registry.db import make_engine, session_factory, transaction
    from registry.services import bases, datasets, domains, jobs, patches
    from registry.store import LocalStore
    from trainer.family import domain_rows, write_jsonl
    from trainer.patch.io import save_patch
    from worker.runner import Worker, WorkerConfig

    v1 = llama(hidden, layers)
    params = sum(p.numel() for p in v1.parameters())
    save(v1, root / "v1")
    with torch.no_grad():
        for p in v1.parameters():
            p.add_(torch.randn_like(p) * 0.002)
    save(v1, root / "v2")
    _, evals = domain_rows()
    quiz = write_jsonl(evals[:16], root / "quiz.jsonl")
    files = [save_patch(lora_patch(v1, i), root / f"p{i}.safetensors") for i in range(n)]
    results: dict[str, Any] = {"params": params, "patches": n}
    # a first, unmeasured run warms the process up (imports, first kernels) for both variants
    for label, cache in (("warm-up", None), ("resident", None), ("reload per job", 0)):
        home = root / label.replace(" ", "-")
        home.mkdir(parents=True)
        engine = make_engine(f"sqlite:///{home / 'registry.db'}")
        migrate.upgrade(engine)
        factory, store = session_factory(engine), LocalStore(home / "artifacts")
        config = WorkerConfig(
            work_root=home / "work", poll_seconds=0.05, backoff_seconds=0, model_cache_bytes=cache
        )
        with transaction(factory) as s:
            bases.register_base(s, "bench:v1", str(root / "v1"))
            for i, path in enumerate(files[:1] if label == "warm-up" else files):
                domains.create_domain(s, f"d{i}")
                datasets.add_dataset(s, store, f"d{i}", "quiz", quiz, "eval")
                patch = patches.register_patch(s, store, f"d{i}", "bench:v1", path, "imported")
                jobs.enqueue(s, "evaluate", {"patch_id": patch.id}, dedupe_key=f"evaluate:{patch.id}")
        # Before the release (not timed): each patch was evaluated on v1, as trained patches are,
        # so its port reuses the stored source numbers, as it would in production.
        Worker(factory, store, config).run(until_idle=True)
        with transaction(factory) as s:
            bases.register_base(s, "bench:v2", str(root / "v2"), parent="bench:v1")
        worker = Worker(factory, store, config)
        started = time.perf_counter()
        ran = worker.run(until_idle=True)
        seconds = time.perf_counter() - started
        results[label] = {
            "jobs": ran,
            "seconds": round(seconds, 1),
            "patches_per_min": round(n / seconds * 60, 2),
            "model_loads": worker.models.loads,
        }
        engine.dispose()
    del results["warm-up"]
    results["ratio"] = round(
        results["resident"]["patches_per_min"] / results["reload per job"]["patches_per_min"], 2
    )
    return results


PEAK = textwrap.dedent(
    """
    import sys, threading, time
    from pathlib import Path
    from trainer.patch.io import load_patch
    from trainer.patch.merge import merge_into_directory

    def anon():
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024

    patch = load_patch(sys.argv[2])
    before, peak, done = anon(), [0], []

    def sample():
        while not done:
            peak[0] = max(peak[0], anon())
            time.sleep(0.001)

    t = threading.Thread(target=sample)
    t.start()
    started = time.perf_counter()
    merge_into_directory(sys.argv[1], patch, sys.argv[3])
    done.append(1)
    t.join()
    print(peak[0] - before, time.perf_counter() - started)
    """
)


def merged_export(root: Path, sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    import torch

    from trainer.patch.io import save_patch

    rows = []
    for hidden, layers in sizes:
        model = llama(hidden, layers, vocab=32000).to(torch.bfloat16)
        base = save(model, root / f"m{hidden}x{layers}", shard="200MB")
        patch = save_patch(lora_patch(model, 0), root / f"m{hidden}.patch")
        del model
        shards = list(base.glob("*.safetensors"))
        out = subprocess.run(
            [sys.executable, "-c", PEAK, str(base), str(patch), str(root / f"merged{hidden}")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        rows.append(
            {
                "checkpoint_mb": round(sum(p.stat().st_size for p in shards) / 1e6),
                "largest_shard_mb": round(max(p.stat().st_size for p in shards) / 1e6),
                "patch_mb": round(patch.stat().st_size / 1e6, 1),
                "peak_anon_rss_mb": round(int(out[0]) / 1e6),
                "seconds": round(float(out[1]), 1),
            }
        )
    return rows


def patch_switch(root: Path, hidden: int, layers: int, repeats: int) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from trainer.hf import load_causal_lm
    from trainer.patch.apply import apply_patch
    from trainer.patch.peft_export import export_peft

    base = root / "v1"
    model = load_causal_lm(base, dtype=torch.float32)
    patch = lora_patch(model, 1)
    adapter = export_peft(patch, Path(tempfile.mkdtemp(dir=root)) / "adapter", str(base))
    ours = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        apply_patch(model, patch).revert()
        ours.append(time.perf_counter() - t0)
    peft_model = PeftModel.from_pretrained(
        load_causal_lm(base, dtype=torch.float32), adapter, adapter_name="first"
    )
    theirs = []
    for i in range(repeats):
        t0 = time.perf_counter()
        peft_model.load_adapter(adapter, adapter_name=f"a{i}")
        peft_model.set_adapter(f"a{i}")
        peft_model.merge_adapter()
        peft_model.unmerge_adapter()
        theirs.append(time.perf_counter() - t0)
        peft_model.delete_adapter(f"a{i}")
    a, b = statistics.median(ours), statistics.median(theirs)
    return {"ours_ms": round(a * 1e3, 2), "peft_ms": round(b * 1e3, 2), "speedup": round(b / a, 1)}


def main() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--patches", type=int, default=20)
    parser.add_argument("--merge-sizes", default="512x4,1024x8,1536x16", help="HIDDENxLAYERS,... for (b)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--sections", default="release,switch,merge", help="which of release,switch,merge")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="patchreg-release-day-"))
    root.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.merge_sizes.split(",")]
    sections = set(args.sections.split(","))
    report: dict[str, Any] = {}
    if "release" in sections:
        report["release_day"] = release_day(root, args.hidden, args.layers, args.patches)
    if "switch" in sections:
        if not (root / "v1").exists():
            save(llama(args.hidden, args.layers), root / "v1")
        report["patch_switch"] = patch_switch(root, args.hidden, args.layers, args.repeats)
    if "merge" in sections:
        report["merged_export"] = merged_export(root, sizes)  # type: ignore[arg-type]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
