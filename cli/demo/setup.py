"""The demo's set-up steps: check the registry is the demo's own, build the family, write the data,
register, queue. Each step is idempotent, so running the demo again resumes where it stopped."""

from __future__ import annotations

import json
import shlex
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from tqdm import tqdm

from cli.context import AppContext
from cli.demo.plan import DOMAIN, DOMAIN_DESCRIPTION, EVAL, FAMILY, GENERAL, QUICK, TRAIN, V1, Plan
from core.errors import InvalidState, NotFound
from registry.schemas import BaseVersionRead
from registry.services import bases, datasets, domains, training

if TYPE_CHECKING:
    from trainer.family import Family


def command(app: AppContext, *args: str) -> str:
    """A command line to copy: it names the demo's home even when it came from $PATCHREG_HOME
    (as under `make demo`), so that it works in any shell."""
    home = app.settings.home.expanduser().resolve()
    if "--home" in app.global_args or home == (Path.home() / ".patchreg").resolve():
        return app.command_line(*args)
    return shlex.join(["patchreg", "--home", str(home), *app.global_args, *args])


def step(text: str) -> None:
    click.echo(click.style(f"==> {text}", fg="cyan", bold=True))


def note(text: str) -> None:
    click.echo(f"    {text}")


def check_registry(app: AppContext, plan: Plan, models: Path) -> None:
    """Refuse a registry that holds anything but an earlier run of this same demo."""
    fresh = "patchreg --home /tmp/patchreg-demo" + (" --db NEW_URL" if "--db" in app.global_args else "")
    fresh += " demo" + (" --quick" if plan.name == "quick" else "")
    with app.transaction() as s:
        others = [b.ref for b in bases.list_bases(s) if b.family != FAMILY]
        others += [f"domain {d.name}" for d in domains.list_domains(s) if d.name != DOMAIN]
        try:
            v1 = bases.show_base(s, V1)
        except NotFound:
            v1 = None
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise InvalidState(
            f"this registry already holds {shown}; the demo only runs in a registry of its own: `{fresh}`"
        )
    expected = str((models / "v1").resolve())
    if v1 is not None and v1.source_uri != expected:
        quick_dir = str((QUICK.models_dir(models.parent.parent) / "v1").resolve())
        if v1.source_uri == quick_dir:
            again = command(app, "demo", "--quick")
            why = f"an earlier `{again}`; run it again to see that run"
        elif plan.name == "quick":
            why = f"an earlier full `{command(app, 'demo')}`; run it again to see that run"
        else:
            why = f"a model from {v1.source_uri}"
        raise InvalidState(f"{V1} in this registry comes from {why}, or use a fresh home: `{fresh}`")


@contextmanager
def ticker(description: str) -> Iterator[None]:
    """A line on stderr that counts the seconds of work that reports no steps of its own."""
    bar = tqdm(total=None, desc=description, bar_format="    {desc} {elapsed}", leave=False, disable=None)
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        bar.close()


def build_models(plan: Plan, models: Path) -> Family:
    """The tiny family under `models` (kept when already built with the same spec)."""
    from trainer.family import build_family

    spec = plan.family
    step(
        f"building the tiny model family in {models}: v1 pretrained {spec.v1_steps} steps on pydoc "
        f"topic text, v2 = v1 trained {spec.v2_steps} steps further, v3 wider"
    )
    stamp = models / "v1" / "patchreg-family.json"
    before = stamp.stat().st_mtime_ns if stamp.exists() else None
    started = time.perf_counter()
    with ticker("pretraining v1, v2, v3"):
        family = build_family(models, spec)
    if before is not None and stamp.stat().st_mtime_ns == before:
        note("already built: reused")
        return family
    notes = {v: json.loads((models / v / "patchreg-family.json").read_text()) for v in ("v1", "v2")}
    v1_losses, v2_losses = notes["v1"]["losses"], notes["v2"]["losses"]
    note(
        f"built in {time.perf_counter() - started:.1f}s: v1's pretraining loss {v1_losses[0]:.2f} -> "
        f"{v1_losses[-1]:.2f}; v2's {len(v2_losses)} further steps: {v2_losses[0]:.2f} -> {v2_losses[-1]:.2f}"
    )
    return family


def register(app: AppContext, ref: str, directory: Path, parent: str | None = None) -> BaseVersionRead | None:
    """Register `ref` unless it is (None when it already was)."""
    step(f"patchreg base register {ref} {directory}" + (f" --parent {parent}" if parent else ""))
    with app.transaction() as s:
        try:
            bases.show_base(s, ref)
        except NotFound:
            read = bases.register_base(s, ref, str(directory), parent=parent)
        else:
            note(f"{ref} is already registered")
            return None
    note(
        f"registered {ref}: {read.model_type}, {read.num_parameters:,} parameters, "
        f"weights sha256:{read.weights_digest[:12]}"
        + (f"; queued job {read.port_all_job} to port every patch onto it" if read.port_all_job else "")
    )
    return read


def write_data(plan: Plan, where: Path) -> dict[str, tuple[Path, str]]:
    """The domain's three JSONL files: {name: (file, role)}."""
    from trainer.family import PRETRAIN_SHARE, domain_rows, write_jsonl
    from trainer.tiny import corpus_paragraphs

    where.mkdir(parents=True, exist_ok=True)
    train_rows, eval_rows = domain_rows(plan.n_train, plan.n_eval)
    paragraphs = corpus_paragraphs()
    pretraining = paragraphs[: int(len(paragraphs) * PRETRAIN_SHARE)]
    stride = max(1, len(pretraining) // plan.n_general)
    general_rows = [{"text": p[:400]} for p in pretraining[::stride][: plan.n_general]]
    return {
        TRAIN: (write_jsonl(train_rows, where / "train.jsonl"), "train"),
        EVAL: (write_jsonl(eval_rows, where / "eval.jsonl"), "eval"),
        GENERAL: (write_jsonl(general_rows, where / "general.jsonl"), "general"),
    }


def add_domain(app: AppContext, plan: Plan, data_dir: Path) -> None:
    step(f'patchreg domain create {DOMAIN} --description "{DOMAIN_DESCRIPTION}"')
    with app.transaction() as s:
        existing = {d.name for d in domains.list_domains(s)}
        if DOMAIN in existing:
            note(f"domain {DOMAIN} already exists")
        else:
            domains.create_domain(s, DOMAIN, DOMAIN_DESCRIPTION)
        have = {d.name for d in datasets.list_datasets(s, DOMAIN)}
    files = write_data(plan, data_dir)
    for name, (path, role) in files.items():
        step(f"patchreg dataset add {DOMAIN} {name} {path} --role {role}")
        if name in have:
            note(f"dataset {DOMAIN}/{name} already exists")
            continue
        with app.transaction() as s:
            ds = datasets.add_dataset(s, app.store, DOMAIN, name, path, role)
        what = {
            "train": "held-out pydoc paragraphs to learn",
            "eval": "two-choice continuations of those paragraphs (which ending is the paragraph's own?)",
            "general": "pretraining-like text: ALEWR measures which weights matter on it",
        }[role]
        note(f"{ds.rows} rows, sha256:{ds.digest[:12]}: {what}")


def queue_trainings(app: AppContext, plan: Plan) -> None:
    for t in plan.trainings:
        step(plan.train_command(t))
        with app.transaction() as s:
            job, created = training.enqueue_train(
                s,
                domain=DOMAIN,
                base=V1,
                method=t.method,
                overrides=list(t.overrides),
                regularize=t.regularize,
                args=plan.args,
                dedupe_key=f"demo:train:{t.label}",
            )
        note(f"queued job {job.id}" if created else f"already queued as job {job.id} ({job.status})")
