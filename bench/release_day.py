"""Benchmark: release day at real sizes, as ratios measured in one run.

    .venv/bin/python bench/release_day.py --hidden 640 --layers 10 --patches 20 [--before REV] [--root DIR]

(a) release day: N LoRA patches (one per domain) on v1 of a random Llama (~60M parameters at
    the defaults), each evaluated on v1 beforehand (not timed); registering v2 queues
    `port_all`; one worker ports, evaluates and gates them all. Three arms, each in a fresh
    process (same python) with its own registry and a one-patch warm-up first: "before", the
    source tree of `--before` (default 6387a85, where the issue's numbers were measured;
    extracted with `git archive`, `--before none` skips it); "reload per job", this tree with
    `model_cache_bytes=0`; "resident", this tree's default cache. The checkpoints, patches and
    quiz are built once and shared. Reports seconds, patches/minute, model and tokenizer loads
    (counted at `from_pretrained`), mean seconds per port job, every job that did not succeed
    (then exits 1), and the ratios resident/before and resident/reload.
(b) merged export: peak anonymous and file-backed RSS of the streamed merge at three model sizes,
    each in a fresh process (`bench/rss.py`, sampled every millisecond), against the largest shard.
(c) patch switch on a resident model: our apply + revert vs PEFT's load_adapter + merge + unmerge
    of the same LoRA patch (the adapter exported by us), median of repeats.
Port vs retrain (PortLLM's comparison) is `bench/port.py`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
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


def build_release(root: Path, hidden: int, layers: int, n: int, distinct: bool) -> tuple[int, list[Path]]:
    """v1, v2 (v1 nudged), the quiz and `n` LoRA patch files, shared by every arm. The patches are
    written as format 1 (Linear targets only), which older trees read and newer ones still do.
    `distinct`: each domain gets its own quiz file (`quiz<i>.jsonl`, prompts tagged with the domain,
    so no two files have the same bytes); else every domain registers the one `quiz.jsonl`."""
    import torch

    from trainer.family import domain_rows, write_jsonl
    from trainer.patch.io import save_patch

    v1 = llama(hidden, layers)
    params = sum(p.numel() for p in v1.parameters())
    save(v1, root / "v1")
    with torch.no_grad():
        for p in v1.parameters():
            p.add_(torch.randn_like(p) * 0.002)
    save(v1, root / "v2")
    _, evals = domain_rows()
    write_jsonl(evals[:16], root / "quiz.jsonl")
    for i in range(n if distinct else 0):
        write_jsonl([{**r, "prompt": f"[d{i}] {r['prompt']}"} for r in evals[:16]], root / f"quiz{i}.jsonl")
    files = []
    for i in range(n):
        patch = lora_patch(v1, i)
        patch.format_version = 1
        files.append(save_patch(patch, root / f"p{i}.safetensors"))
    return params, files


def count_loads() -> dict[str, int]:
    """Count outermost `from_pretrained` calls of models and tokenizers from now on (any tree)."""
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    counts = {"model": 0, "tokenizer": 0}

    def counting(cls: Any, key: str) -> None:
        original, depth = cls.__dict__["from_pretrained"].__func__, [0]

        def counted(klass: Any, *args: Any, **kwargs: Any) -> Any:
            counts[key] += depth[0] == 0
            depth[0] += 1
            try:
                return original(klass, *args, **kwargs)
            finally:
                depth[0] -= 1

        cls.from_pretrained = classmethod(counted)

    counting(PreTrainedModel, "model")
    counting(PreTrainedTokenizerBase, "tokenizer")
    return counts


def release(
    home: Path, root: Path, files: list[Path], cache: int | None, counts: dict[str, int]
) -> dict[str, Any]:
    """One release day in registry `home`, with only the APIs every benchmarked tree has."""
    import dataclasses

    from sqlalchemy import select

    from registry import migrate
    from registry.db import make_engine, session_factory, transaction
    from registry.models import Job
    from registry.services import bases, datasets, domains, jobs, patches
    from registry.store import LocalStore
    from worker.runner import Worker, WorkerConfig

    home.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{home / 'registry.db'}")
    migrate.upgrade(engine)
    factory, store = session_factory(engine), LocalStore(home / "artifacts")
    has_cache = "model_cache_bytes" in {f.name for f in dataclasses.fields(WorkerConfig)}
    extra: dict[str, Any] = {"model_cache_bytes": cache} if has_cache else {}
    config = WorkerConfig(work_root=home / "work", poll_seconds=0.05, backoff_seconds=0, **extra)
    with transaction(factory) as s:
        bases.register_base(s, "bench:v1", str(root / "v1"))
        for i, path in enumerate(files):
            domains.create_domain(s, f"d{i}")
            own = root / f"quiz{i}.jsonl"  # written by build_release for --distinct-evals
            datasets.add_dataset(
                s, store, f"d{i}", "quiz", own if own.exists() else root / "quiz.jsonl", "eval"
            )
            patch = patches.register_patch(s, store, f"d{i}", "bench:v1", path, "imported")
            jobs.enqueue(s, "evaluate", {"patch_id": patch.id}, dedupe_key=f"evaluate:{patch.id}")
    # Before the release (not timed): each patch was evaluated on v1, as trained patches are,
    # so its port reuses the stored source numbers, as it would in production.
    Worker(factory, store, config).run(until_idle=True)
    with factory() as s:
        earlier = set(s.scalars(select(Job.id)))
    with transaction(factory) as s:
        bases.register_base(s, "bench:v2", str(root / "v2"), parent="bench:v1")
    loaded = dict(counts)
    worker = Worker(factory, store, config)
    started = time.perf_counter()
    ran = worker.run(until_idle=True)
    seconds = time.perf_counter() - started
    with factory() as s:
        rows = list(s.scalars(select(Job).order_by(Job.created_at)))
    engine.dispose()
    released = [j for j in rows if j.id not in earlier]
    ports = [j for j in released if j.kind == "port" and j.status == "succeeded"]
    port_seconds = [(j.finished_at - j.started_at).total_seconds() for j in ports]  # type: ignore[operator]
    outcomes = Counter(f"{(j.result or {}).get('verdict')}/{(j.result or {}).get('status')}" for j in ports)
    keys = ("id", "kind", "status", "attempts", "error")
    failed = [{k: getattr(j, k) for k in keys} for j in rows if j.status != "succeeded"]
    result = {
        "seconds": round(seconds, 1),
        "patches_per_min": round(len(files) / seconds * 60, 2),
        "model_loads": counts["model"] - loaded["model"],
        "tokenizer_loads": counts["tokenizer"] - loaded["tokenizer"],
        "jobs": ran,
        "jobs_by_kind": dict(Counter(f"{j.kind}:{j.status}" for j in released)),
        "retried_jobs": sum(j.attempts > 1 for j in rows),
        "port_seconds_mean": round(statistics.mean(port_seconds), 3) if port_seconds else None,
        "port_outcomes": dict(outcomes),
        "failed_jobs": failed,
    }
    models = getattr(worker, "models", None)  # trees with resident bases
    if models is not None:
        result["resident_cache_loads"] = models.loads
    return result


def arm(spec_json: str) -> None:
    """A subprocess's whole life: warm up on one patch, then the release, JSON on the last line."""
    spec = json.loads(spec_json)
    counts = count_loads()
    quiet()
    tree, home, root = Path(spec["tree"]), Path(spec["home"]), Path(spec["root"])
    import core
    import registry
    import trainer
    import worker

    for module in (core, registry, trainer, worker):
        assert Path(module.__file__ or "").resolve().is_relative_to(tree), (
            f"{module.__name__} from {module.__file__}"
        )
    files = [Path(f) for f in spec["files"]]
    warm = release(home / "warm-up", root, files[:1], spec["cache"], counts)
    result = release(home / "release", root, files, spec["cache"], counts)
    result["warm_up_failed_jobs"] = warm["failed_jobs"]
    print(ARM_MARK + json.dumps(result), flush=True)


ARM_MARK = "release-day-arm: "
# -c keeps the tree under test (the cwd) first on sys.path; this file only supplies the workload.
ARM_CHILD = (
    "import importlib.util as u, sys; s = u.spec_from_file_location('release_day_arm', sys.argv[1]); "
    "m = u.module_from_spec(s); s.loader.exec_module(m); m.arm(sys.argv[2])"
)


def run_arm(tree: Path, home: Path, root: Path, files: list[Path], cache: int | None) -> dict[str, Any]:
    spec = dict(tree=str(tree), home=str(home), root=str(root), files=list(map(str, files)), cache=cache)
    done = subprocess.run(
        [sys.executable, "-c", ARM_CHILD, str(Path(__file__).resolve()), json.dumps(spec)],
        cwd=tree,
        env={**os.environ, "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith(ARM_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"arm in {tree} exited {done.returncode}:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1].removeprefix(ARM_MARK))  # type: ignore[no-any-return]


def extract(repo: Path, rev: str, dest: Path) -> str:
    """The source tree of `rev` at `dest` (git archive: no worktree, no checkout); its full hash."""
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(repo), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(dest)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        raise RuntimeError(f"git archive {commit} failed")
    return commit


def release_day(
    root: Path, hidden: int, layers: int, n: int, before: str | None, distinct: bool = False
) -> dict[str, Any]:
    current = Path(__file__).resolve().parent.parent
    params, files = build_release(root, hidden, layers, n, distinct)
    results: dict[str, Any] = {"params": params, "patches": n, "eval_files": n if distinct else 1}
    arms: list[tuple[str, Path, int | None]] = []
    if before is not None:
        results["before_rev"] = extract(current, before, root / "before-tree")
        arms.append(("before", root / "before-tree", None))
    arms += [("reload per job", current, 0), ("resident", current, None)]
    for label, tree, cache in arms:
        results[label] = run_arm(tree, root / label.replace(" ", "-"), root, files, cache)
    ppm = {label: results[label]["patches_per_min"] for label, _, _ in arms}
    results["ratios"] = {
        f"resident/{label}": round(ppm["resident"] / ppm[label], 2) for label in ppm if label != "resident"
    }
    results["failed_jobs"] = sum(
        len(results[a]["failed_jobs"]) + len(results[a]["warm_up_failed_jobs"]) for a, _, _ in arms
    )
    return results


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
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.rss",
                "merge",
                str(base),
                str(patch),
                str(root / f"merged{hidden}"),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        peak = json.loads(done.stdout)
        rows.append(
            {
                "checkpoint_mb": round(sum(p.stat().st_size for p in shards) / 1e6),
                "largest_shard_mb": round(max(p.stat().st_size for p in shards) / 1e6),
                "patch_mb": round(patch.stat().st_size / 1e6, 1),
                "peak_anon_rss_mb": round(peak["anon_bytes"] / 1e6),
                "peak_file_rss_mb": round(peak["file_bytes"] / 1e6),
                "seconds": round(peak["seconds"], 1),
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


def quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def main() -> None:
    quiet()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=640)
    parser.add_argument("--layers", type=int, default=10)
    parser.add_argument("--patches", type=int, default=20)
    parser.add_argument("--before", default="6387a85", help="revision for the 'before' arm, or 'none'")
    parser.add_argument(
        "--distinct-evals", action="store_true", help="each domain its own quiz bytes (default: one shared)"
    )
    parser.add_argument("--merge-sizes", default="512x4,1024x8,1536x16", help="HIDDENxLAYERS,... for (b)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--sections", default="release,switch,merge", help="which of release,switch,merge")
    args = parser.parse_args()
    root = (args.root or Path(tempfile.mkdtemp(prefix="patchreg-release-day-"))).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.merge_sizes.split(",")]
    sections = set(args.sections.split(","))
    report: dict[str, Any] = {}
    if "release" in sections:
        before = None if args.before.lower() == "none" else args.before
        report["release_day"] = release_day(
            root, args.hidden, args.layers, args.patches, before, args.distinct_evals
        )
    if "switch" in sections:
        if not (root / "v1").exists():
            save(llama(args.hidden, args.layers), root / "v1")
        report["patch_switch"] = patch_switch(root, args.hidden, args.layers, args.repeats)
    if "merge" in sections:
        report["merged_export"] = merged_export(root, sizes)  # type: ignore[arg-type]
    print(json.dumps(report, indent=2))
    failed = report.get("release_day", {}).get("failed_jobs", 0)
    if failed:
        sys.exit(f"release day: {failed} job(s) did not succeed (see failed_jobs above)")


if __name__ == "__main__":
    main()
