"""Benchmark the training methods: trainable params, peak memory, step time, tokens/s.

    .venv/bin/python bench/methods.py --config tiny|small|1b [--steps N] [--markdown]

Every method runs in a fresh subprocess so that its peak memory is its own: on CUDA
`torch.cuda.max_memory_allocated`, on CPU the peak RSS sampled every 5 ms while training,
and its rise over the RSS right before training (the training overhead: activations, grads,
optimizer state; the model and the imports are in the baseline).
Weights are random; the data is real English text packed to exactly `seq` tokens per row.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = {
    # name: (TinyConfig kwargs, batch, seq)
    "tiny": ({}, 4, 64),
    "small": (
        dict(
            vocab_size=2048,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=8,
            num_key_value_heads=4,
            max_position_embeddings=512,
        ),
        4,
        256,
    ),
    "1b": (  # Llama-3.2-1B-like shapes with a 32k vocabulary: ~1.0B parameters
        dict(
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=2048,
        ),
        8,
        1024,
    ),
}
RUNS = {
    # label: (method, --set overrides, alewr?)
    "full": ("full", [], False),
    "lora r=16 (7 proj)": ("lora", ["r=16"], False),
    "s2ft ~1%": ("s2ft", [], False),
    "s2ft ~1% (stock autograd)": ("s2ft", ["backprop=autograd"], False),
    "propulsion k=15": ("propulsion", [], False),
    "s2ft ~1% + alewr": ("s2ft", [], True),
}


def _rss_mb() -> float:
    """Current resident set size (Linux /proc), in MiB."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


class PeakRss:
    """Samples the RSS every 5 ms in a thread: the peak *during* training, not at import."""

    def __init__(self) -> None:
        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _rows(tokenizer, seq: int, n: int) -> list[dict[str, str]]:
    """Rows that tokenize to at least `seq` tokens (truncated to exactly `seq` by the loop)."""
    from trainer.tiny import corpus_paragraphs

    text = " ".join(corpus_paragraphs()[:400])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    step = seq + 8
    return [{"text": tokenizer.decode(ids[i * step : (i + 1) * step])} for i in range(n)]


def run_one(config: str, label: str, steps: int, importance: str | None) -> dict:
    """Train one method in this process and report its numbers (called in a fresh subprocess)."""
    import torch

    from trainer.loop import TrainArgs, train
    from trainer.methods import get_method, parse_overrides
    from trainer.regularizers import regularization
    from trainer.tiny import TinyConfig, build_model, build_tokenizer

    shape, batch, seq = CONFIGS[config]
    method, overrides, alewr = RUNS[label]
    reg = regularization("alewr", importance=importance) if alewr else None
    cuda = torch.cuda.is_available()
    tokenizer = build_tokenizer(512)
    rows = _rows(tokenizer, seq, batch * (steps + 1))
    model = build_model(TinyConfig(**shape), seed=0)
    if cuda:
        model.cuda()
        torch.cuda.reset_peak_memory_stats()
    base_rss, base_cuda = _rss_mb(), (torch.cuda.memory_allocated() / 2**20 if cuda else 0.0)
    args = TrainArgs(steps=steps, batch_size=batch, max_length=seq, lr=1e-4)
    with PeakRss() as rss:
        result = train(
            model,
            tokenizer,
            rows,
            get_method(method),
            parse_overrides(method, overrides),
            args,
            regularization=reg,
        )
    timed = result.step_seconds[2:] or result.step_seconds
    median = statistics.median(timed)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else rss.peak
    return {
        "label": label,
        "trainable": result.trainable_params,
        "total": sum(p.numel() for p in model.parameters()),
        "median_step_s": median,
        "tokens_per_s": batch * seq / median,
        "peak_mb": peak,
        "overhead_mb": peak - (base_cuda if cuda else base_rss),
        "device": torch.cuda.get_device_name() if cuda else "cpu",
    }


def _importance(config: str, directory: Path) -> str:
    """One ALEWR importance file for the base (computed once, reused by the alewr run)."""
    from trainer.regularizers.alewr.importance import compute_importance
    from trainer.tiny import TinyConfig, build_tokenizer, save_tiny_model

    shape, batch, seq = CONFIGS[config]
    model_dir = save_tiny_model(directory / "model", TinyConfig(**shape), seed=0)
    rows = _rows(build_tokenizer(512), seq, batch * 4)
    out = compute_importance(
        model_dir, rows, out_path=directory / "omega.safetensors", steps=3, max_length=seq
    )
    return str(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", choices=sorted(CONFIGS), default="tiny")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--importance", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.config, args.one, args.steps, args.importance)))
        return
    if args.config == "1b":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--config 1b needs a CUDA GPU")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        importance = _importance(args.config, Path(tmp))
        for label in RUNS:
            cmd = [
                sys.executable,
                __file__,
                "--config",
                args.config,
                "--steps",
                str(args.steps),
                "--one",
                label,
            ]
            out = subprocess.run(
                [*cmd, "--importance", importance], check=True, capture_output=True, text=True
            )
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"  done: {label}", file=sys.stderr)
    print(table(results, args.config))


def table(results: list[dict], config: str) -> str:
    by = {r["label"]: r for r in results}
    lora, full, s2 = by["lora r=16 (7 proj)"], by["full"], by["s2ft ~1%"]
    mem = "peak GPU MiB" if results[0]["device"] != "cpu" else "peak RSS MiB"
    lines = [
        f"config `{config}`, device {results[0]['device']}, {results[0]['total']:,} params",
        "",
        f"| method | trainable params | % | {mem} | training overhead MiB | median step s | tokens/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['label']} | {r['trainable']:,} | {100 * r['trainable'] / r['total']:.3f} "
            f"| {r['peak_mb']:.0f} | {r['overhead_mb']:.1f} | {r['median_step_s']:.4f} "
            f"| {r['tokens_per_s']:,.0f} |"
        )
    checks = [
        ("s2ft overhead ≤ 0.9× lora", s2["overhead_mb"] <= 0.9 * lora["overhead_mb"]),
        ("s2ft step time ≤ 0.9× lora", s2["median_step_s"] <= 0.9 * lora["median_step_s"]),
        ("s2ft overhead ≤ 1/3 full", s2["overhead_mb"] <= full["overhead_mb"] / 3),
        ("propulsion params ≤ 1/10 lora", by["propulsion k=15"]["trainable"] <= lora["trainable"] / 10),
        ("alewr step ≤ 1.15× s2ft", by["s2ft ~1% + alewr"]["median_step_s"] <= 1.15 * s2["median_step_s"]),
    ]
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
