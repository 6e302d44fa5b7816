"""Services on SQLite and PostgreSQL, called the way an entry point calls them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from core.errors import (
    AlreadyExists,
    DataUnavailable,
    InvalidInput,
    MalformedFile,
    NotFound,
    SourceUnavailable,
)
from registry.db import transaction
from registry.models import Patch
from registry.services import aliases, audit, bases, datasets, domains
from registry.services.lookup import get_dataset, get_patch
from tests.conftest import Registry
from tests.helpers import NothingWritten


@contextmanager
def refused(
    registry: Registry, error: type[Exception] | tuple[type[Exception], ...], message: str
) -> Iterator[Session]:
    """A unit of work that must fail with `error` and leave no row and no blob behind."""
    with (
        NothingWritten(registry.engine, registry.store.root),
        pytest.raises(error, match=message),
        transaction(registry.factory) as session,
    ):
        yield session


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_register_list_show_with_parent_and_audit(registry: Registry, make_tiny_model) -> None:
    with transaction(registry.factory) as s:
        s.info["actor"] = "alice"
        v1 = bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
        v2 = bases.register_base(s, "tiny:v2", str(make_tiny_model(seed=1)), parent="tiny:v1")
    assert v1.family == "tiny" and v1.model_type == "llama" and v1.revision is None
    assert v2.parent == "tiny:v1" and v2.arch_fingerprint == v1.arch_fingerprint
    assert v2.weights_digest != v1.weights_digest
    with transaction(registry.factory) as s:
        assert [b.ref for b in bases.list_bases(s)] == ["tiny:v1", "tiny:v2"]
        assert [b.ref for b in bases.list_bases(s, family="tiny")] == ["tiny:v1", "tiny:v2"]
        detail = bases.show_base(s, "tiny:v2")
        events = audit.list_events(s)
    assert ["model.embed_tokens.weight", [512, 64], "F32"] in detail.tensor_table
    assert v1.port_all_job is None and v2.port_all_job is not None
    assert [(e.action, e.subject, e.actor) for e in events] == [
        ("job.enqueue", v2.port_all_job, "alice"),
        ("base.register", "tiny:v2", "alice"),
        ("base.register", "tiny:v1", "alice"),
        ("family.create", "tiny", "alice"),
    ]


def test_bad_registrations_write_nothing(registry: Registry, make_tiny_model, tmp_path: Path) -> None:
    model = make_tiny_model()
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(model))
    truncated = tmp_path / "truncated"
    shutil.copytree(model, truncated)
    (truncated / "model.safetensors").write_bytes((model / "model.safetensors").read_bytes()[:5000])
    (tmp_path / "empty").mkdir()
    cases = [
        ("tiny:v1", str(model), None, AlreadyExists, "tiny:v1 is already registered"),
        ("tiny:v2", str(tmp_path / "empty"), None, InvalidInput, r"no config\.json"),
        ("tiny:v2", str(truncated), None, MalformedFile, "beyond the data"),
        (
            "tiny:v2",
            str(model),
            "tiny:v0",
            NotFound,
            r"no base version tiny:v0 \(known versions of tiny: v1\)",
        ),
        ("tiny:v2", str(tmp_path / "nowhere"), None, SourceUnavailable, "no such directory"),
        ("tiny-v2", str(model), None, InvalidInput, "expected FAMILY:VERSION"),
        ("other:v1", str(model), "tiny:v1", InvalidInput, "another family"),
    ]
    for ref, source, parent, error, message in cases:
        with refused(registry, error, message) as s:
            bases.register_base(s, ref, source, parent=parent)


def test_hub_source_resolves_offline_from_the_local_cache(
    registry: Registry, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hf:// goes through snapshot_download; offline, it serves the cached snapshot and its commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hf-cache"
    repo = cache / "models--acme--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with transaction(registry.factory) as s:
        row = bases.register_base(s, "tiny:hub", "hf://acme/tiny@main")
    assert row.revision == commit
    assert row.source_uri == f"hf://acme/tiny@{commit}"
    with (
        NothingWritten(registry.engine, registry.store.root),
        pytest.raises(Exception, match="not in the local Hugging Face cache"),
        transaction(registry.factory) as s,
    ):
        bases.register_base(s, "tiny:missing", "hf://acme/absent@main")


def test_domains(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        domains.create_domain(s, "medical", "clinical notes")
        domains.create_domain(s, "legal")
    with NothingWritten(registry.engine, registry.store.root):
        for name, error in [("medical", AlreadyExists), ("bad name!", InvalidInput)]:
            with pytest.raises(error), transaction(registry.factory) as s:
                domains.create_domain(s, name)
    with transaction(registry.factory) as s:
        assert [d.name for d in domains.list_domains(s)] == ["legal", "medical"]


def test_dataset_add_list_and_availability(registry: Registry, tmp_path: Path) -> None:
    train = write_jsonl(
        tmp_path / "train.jsonl",
        ['{"text": "aspirin inhibits COX"}', "", '{"prompt": "Q", "completion": "A"}'],
    )
    evals = write_jsonl(tmp_path / "eval.jsonl", ['{"prompt": "2+2=", "choices": ["3", "4"], "answer": 1}'])
    until = date.today() + timedelta(days=30)
    with transaction(registry.factory) as s:
        domains.create_domain(s, "medical")
        row = datasets.add_dataset(s, registry.store, "medical", "notes", train, "train", until)
        datasets.add_dataset(s, registry.store, "medical", "quiz", evals, "eval")
    assert row.rows == 2 and row.available and row.available_until == until
    assert registry.store.exists(row.digest)
    with transaction(registry.factory) as s:
        listed = datasets.list_datasets(s, "medical")
        ds = get_dataset(s, "medical", "notes")
        assert datasets.readable_path(s, registry.store, ds).read_bytes() == train.read_bytes()
        ds.available_until = date.today()  # the agreement ends today: no more reads
        with pytest.raises(DataUnavailable, match="may no longer be read"):
            datasets.readable_path(s, registry.store, ds)
    assert [(d.name, d.role) for d in listed] == [("notes", "train"), ("quiz", "eval")]


@pytest.mark.parametrize(
    ("lines", "role", "message"),
    [
        (['{"text": "ok"}', "{not json"], "train", "bad.jsonl line 2: not valid JSON"),
        (['{"text": "ok"}', '{"txt": "typo"}'], "train", "line 2: a row needs 'text'"),
        (['["a list"]'], "train", "line 1: a row must be a JSON object"),
        (['{"prompt": "Q"}'], "train", "line 1: a 'prompt' row needs a 'completion'"),
        (['{"prompt": "Q", "choices": ["a", "b"], "answer": 1}'], "train", "belong in eval datasets"),
        (['{"prompt": "Q", "choices": ["a", "b"], "answer": 2}'], "eval", "index 2 is out of range"),
        (['{"prompt": "Q", "choices": ["a", "b"], "answer": "c"}'], "eval", "'c' is not one of the choices"),
        (['{"prompt": "Q", "choices": ["a"], "answer": 0}'], "eval", "at least two strings"),
        (['{"text": ""}'], "train", "non-empty string"),
        ([""], "train", "no rows"),
    ],
)
def test_bad_datasets_write_nothing(
    registry: Registry, tmp_path: Path, lines: list[str], role: str, message: str
) -> None:
    with transaction(registry.factory) as s:
        domains.create_domain(s, "medical")
    bad = write_jsonl(tmp_path / "bad.jsonl", lines)
    with refused(registry, InvalidInput, message) as s:
        datasets.add_dataset(s, registry.store, "medical", "bad", bad, role)


def test_dataset_refusals_write_nothing(registry: Registry, tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", ['{"text": "fine"}'])
    with transaction(registry.factory) as s:
        domains.create_domain(s, "medical")
        datasets.add_dataset(s, registry.store, "medical", "notes", good, "train")
    cases = [
        (("nodomain", "x", good, "train", None), NotFound, "no domain named 'nodomain'"),
        (("medical", "notes", good, "train", None), AlreadyExists, "already exists"),
        (("medical", "x", good, "train", date(2000, 1, 1)), InvalidInput, "not in the future"),
        (("medical", "x", tmp_path / "none.jsonl", "train", None), InvalidInput, "no such file"),
    ]
    for args, error, message in cases:
        with refused(registry, error, message) as s:
            datasets.add_dataset(s, registry.store, *args)


def test_blob_written_before_a_failure_is_removed(registry: Registry, tmp_path: Path) -> None:
    """A failure after the blob was stored (here: in the same unit of work) leaves no blob."""
    data = write_jsonl(tmp_path / "d.jsonl", ['{"text": "fresh content"}'])
    with transaction(registry.factory) as s:
        domains.create_domain(s, "medical")
    with refused(registry, RuntimeError, "failed after storing") as s:
        datasets.add_dataset(s, registry.store, "medical", "d", data, "train")
        raise RuntimeError("the command failed after storing")


def _add_patch(registry: Registry, domain: str, base: str, tmp_path: Path) -> str:
    from registry.services import artifacts
    from registry.services.lookup import get_base_version, get_domain

    blob = tmp_path / "patch.bin"
    blob.write_bytes(b"patch bytes")
    with transaction(registry.factory) as s:
        art = artifacts.store_file(s, registry.store, blob, "application/vnd.patchreg.patch")
        patch = Patch(
            domain=get_domain(s, domain),
            base_version=get_base_version(s, base),
            method="lora",
            artifact_digest=art.digest,
            trainable_params=10,
            origin="trained",
        )
        s.add(patch)
        s.flush()
        return patch.id


def test_aliases_point_a_name_at_a_patch(registry: Registry, make_tiny_model, tmp_path: Path) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(make_tiny_model()))
        bases.register_base(s, "tiny:v2", str(make_tiny_model(seed=1)))
        domains.create_domain(s, "medical")
        domains.create_domain(s, "legal")
    p1 = _add_patch(registry, "medical", "tiny:v1", tmp_path)
    p2 = _add_patch(registry, "medical", "tiny:v1", tmp_path)
    other = _add_patch(registry, "legal", "tiny:v1", tmp_path)
    with transaction(registry.factory) as s:
        aliases.set_alias(s, "medical", "tiny:v1", "production", p1[:6])
        aliases.set_alias(s, "medical", "tiny:v1", "production", p2)
    with transaction(registry.factory) as s:
        assert aliases.resolve_alias(s, "medical", "tiny:v1", "production") == p2
        assert aliases.resolve_alias(s, "medical", "tiny:v1", "staging") is None
        assert [(a.domain, a.base, a.name) for a in aliases.list_aliases(s)] == [
            ("medical", "tiny:v1", "production")
        ]
        assert get_patch(s, p2[:5]).id == p2
    with NothingWritten(registry.engine, registry.store.root):
        for domain, base, patch, message in [
            ("medical", "tiny:v1", other, "is for legal on tiny:v1"),
            ("medical", "tiny:v2", p1, "not medical on tiny:v2"),
            ("medical", "tiny:v1", "zzzz", "expected 4 to 12 hex digits"),
            ("medical", "tiny:v1", "ffffffffffff", "no patch with id"),
        ]:
            with pytest.raises((InvalidInput, NotFound), match=message), transaction(registry.factory) as s:
                aliases.set_alias(s, domain, base, "production", patch)
