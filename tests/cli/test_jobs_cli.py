"""`patchreg train`, `jobs` and `worker` as a user meets them, on SQLite and PostgreSQL, with real
(tiny) training runs."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from registry.db import make_engine, session_factory, transaction
from registry.models import Patch
from registry.store import LocalStore
from tests.cli.conftest import Patchreg
from tests.helpers import NothingWritten
from trainer.tiny import corpus_paragraphs
from worker.runner import Worker, WorkerConfig

TRAIN = ("train", "med", "--base", "tiny:v1", "--method", "lora")


@pytest.fixture
def ready(patchreg: Patchreg, make_tiny_model: Callable[..., Path], tmp_path: Path) -> Patchreg:
    """tiny:v1, domain med with a 16-row train dataset, and domain bare without any dataset."""
    patchreg("base", "register", "tiny:v1", str(make_tiny_model(seed=0)))
    patchreg("domain", "create", "med")
    patchreg("domain", "create", "bare")
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"text": p[:160]}) + "\n" for p in corpus_paragraphs()[:16]))
    patchreg("dataset", "add", "med", "notes", str(data), "--role", "train")
    return patchreg


def patch_rows(db_url: str) -> list[tuple[str, str | None]]:
    engine = make_engine(db_url)
    try:
        with transaction(session_factory(engine)) as s:
            return [(p.id, p.job_id) for p in s.scalars(select(Patch))]
    finally:
        engine.dispose()


def test_train_queues_a_job_and_runs_nothing(ready: Patchreg, db_url: str) -> None:
    job = ready.json(*TRAIN, "--steps", "2", "--set", "r=4", "--lr", "0.01")
    assert (job["kind"], job["status"], job["attempts"]) == ("train", "queued", 0)
    p = job["payload"]
    assert (p["domain"], p["base"], p["method"], p["dataset"]) == ("med", "tiny:v1", "lora", "notes")
    assert p["overrides"] == ["r=4"] and p["args"] == {"steps": 2, "lr": 0.01}

    human = ready(*TRAIN).stdout
    (line,) = human.splitlines()
    assert line.startswith("queued job ") and line.endswith(": train med on tiny:v1 with lora")
    second = line.split()[2].rstrip(":")

    listed = ready.json("jobs", "list")
    assert [(j["id"], j["status"]) for j in listed] == [(second, "queued"), (job["id"], "queued")]
    assert patch_rows(db_url) == []


def test_bad_train_requests_print_one_error_line_and_write_nothing(ready: Patchreg, db_url: str) -> None:
    cases = [
        (["train", "nowhere", "--base", "tiny:v1", "--method", "lora"], "no domain named 'nowhere'"),
        (["train", "med", "--base", "tiny:v9", "--method", "lora"], "no base version tiny:v9"),
        ([*TRAIN, "--set", "nope=1"], "unknown setting for method 'lora'"),
        ([*TRAIN, "--set", "r8"], "expected key=value"),
        (
            ["train", "med", "--base", "tiny:v1", "--method", "full", "--regularize", "alewr"],
            "domain med has no general dataset",
        ),
        ([*TRAIN, "--regularize", "alewr"], "does not support --regularize alewr (use full or s2ft)"),
        (["train", "bare", "--base", "tiny:v1", "--method", "lora"], "domain bare has no train dataset"),
        ([*TRAIN, "--dataset", "missing"], "missing"),
    ]
    engine = make_engine(db_url)
    try:
        for args, message in cases:
            with NothingWritten(engine, ready.home / "artifacts"):
                result = ready(*args, ok=False)
            assert result.exit_code == 1, (args, result.output)
            assert result.stdout == ""
            (line,) = result.stderr.strip().splitlines()
            assert line.startswith("error: ") and message in line, (args, line)
    finally:
        engine.dispose()
    assert ready.json("jobs", "list") == []
    # click's own checks are usage errors
    assert ready(*TRAIN, "--steps", "0", ok=False).exit_code == 2
    assert ready("train", "med", "--base", "tiny:v1", "--method", "qlora", ok=False).exit_code == 2


def test_jobs_list_show_cancel_retry(ready: Patchreg) -> None:
    first = ready.json(*TRAIN)["id"]
    second = ready.json(*TRAIN, "--method", "s2ft")["id"]

    lines = ready("jobs", "list").stdout.splitlines()
    assert lines[0].split()[:5] == ["ID", "KIND", "STATUS", "ATTEMPTS", "WHAT"]
    assert lines[1].split()[:4] == [second, "train", "queued", "0/3"]
    assert "med on tiny:v1 with s2ft" in lines[1] and "med on tiny:v1 with lora" in lines[2]
    assert len(lines) == 3
    assert ready("jobs", "list", "--kind", "evaluate").stdout.strip() == "(no jobs)"
    assert ready.json("jobs", "list", "--status", "queued", "--limit", "1")[0]["id"] == second

    shown = ready("jobs", "show", first[:6]).stdout
    assert first in shown and "med on tiny:v1 with lora" in shown and "0/3" in shown
    assert any(line.split() == ["status", "queued"] for line in shown.splitlines())
    assert ready.json("jobs", "show", first)["payload"]["method"] == "lora"

    assert ready("jobs", "cancel", first).stdout.strip() == f"cancelled job {first} (train)"
    assert [j["id"] for j in ready.json("jobs", "list", "--status", "cancelled")] == [first]
    refused = ready("jobs", "cancel", first, ok=False)
    assert refused.exit_code == 1 and refused.stderr.strip() == f"error: job {first} is already cancelled"

    again = ready.json("jobs", "retry", first)
    assert (again["id"], again["status"], again["attempts"]) == (first, "queued", 0)
    assert ready.json("jobs", "cancel", second)["status"] == "cancelled"
    assert ready("jobs", "retry", second).stdout.strip() == f"queued job {second} (train) again"
    refused = ready("jobs", "retry", second, ok=False)
    assert refused.exit_code == 1 and "only failed or cancelled jobs can be retried" in refused.stderr
    assert {j["status"] for j in ready.json("jobs", "list")} == {"queued"}

    for bad, message in (("0000", "no job with id 0000"), ("zz", "invalid job id 'zz'")):
        result = ready("jobs", "show", bad, ok=False)
        assert result.exit_code == 1 and result.stderr.strip() == result.stderr.strip().splitlines()[0]
        assert result.stderr.startswith("error: ") and message in result.stderr
    assert ready("jobs", "list", "--status", "done", ok=False).exit_code == 2


def test_worker_runs_a_train_job_then_its_evaluation(ready: Patchreg, db_url: str) -> None:
    job = ready.json(*TRAIN, "--steps", "2", "--lr", "0.01")["id"]

    out = ready("worker", "--once", "--device", "cpu", "--name", "w-test").stdout
    assert "worker w-test on cpu" in out
    assert f"job {job} train: med on tiny:v1 with lora (attempt 1/3)" in out
    assert f"job {job} train: succeeded in " in out
    assert out.rstrip().endswith("worker w-test: ran 1 job")

    done = ready.json("jobs", "show", job)
    assert (done["status"], done["worker"], done["attempts"]) == ("succeeded", "w-test", 1)
    result = done["result"]
    assert result["train_steps"] == 2 and patch_rows(db_url) == [(result["patch_id"], job)]
    evaluation = ready.json("jobs", "show", result["evaluate_job"])
    assert (evaluation["kind"], evaluation["status"]) == ("evaluate", "queued")
    assert evaluation["payload"] == {"patch_id": result["patch_id"]}
    shown = ready("jobs", "show", job).stdout
    assert "result:" in shown and result["patch_id"] in shown

    out = ready("worker", "--until-idle", "--device", "cpu").stdout
    assert f"job {evaluation['id']} evaluate: succeeded" in out and "ran 1 job" in out
    assert {(j["kind"], j["status"]) for j in ready.json("jobs", "list")} == {
        ("train", "succeeded"),
        ("evaluate", "succeeded"),
    }
    # nothing left: the next idle worker exits at once having run nothing
    assert ready("worker", "--until-idle").stdout.rstrip().endswith("ran 0 jobs")


@pytest.fixture
def background_worker(ready: Patchreg, db_url: str, tmp_path: Path) -> Iterator[Worker]:
    """A worker thread on the same registry, training jobs only, until the test ends."""
    engine = make_engine(db_url)
    config = WorkerConfig(
        work_root=tmp_path / "bg-work", name="bg", device="cpu", poll_seconds=0.1, kinds=("train",)
    )
    worker = Worker(session_factory(engine), LocalStore(ready.home / "artifacts"), config)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop_requested.set()
        thread.join(timeout=60)
        engine.dispose()
    assert not thread.is_alive()


def test_train_wait_follows_the_job_until_its_patch(
    ready: Patchreg, db_url: str, background_worker: Worker
) -> None:
    out = ready(*TRAIN, "--steps", "2", "--lr", "0.01", "--wait").stdout
    lines = out.splitlines()
    assert lines[0].startswith("queued job ")
    job = lines[0].split()[2].rstrip(":")
    fields = dict(line.split(None, 1) for line in lines[1:])
    assert fields["job"] == f"{job} succeeded"
    ((patch_id, made_by),) = patch_rows(db_url)
    assert fields["patch"] == patch_id and made_by == job
    assert "->" in fields["loss"]
    assert ready.json("jobs", "show", job)["worker"] == "bg"


def test_worker_usage_errors(ready: Patchreg, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    job = ready.json(*TRAIN)["id"]
    both = ready("worker", "--once", "--until-idle", ok=False)
    assert both.exit_code == 2 and "--once and --until-idle exclude each other" in both.stderr

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on this CPU-only machine
    cuda = ready("worker", "--once", "--device", "cuda", ok=False)
    assert cuda.exit_code == 2 and "--device cuda, but this machine has no CUDA device" in cuda.stderr

    kinds = ready("worker", "--once", "--kinds", "train,deploy", ok=False)
    assert kinds.exit_code == 2 and "unknown job kind 'deploy'" in kinds.stderr
    assert ready("worker", "--once", "--lease", "0", ok=False).exit_code == 2
    # none of them claimed anything
    shown = ready.json("jobs", "show", job)
    assert (shown["status"], shown["attempts"], shown["worker"]) == ("queued", 0, None)


def test_jobs_show_gives_the_one_line_error_and_the_traceback_with_debug(
    patchreg: Patchreg, db_url: str
) -> None:
    from registry.services import jobs as jobs_service
    from worker.runner import _describe

    engine = make_engine(db_url)
    try:
        factory = session_factory(engine)
        with transaction(factory, "test") as s:
            job, _ = jobs_service.enqueue(s, "evaluate", {"patch_id": "abcd"})
        with transaction(factory, "worker:w") as s:
            jobs_service.claim(s, "w", lease_seconds=60, kinds=("evaluate",))
        try:
            raise KeyError("/srv/secret/x")
        except KeyError as exc:
            error = _describe(exc)
        with transaction(factory, "worker:w") as s:
            jobs_service.fail(s, job.id, "w", error, retry=False)
    finally:
        engine.dispose()

    plain = patchreg("jobs", "show", job.id).stdout
    assert "error: internal_error: unexpected KeyError in the worker" in plain
    assert "/srv/secret" not in plain and 'File "' not in plain
    shown = patchreg.json("jobs", "show", job.id)
    assert shown["error_detail"] is None and "\n" not in shown["error"]
    debug = patchreg("jobs", "show", job.id, "--debug").stdout
    assert "/srv/secret/x" in debug and 'File "' in debug
    assert "/srv/secret/x" in patchreg.json("jobs", "show", job.id, "--debug")["error_detail"]
