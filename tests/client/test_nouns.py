"""Every noun of the API through the client, against a real server on SQLite and PostgreSQL: the
results are the registry's own schemas, filled in."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from client import Client, NewToken, ResolvedPatch
from core.errors import InvalidState, Unauthorized
from registry.schemas import (
    BaseVersionDetail,
    BaseVersionRead,
    CompatMatrix,
    JobRead,
    Lineage,
    PatchRead,
    VerdictRead,
)
from tests.client.conftest import Server

TRAIN_ROWS = [{"text": f"the patient shows symptom {i}"} for i in range(8)]
EVAL_ROWS = [{"prompt": f"q{i}", "choices": ["a", "b"], "answer": 0} for i in range(4)]


def jsonl(tmp_path: Path, name: str, rows: list[dict[str, object]]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_health_and_bases(client: Client, make_tiny_model, uid: str) -> None:
    assert client.health()["status"] == "ok"
    refs = {b.ref for b in client.list_bases(family="tiny")}
    assert {"tiny:v1", "tiny:v2", "tiny:v3"} <= refs
    v2 = client.show_base("tiny:v2")
    assert (
        isinstance(v2, BaseVersionDetail) and v2.parent == "tiny:v1" and v2.architecture.model_type == "llama"
    )

    made = client.register_base(f"fam{uid}:a", str(make_tiny_model(seed=0)))
    assert isinstance(made, BaseVersionRead) and made.ref == f"fam{uid}:a" and made.port_all_job is None
    child = client.register_base(f"fam{uid}:b", str(make_tiny_model(seed=1)), parent=f"fam{uid}:a")
    assert child.port_all_job is not None  # a version with a parent queues its porting
    assert client.show_job(child.port_all_job).kind == "port_all"


def test_domains_and_datasets(client: Client, uid: str, tmp_path: Path) -> None:
    made = client.create_domain(f"law{uid}", "contracts")
    assert (made.name, made.description) == (f"law{uid}", "contracts")
    assert f"law{uid}" in {d.name for d in client.list_domains()}

    file = jsonl(tmp_path, "train.jsonl", TRAIN_ROWS)
    train = client.upload_dataset(f"law{uid}", "train", file, "train", available_until=date(2999, 1, 1))
    assert (train.rows, train.role, train.available_until, train.available) == (
        8,
        "train",
        date(2999, 1, 1),
        True,
    )
    assert train.digest == hashlib.sha256(file.read_bytes()).hexdigest()
    client.upload_dataset(f"law{uid}", "eval", jsonl(tmp_path, "eval.jsonl", EVAL_ROWS), "eval")
    assert {d.name: d.role for d in client.list_datasets(f"law{uid}")} == {"train": "train", "eval": "eval"}


def test_patches_upload_show_status_download(
    client: Client, domain: str, patch_file: Path, tmp_path: Path
) -> None:
    patch = client.upload_patch(patch_file, domain, "tiny:v1")
    assert isinstance(patch, PatchRead) and patch.origin == "imported" and patch.status == "candidate"
    assert patch.digest == hashlib.sha256(patch_file.read_bytes()).hexdigest()
    assert client.show_patch(patch.id[:8]) == patch  # a unique prefix works
    assert [p.id for p in client.list_patches(domain=domain, base="tiny:v1")] == [patch.id]

    validated = client.set_status(patch.id, "validated", "checked by hand")
    assert validated.status == "validated"
    assert [p.id for p in client.list_patches(domain=domain, status="validated")] == [patch.id]

    into_dir = client.download_patch(patch.id, tmp_path)
    assert into_dir == tmp_path / f"{patch.id}.safetensors"
    assert into_dir.read_bytes() == patch_file.read_bytes()
    named = client.download_patch(patch.id, tmp_path / "sub" / "p.safetensors")
    assert named.read_bytes() == patch_file.read_bytes()
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["p.safetensors"]  # no temp left

    events = client.audit(subject=patch.id)
    assert [(e.action, e.actor) for e in events] == [
        ("patch.status", "token:admin"),
        ("patch.imported", "token:admin"),
    ]


def test_peft_upload_lineage_evaluations(client: Client, domain: str, peft_adapter: Path) -> None:
    patch = client.upload_patch(peft_adapter, domain, "tiny:v1")
    assert patch.method == "lora" and patch.origin == "imported"
    tree = client.lineage(patch.id)
    assert isinstance(tree, Lineage) and tree.focus == patch.id and tree.root.patch.id == patch.id
    assert tree.root.children == []
    assert client.evaluations(patch.id) == []


def test_resolve_fetch_and_aliases(client: Client, domain: str, patch_file: Path, tmp_path: Path) -> None:
    first = client.upload_patch(patch_file, domain, "tiny:v1")
    client.set_status(first.id, "validated", "good")
    chosen = client.resolve(domain, "tiny:v1")
    assert isinstance(chosen, ResolvedPatch) and chosen.patch.id == first.id and chosen.why
    assert chosen.download_url.endswith(f"/v1/patches/{first.id}/download")

    out = client.fetch(domain, "tiny:v1", tmp_path / "native")
    assert sorted(p.name for p in out.iterdir()) == ["patch.safetensors", "patchreg.json"]
    assert (out / "patch.safetensors").read_bytes() == patch_file.read_bytes()
    manifest = json.loads((out / "patchreg.json").read_text())
    assert (manifest["patch_id"], manifest["format"]) == (first.id, "native")
    assert [p.name for p in tmp_path.iterdir()] == ["native"]  # the spooled tar is gone

    alias = client.set_alias(domain, "tiny:v1", "production", first.id)
    assert (alias.name, alias.patch_id, alias.base) == ("production", first.id, "tiny:v1")
    assert [(a.name, a.patch_id) for a in client.list_aliases(domain)] == [("production", first.id)]
    assert "production" in client.resolve(domain, "tiny:v1").why
    client.delete_alias(domain, "tiny:v1", "production")
    assert client.list_aliases(domain) == []


def test_compat_matrix_and_port(client: Client, domain: str, patch_file: Path) -> None:
    patch = client.upload_patch(patch_file, domain, "tiny:v1")
    fits = client.compat(patch.id, "tiny:v2")
    assert isinstance(fits, VerdictRead) and fits.verdict == "compatible" and fits.source_base == "tiny:v1"
    unrecorded = client.matrix("tiny", domain=domain).rows[0].cells
    assert [c.state for c in unrecorded] == ["source", "not checked", "not checked"]  # a read stores nothing
    assert client.record_compat(patch.id, "tiny:v2").verdict == "compatible"
    wider = client.record_compat(patch.id, "tiny:v3")
    assert wider.verdict == "incompatible" and any(r.severity == "error" for r in wider.reasons)

    grid = client.matrix("tiny", domain=domain)
    assert isinstance(grid, CompatMatrix) and grid.versions == ["tiny:v1", "tiny:v2", "tiny:v3"]
    assert [(c.version, c.state) for c in grid.rows[0].cells] == [
        ("tiny:v1", "source"),
        ("tiny:v2", "compatible"),
        ("tiny:v3", "incompatible"),
    ]

    job = client.port(patch.id, "tiny:v2")
    assert isinstance(job, JobRead) and (job.kind, job.status) == ("port", "queued")
    assert client.port(patch.id, "tiny:v2").id == job.id  # queued once


def test_jobs_train_follow_cancel_retry(client: Client, domain: str, tmp_path: Path) -> None:
    client.upload_dataset(domain, "train", jsonl(tmp_path, "t.jsonl", TRAIN_ROWS), "train")
    job = client.train(domain, "tiny:v1", "lora", overrides=["r=2"], args={"steps": 2})
    assert (job.kind, job.status, job.payload["method"]) == ("train", "queued", "lora")
    assert job.id in {j.id for j in client.list_jobs(kind="train", status="queued")}

    with pytest.raises(TimeoutError):  # no worker here: it stays queued
        client.follow_job(job.id, poll_seconds=0.05, timeout=0.3)

    seen: list[str] = []
    canceller = threading.Timer(0.4, lambda: client.cancel_job(job.id))
    canceller.start()
    started = time.monotonic()
    done = client.follow_job(job.id, poll_seconds=0.05, timeout=30, on_change=lambda j: seen.append(j.status))
    canceller.join()
    assert done.status == "cancelled" and seen == ["queued", "cancelled"]
    assert time.monotonic() - started < 10

    with pytest.raises(InvalidState):
        client.cancel_job(job.id)
    again = client.retry_job(job.id)
    assert (again.id, again.status, again.attempts) == (job.id, "queued", 0)
    client.cancel_job(job.id)


def test_tokens(client: Client, server: Server, uid: str) -> None:
    made = client.create_token(f"ci{uid}", ["read"])
    assert isinstance(made, NewToken) and made.token.scopes == ["read"] and made.secret.startswith("prt_")
    assert f"ci{uid}" in {t.name for t in client.list_tokens()}
    with Client(server.url, made.secret) as reader:
        assert reader.list_domains() is not None
        revoked = client.revoke_token(f"ci{uid}")
        assert revoked.revoked_at is not None
        with pytest.raises(Unauthorized):
            reader.list_domains()


def test_from_env(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATCHREG_URL", server.url + "/")
    monkeypatch.setenv("PATCHREG_TOKEN", server.secrets["read"])
    with Client.from_env() as c:
        assert "tiny:v1" in {b.ref for b in c.list_bases()}
    monkeypatch.delenv("PATCHREG_TOKEN")
    with Client.from_env() as c, pytest.raises(Unauthorized):
        c.list_bases()
