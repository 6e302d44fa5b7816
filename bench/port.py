"""Benchmark: port a patch onto a new base (PortLLM) vs retrain it there.

    .venv/bin/python bench/port.py [--method lora] [--steps 30] [--root /tmp/patchreg-bench-port]
        [--hidden H --layers L]

Uses the shared tiny family (v1 pretrained on pydoc text, v2 = v1 trained further) and the demo
domain; with --hidden/--layers, a random Llama of that size instead (v2 = v1 plus noise, as in
bench/release_day.py), to compare at the largest size the machine allows. A patch is trained on
v1 once (setup, not timed). Then, each in a fresh subprocess: (a) port + evaluate on v2
(portability statistics, v2 alone and v2 + patch on the eval set; the no-op check compares those
two, as a port job does) and (b) retrain the same method with the same data and steps on v2, then
evaluate. Reports wall time, the peak RSS rise (anonymous + file-backed, sampled every millisecond
by bench/rss.py above the level after imports and the load of v2, which both paths need),
accuracies, and recovery = (ported − base) / (retrained − base).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def child(mode: str, root: Path, method: str, steps: int) -> None:
    """Runs in a fresh process; prints one JSON line. The baseline is taken after the imports and
    after loading v2, which both paths need: what is compared is the work itself."""
    import peft  # noqa: F401
    import torch
    import transformers.models.llama.modeling_llama  # noqa: F401

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from rss import peak_increase

    from core.rows import read_rows
    from trainer.evaluate import evaluate
    from trainer.hf import load_causal_lm, load_tokenizer
    from trainer.loop import TrainArgs, train
    from trainer.methods import get_method, parse_overrides
    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch
    from trainer.port.stats import portability_stats

    eval_rows = read_rows(root / "eval.jsonl")
    model, tok = (
        load_causal_lm(root / "family" / "v2", dtype=torch.float32),
        load_tokenizer(root / "family" / "v2"),
    )
    extra: dict[str, object] = {}
    measured: list[object] = []

    def work() -> None:
        if mode == "port":
            patch = load_patch(root / "source.safetensors")
            v1, v2 = root / "family" / "v1", root / "family" / "v2"
            extra["portability"] = portability_stats(patch, v1, v2).score
            base = evaluate(model, tok, eval_rows)
            extra.update(base_accuracy=base.accuracy, base_loss=base.loss)
        else:
            chosen = get_method(method)
            result = train(
                model, tok, read_rows(root / "train.jsonl"), chosen, parse_overrides(chosen, []),
                TrainArgs(steps=steps, lr=3e-3),
            )  # fmt: skip
            patch = result.patch  # the model comes back as the base it was
        with apply_patch(model, patch):
            measured.append(evaluate(model, tok, eval_rows))

    # Peak anonymous + file-backed RSS above the level after imports and the load of v2, sampled
    # every millisecond while the work runs (ru_maxrss would report the load's own peak instead).
    peak = peak_increase(work)
    rise = (peak["anon_bytes"] + peak["file_bytes"]) / 2**20
    done: Any = measured[0]
    print(json.dumps({"mode": mode, "wall_s": peak["seconds"], "rise_mib": rise, "accuracy": done.accuracy,
                      "loss": done.loss, **extra}))  # fmt: skip


def random_family(directory: Path, hidden: int, layers: int) -> None:
    """v1: a random Llama of this size; v2: v1 plus noise (bench/release_day.py's models)."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from release_day import llama, save

    v1 = llama(hidden, layers)
    save(v1, directory / "v1")
    with torch.no_grad():
        for p in v1.parameters():
            p.add_(torch.randn_like(p) * 0.002)
    save(v1, directory / "v2")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--method", default="lora")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--root", type=Path, default=Path("/tmp/patchreg-bench-port"))
    parser.add_argument("--hidden", type=int, default=None, help="random Llama of this width (with --layers)")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--child", choices=["port", "retrain"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.root, args.method, args.steps)
        return

    from trainer.family import build_family, domain_rows, write_jsonl
    from trainer.loop import TrainArgs, train_to_patch

    args.root.mkdir(parents=True, exist_ok=True)
    if args.hidden and args.layers:
        random_family(args.root / "family", args.hidden, args.layers)
    else:
        build_family(args.root / "family")
    train, evals = domain_rows()
    write_jsonl(train, args.root / "train.jsonl")
    write_jsonl(evals, args.root / "eval.jsonl")
    source = args.root / "source.safetensors"
    train_args = TrainArgs(steps=args.steps, lr=3e-3)
    train_to_patch(
        args.root / "family" / "v1", args.root / "train.jsonl", args.method, None, source, args=train_args
    )
    results = {}
    for mode in ("port", "retrain"):
        cmd = [sys.executable, __file__, "--child", mode, "--root", str(args.root), "--method", args.method,
               "--steps", str(args.steps)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[mode] = json.loads(out)
    port, retrain = results["port"], results["retrain"]
    base_acc = port["base_accuracy"]
    gain_retrain = retrain["accuracy"] - base_acc
    recovery = (port["accuracy"] - base_acc) / gain_retrain if gain_retrain else float("nan")
    loss_gain = port["base_loss"] - retrain["loss"]
    loss_recovery = (port["base_loss"] - port["loss"]) / loss_gain if loss_gain else float("nan")
    rows = [
        ("port + evaluate", port),
        ("retrain + evaluate", retrain),
    ]
    print(f"method {args.method}, {args.steps} steps; v2: acc {base_acc:.3f}, loss {port['base_loss']:.4f}")
    print("| | wall s | peak RSS rise MiB (anon + file) | accuracy on v2 | loss on v2 |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows:
        cells = [f"{r['wall_s']:.2f}", f"{r['rise_mib']:.0f}", f"{r['accuracy']:.3f}", f"{r['loss']:.4f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")
    rise_ratio = retrain["rise_mib"] / port["rise_mib"]
    print(f"time ratio retrain/port: {retrain['wall_s'] / port['wall_s']:.1f}x")
    print(f"memory ratio (rise over baseline) retrain/port: {rise_ratio:.2f}x")
    print(f"recovery (ported - base)/(retrained - base): accuracy {recovery:.2f}, loss {loss_recovery:.2f}")
    print(f"portability score: {port['portability']:.3f}")


if __name__ == "__main__":
    main()
