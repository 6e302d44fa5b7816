"""Queueing training (checked up front, nothing written when refused) and the port_all job that a
new base version with a parent gets in its own transaction; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from core.errors import DataUnavailable, InvalidInput, NotFound, PatchregError
from registry.db import transaction
from registry.models import BaseVersion, Dataset, Job
from registry.services import bases, datasets, domains, training
from registry.services.datasets import today
from tests.conftest import Registry
from tests.helpers import NothingWritten


def write_rows(path: Path, n: int = 4) -> Path:
    path.write_text("".join(json.dumps({"text": f"row {i} of {path.stem}"}) + "\n" for i in range(n)))
    return path


@pytest.fixture
def med(registry: Registry, make_tiny_model: Callable[..., Path], tmp_path: Path) -> Registry:
    """tiny:v1; domain med with train datasets old and new and a general one; domain law with a
    train dataset only; domain empty with none."""
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
        for name in ("med", "law", "empty"):
            domains.create_domain(s, name)
    for domain, name, role in (
        ("med", "old", "train"),
        ("med", "new", "train"),
        ("med", "background", "general"),
        ("law", "cases", "train"),
    ):
        with transaction(registry.factory) as s:  # one transaction each: distinct creation times
            datasets.add_dataset(
                s, registry.store, domain, name, write_rows(tmp_path / f"{name}.jsonl"), role
            )
    return registry


def dataset_id(reg: Registry, name: str) -> int:
    with transaction(reg.factory) as s:  # dataset names are unique across domains in `med`
        return s.scalar(select(Dataset.id).where(Dataset.name == name))


def queue(reg: Registry, **kw: Any) -> Any:
    kw = {"domain": "med", "base": "tiny:v1", "method": "lora", **kw}
    with transaction(reg.factory) as s:
        job, _ = training.enqueue_train(s, **kw)
    return job


def test_enqueue_train_records_a_complete_payload_on_the_newest_dataset(med: Registry) -> None:
    job = queue(med, overrides=["r=8", " alpha = 16"], args={"steps": 5, "lr": 1e-3, "seed": 0})
    assert (job.kind, job.status, job.attempts) == ("train", "queued", 0)
    p = job.payload
    assert (p["domain"], p["base"], p["method"], p["origin"]) == ("med", "tiny:v1", "lora", "trained")
    assert (p["dataset"], p["dataset_id"]) == ("new", dataset_id(med, "new"))
    assert p["overrides"] == ["r=8", " alpha = 16"] and p["regularize"] is None
    assert p["args"] == {"steps": 5, "lr": 1e-3, "seed": 0} and isinstance(p["args"]["lr"], float)
    assert p["general_dataset_id"] is None and p["parent_id"] is None

    named = queue(med, dataset="old")
    assert named.payload["dataset"] == "old" and named.id != job.id

    alewr = queue(med, method="full", regularize="alewr")
    assert alewr.payload["general_dataset_id"] == dataset_id(med, "background")

    # integral floats are accepted for int arguments and stored as ints
    assert queue(med, args={"steps": 3.0, "batch_size": 2}).payload["args"] == {"steps": 3, "batch_size": 2}

    with transaction(med.factory) as s:
        first, created = training.enqueue_train(
            s, domain="law", base="tiny:v1", method="s2ft", dedupe_key="k"
        )
        again, created_again = training.enqueue_train(
            s, domain="law", base="tiny:v1", method="s2ft", dedupe_key="k"
        )
    assert created and not created_again and again.id == first.id


def test_the_newest_readable_train_dataset_is_picked(med: Registry) -> None:
    with transaction(med.factory) as s:  # `new` reached its end date today: no longer readable
        s.execute(update(Dataset).where(Dataset.name == "new").values(available_until=today()))
    assert queue(med).payload["dataset"] == "old"

    with transaction(med.factory) as s:
        s.execute(update(Dataset).where(Dataset.name == "old").values(available_until=today()))
    with NothingWritten(med.engine, med.store.root), transaction(med.factory) as s:
        with pytest.raises(DataUnavailable, match="train dataset med/new was available until"):
            training.enqueue_train(s, domain="med", base="tiny:v1", method="lora")
        with pytest.raises(DataUnavailable, match="med/old"):
            training.enqueue_train(s, domain="med", base="tiny:v1", method="lora", dataset="old")


REFUSED: list[tuple[dict[str, Any], type[PatchregError], str]] = [
    ({"method": "qlora"}, InvalidInput, "unknown method 'qlora'"),
    ({"regularize": "ewc"}, InvalidInput, "unknown regulariser 'ewc'"),
    ({"origin": "ported"}, InvalidInput, "trained or retrained"),
    ({"domain": "nowhere"}, NotFound, "no domain named 'nowhere'"),
    ({"base": "tiny:v9"}, NotFound, "no base version tiny:v9"),
    ({"base": "tiny"}, InvalidInput, "invalid base reference"),
    ({"dataset": "background"}, InvalidInput, "dataset med/background has role general, not train"),
    ({"dataset": "missing"}, NotFound, "missing"),
    ({"domain": "empty"}, InvalidInput, "domain empty has no train dataset"),
    ({"domain": "law", "method": "full", "regularize": "alewr"}, InvalidInput, "no general dataset"),
    ({"general_dataset": "old", "method": "full", "regularize": "alewr"}, InvalidInput, "role train"),
    ({"args": {"steps": -1}}, InvalidInput, "steps=-1: expected an integer in [1, 10,000,000]"),
    ({"args": {"steps": 0}}, InvalidInput, "expected an integer in [1,"),
    ({"args": {"lr": -0.1}}, InvalidInput, "lr=-0.1: expected a number in (0, 1]"),
    ({"args": {"seed": -3}}, InvalidInput, "seed=-3: expected an integer in [0,"),
    ({"args": {"steps": 2.5}}, InvalidInput, "expected an integer"),
    ({"args": {"steps": "10"}}, InvalidInput, "expected an integer"),
    ({"args": {"lr": True}}, InvalidInput, "expected a number"),
    ({"args": {"lr": float("nan")}}, InvalidInput, "lr=nan: expected a finite number"),
    ({"args": {"steps": float("inf")}}, InvalidInput, "steps=inf: expected a finite number"),
    ({"args": {"steps": 1e300}}, InvalidInput, "steps=1e+300: expected an integer in [1, 10,000,000]"),
    ({"args": {"steps": 10**400}}, InvalidInput, "steps=<1329-bit integer>: expected an integer"),
    ({"args": {"rank": 4}}, InvalidInput, "unknown training argument 'rank'"),
    ({"overrides": ["r8"]}, InvalidInput, "--set 'r8': expected key=value"),
    ({"overrides": ["=8"]}, InvalidInput, "expected key=value"),
    ({"overrides": ["r=8", "2x=1"]}, InvalidInput, "--set '2x=1'"),
    ({"overrides": ["r=8"], "method_config": {"r": 8}}, InvalidInput, "not both"),
    ({"parent_id": "0123abcd"}, NotFound, "0123abcd"),
]


def test_bad_training_requests_are_refused_and_write_nothing(med: Registry) -> None:
    for kw, error, message in REFUSED:
        # the transaction commits: anything the service wrote before refusing would stay
        with (
            NothingWritten(med.engine, med.store.root),
            transaction(med.factory) as s,
            pytest.raises(error) as caught,
        ):
            training.enqueue_train(s, **{"domain": "med", "base": "tiny:v1", "method": "lora", **kw})
        assert message in caught.value.message, (kw, caught.value.message)
    with transaction(med.factory) as s:
        assert s.scalars(select(Job)).all() == []


# --- a new base version queues its porting ---------------------------------------------------------


def test_a_base_with_a_parent_queues_one_port_all_job(
    registry: Registry, make_tiny_model: Callable[..., Path]
) -> None:
    with transaction(registry.factory) as s:
        v1 = bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
    assert v1.port_all_job is None
    with transaction(registry.factory) as s:
        assert s.scalars(select(Job)).all() == []

    with transaction(registry.factory) as s:
        v2 = bases.register_base(s, "tiny:v2", str(make_tiny_model(seed=1)), parent="tiny:v1")
    with transaction(registry.factory) as s:
        (job,) = s.scalars(select(Job)).all()
        assert job.id == v2.port_all_job
        assert (job.kind, job.status, job.payload) == ("port_all", "queued", {"base": "tiny:v2"})
        assert job.dedupe_key is not None


def test_rolling_back_a_registration_leaves_neither_the_version_nor_its_job(
    registry: Registry, make_tiny_model: Callable[..., Path]
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(make_tiny_model(seed=0)))
    with (
        NothingWritten(registry.engine, registry.store.root),
        pytest.raises(RuntimeError, match="after the registration"),
        transaction(registry.factory) as s,
    ):
        v2 = bases.register_base(s, "tiny:v2", str(make_tiny_model(seed=1)), parent="tiny:v1")
        assert v2.port_all_job is not None
        assert s.get(Job, v2.port_all_job) is not None  # written in this very transaction
        raise RuntimeError("something failed after the registration")
    with transaction(registry.factory) as s:
        assert s.scalars(select(BaseVersion.version)).all() == ["v1"]
        assert s.scalars(select(Job)).all() == []
