"""The worker end to end on the tiny family, on SQLite and PostgreSQL: train → evaluate (gate) →
a new release queues `port_all` → one `port` per source → port, check, evaluate, gate → retrain
where the train data may still be read, an audit note where it may not. Reruns create nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.errors import InvalidState
from registry.db import transaction
from registry.models import AuditEvent, CompatVerdict, Dataset, Evaluation, ImportanceMap, Job, Patch
from registry.services import bases, datasets, domains, jobs, lineage, port_sources, retraining, training
from registry.services.lookup import get_base_version
from tests.conftest import Registry
from trainer.family import Family, domain_rows, write_jsonl
from trainer.hf import load_causal_lm
from trainer.tiny import corpus_paragraphs
from worker.runner import Worker, WorkerConfig

# What each training request makes on the tiny family (CPU, seeded):
# - GOOD learns a little: whether the gate validates it depends on a row or two of the quiz;
# - the NOOP ones move the weights by ~1e-7: no-op or no accuracy gain, hence always degraded.
GOOD = {"method": "s2ft", "dataset": "notes", "args": {"steps": 30, "lr": 3e-3}}
NOOP = {"method": "propulsion", "dataset": "notes", "args": {"steps": 1, "lr": 1e-7}}
NOOP_EXPIRING = {
    "method": "lora",
    "overrides": ["r=4"],
    "dataset": "archive",
    "args": {"steps": 1, "lr": 1e-7},
}


@pytest.fixture(scope="session")
def domain_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("worker-flow-data")
    train, evals = domain_rows()
    general = [{"text": p[:200]} for p in corpus_paragraphs()[:16]]
    return {
        "train": write_jsonl(train, root / "train.jsonl"),
        "eval": write_jsonl(evals, root / "eval.jsonl"),
        "general": write_jsonl(general, root / "general.jsonl"),
    }


def make_worker(registry: Registry) -> Worker:
    config = WorkerConfig(
        work_root=registry.home / "work", lease_seconds=30, poll_seconds=0.05, backoff_seconds=0
    )
    return Worker(registry.factory, registry.store, config)


def seed(registry: Registry, family: Family, files: dict[str, Path], *requests: dict[str, Any]) -> list[str]:
    """tiny:v1, domain docs with train sets `notes` and `archive` and the eval set `quiz`, and one
    queued training job per request; returns the job ids."""
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", files["train"], "train")
        datasets.add_dataset(s, registry.store, "docs", "archive", files["train"], "train")
        datasets.add_dataset(s, registry.store, "docs", "quiz", files["eval"], "eval")
        return [training.enqueue_train(s, domain="docs", base="tiny:v1", **r)[0].id for r in requests]


def expire(registry: Registry, name: str) -> str:
    """End a dataset's availability yesterday, behind the CLI's back (it refuses past dates)."""
    yesterday = datasets.today() - timedelta(days=1)
    with transaction(registry.factory) as s:
        s.execute(update(Dataset).where(Dataset.name == name).values(available_until=yesterday))
    return yesterday.isoformat()


def trained_by(s: Session, job_id: str) -> Patch:
    return s.scalars(select(Patch).where(Patch.job_id == job_id)).one()


def ported(s: Session, source_id: str, base: str) -> list[Patch]:
    version = get_base_version(s, base)
    return list(
        s.scalars(
            select(Patch).where(
                Patch.parent_id == source_id, Patch.base_version_id == version.id, Patch.origin == "ported"
            )
        )
    )


def job_by_key(s: Session, key: str) -> Job | None:
    return s.scalar(select(Job).where(Job.dedupe_key == key))


def events(s: Session, action: str, subject: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
    if subject is not None:
        stmt = stmt.where(AuditEvent.subject == subject)
    return list(s.scalars(stmt))


def evaluated(s: Session, patch_id: str | None, base: str) -> int:
    version = get_base_version(s, base)
    owner = Evaluation.patch_id.is_(None) if patch_id is None else Evaluation.patch_id == patch_id
    return s.scalar(
        select(func.count()).select_from(Evaluation).where(owner, Evaluation.base_version_id == version.id)
    )


def job_counts(s: Session) -> dict[str, int]:
    return dict(s.execute(select(Job.kind, func.count()).group_by(Job.kind)).all())


def accuracy_of(s: Session, patch_id: str | None, base: str) -> float:
    version = get_base_version(s, base)
    owner = Evaluation.patch_id.is_(None) if patch_id is None else Evaluation.patch_id == patch_id
    metrics = s.scalars(
        select(Evaluation.metrics).where(owner, Evaluation.base_version_id == version.id)
    ).first()
    return float(metrics["accuracy"])


def test_release_ports_every_source_gates_it_and_retrains_where_data_allows(
    registry: Registry, family: Family, domain_files: dict[str, Path]
) -> None:
    good_job, noop_job, expiring_job = seed(registry, family, domain_files, GOOD, NOOP, NOOP_EXPIRING)
    worker = make_worker(registry)
    assert worker.run(until_idle=True) == 6  # three trains, each followed by its evaluate job

    with transaction(registry.factory) as s:
        sources = {}
        for name, job_id, dataset in (
            ("good", good_job, "notes"),
            ("noop", noop_job, "notes"),
            ("expiring", expiring_job, "archive"),
        ):
            patch = trained_by(s, job_id)
            assert patch.origin == "trained" and patch.parent_id is None
            assert patch.train_dataset is not None and patch.train_dataset.name == dataset
            assert patch.metrics["train_steps"] == s.get(Job, job_id).payload["args"]["steps"]
            evaluation = job_by_key(s, f"evaluate:{patch.id}")
            assert evaluation is not None and evaluation.status == "succeeded"
            assert patch.status == evaluation.result["status"] in ("validated", "degraded")
            assert evaluated(s, patch.id, "tiny:v1") == 1
            sources[name] = patch.id
        assert evaluated(s, None, "tiny:v1") == 1  # v1 alone measured once, then reused
        assert trained_by(s, noop_job).status == "degraded"
        assert trained_by(s, expiring_job).status == "degraded"
    yesterday = expire(registry, "archive")

    with transaction(registry.factory) as s:  # the release and its port_all commit together
        v2 = bases.register_base(s, "tiny:v2", str(family.v2), parent="tiny:v1")
        port_all = s.get(Job, v2.port_all_job)
        assert port_all is not None and port_all.kind == "port_all" and port_all.status == "queued"
    assert worker.run(until_idle=True) >= 1 + 3

    with transaction(registry.factory) as s:
        statuses = {j.id: (j.kind, j.status) for j in s.scalars(select(Job))}
        assert {st for _, st in statuses.values()} == {"succeeded"}, statuses
        planned = s.get(Job, v2.port_all_job).result
        assert {p["source_id"] for p in planned["ports"]} == set(sources.values())
        assert {p["method"] for p in planned["ports"]} == {"s2ft", "propulsion", "lora"}

        outcome: dict[str, dict[str, Any]] = {}
        for name, source_id in sources.items():
            (copy,) = ported(s, source_id, "tiny:v2")  # exactly one per source
            port_job = job_by_key(s, port_sources.port_key(source_id, "tiny:v2"))
            assert port_job is not None and port_job.result["patch_id"] == copy.id
            assert copy.job_id == port_job.id and copy.status == port_job.result["status"]
            assert copy.artifact_digest == s.get(Patch, source_id).artifact_digest  # no new bytes
            verdict = s.get(CompatVerdict, (source_id, copy.base_version_id))
            assert verdict is not None and verdict.verdict == "compatible" and verdict.portability
            assert evaluated(s, copy.id, "tiny:v2") == 1  # v2 + ported patch
            assert evaluated(s, source_id, "tiny:v1") == 1  # the source's number, reused
            outcome[name] = {"port": copy, "job": port_job}
        assert evaluated(s, None, "tiny:v2") == 1  # v2 alone, measured once for three ports

        for name in ("noop", "expiring"):
            assert outcome[name]["port"].status == "degraded"
        good = outcome["good"]["port"]
        good_retrain = job_by_key(s, f"retrain:{sources['good']}:tiny:v2")
        gain = good.metrics["evidence"]["gain"]  # the paired evidence the gate decided on
        if good.status == "degraded":  # evidence of no gain: retrained, the data still being readable
            assert gain["high"] <= 0 or good.metrics["evidence"]["kept"]["high"] <= 0
            assert good_retrain is not None and good_retrain.status == "succeeded"
        else:  # a gain whose interval clears 0 validates; one the rows cannot decide retrains nothing
            assert (good.status, gain["low"] > 0) in {("validated", True), ("inconclusive", False)}
            assert good_retrain is None

        # degraded, data still readable: retrained on v2 with the source's method, config and args
        retrain_job = job_by_key(s, f"retrain:{sources['noop']}:tiny:v2")
        assert retrain_job is not None and outcome["noop"]["job"].result["retrain_job"] == retrain_job.id
        assert retrain_job.payload["args"] == NOOP["args"]
        retrained = trained_by(s, retrain_job.id)
        source = s.get(Patch, sources["noop"])
        assert (retrained.origin, retrained.parent_id) == ("retrained", source.id)
        assert retrained.base_version.version == "v2"
        assert (retrained.method, retrained.method_config) == (source.method, source.method_config)
        assert retrained.train_dataset_id == source.train_dataset_id
        assert job_by_key(s, f"evaluate:{retrained.id}").status == "succeeded"
        (queued,) = events(s, "retrain.queued", sources["noop"])
        assert queued.detail["job"] == retrain_job.id and "degraded" in queued.detail["why"]

        # degraded, data expired: nothing queued, the audit log says why
        assert job_by_key(s, f"retrain:{sources['expiring']}:tiny:v2") is None
        assert outcome["expiring"]["job"].result["retrain_job"] is None
        (skipped,) = events(s, "retrain.skipped", sources["expiring"])
        assert skipped.detail["base"] == "tiny:v2" and yesterday in skipped.detail["reason"]
        assert "docs/archive" in skipped.detail["reason"]

        tree = lineage.lineage(s, sources["noop"])
        children = {c.patch.id: c for c in tree.root.children}
        noop_port = outcome["noop"]["port"].id
        assert tree.root.patch.id == sources["noop"] and set(children) == {noop_port, retrained.id}
        assert children[noop_port].verdict == "compatible"
        assert children[retrained.id].patch.origin == "retrained"
        before = (job_counts(s), s.scalar(select(func.count()).select_from(Patch)))

    # Rerun the release and its ports. `jobs.retry` takes failed or cancelled jobs only, so mark
    # them failed first, as a crash would. Every step is keyed: nothing is made twice.
    with transaction(registry.factory) as s, pytest.raises(InvalidState):
        jobs.retry(s, v2.port_all_job)
    rerun = [v2.port_all_job, *(o["job"].id for o in outcome.values())]
    with transaction(registry.factory) as s:
        s.execute(update(Job).where(Job.id.in_(rerun)).values(status="failed"))
    with transaction(registry.factory) as s:
        for job_id in rerun:
            jobs.retry(s, job_id)
    assert worker.run(until_idle=True) == len(rerun)
    with transaction(registry.factory) as s:
        assert (job_counts(s), s.scalar(select(func.count()).select_from(Patch))) == before
        for name, source_id in sources.items():
            assert [p.id for p in ported(s, source_id, "tiny:v2")] == [outcome[name]["port"].id]
            again = s.get(Job, outcome[name]["job"].id)
            assert again.status == "succeeded" and again.attempts == 1
            assert again.result["retrain_job"] == outcome[name]["job"].result["retrain_job"]
        assert len(events(s, "retrain.queued")) == (2 if outcome["good"]["port"].status == "degraded" else 1)


def test_incompatible_release_ports_nothing_and_retrains_where_data_allows(
    registry: Registry, family: Family, domain_files: dict[str, Path]
) -> None:
    noop_job, expiring_job = seed(registry, family, domain_files, NOOP, NOOP_EXPIRING)
    worker = make_worker(registry)
    worker.run(until_idle=True)
    with transaction(registry.factory) as s:
        noop, expiring = trained_by(s, noop_job).id, trained_by(s, expiring_job).id
    yesterday = expire(registry, "archive")

    with transaction(registry.factory) as s:  # v3 is wider: same architecture, other shapes
        v3 = bases.register_base(s, "tiny:v3", str(family.v3), parent="tiny:v1")
        assert v3.port_all_job is not None
    worker.run(until_idle=True)

    with transaction(registry.factory) as s:
        assert {j.status for j in s.scalars(select(Job))} == {"succeeded"}
        target = get_base_version(s, "tiny:v3")
        for source_id in (noop, expiring):
            assert ported(s, source_id, "tiny:v3") == []
            verdict = s.get(CompatVerdict, (source_id, target.id))
            assert verdict is not None and verdict.verdict == "incompatible"
            assert {r["code"] for r in verdict.reasons} == {"shape_mismatch"}
            port_job = job_by_key(s, port_sources.port_key(source_id, "tiny:v3"))
            assert port_job.result["verdict"] == "incompatible" and port_job.result["patch_id"] is None
        retrain_job = job_by_key(s, f"retrain:{noop}:tiny:v3")
        assert retrain_job is not None and retrain_job.status == "succeeded"
        retrained = trained_by(s, retrain_job.id)
        assert (retrained.origin, retrained.parent_id) == ("retrained", noop)
        assert retrained.base_version_id == target.id
        (queued,) = events(s, "retrain.queued", noop)
        assert "incompatible" in queued.detail["why"]
        on_v3 = s.scalars(select(Evaluation.patch_id).where(Evaluation.base_version_id == target.id))
        assert set(on_v3) == {None, retrained.id}  # v3 alone and the retrained patch: nothing ported

        assert job_by_key(s, f"retrain:{expiring}:tiny:v3") is None
        (skipped,) = events(s, "retrain.skipped", expiring)
        assert "incompatible" in skipped.detail["why"] and yesterday in skipped.detail["reason"]
        assert s.scalar(select(func.count()).select_from(Job).where(Job.kind == "train")) == 3


def test_alewr_importance_is_measured_once_per_base_and_reused(
    registry: Registry, family: Family, domain_files: dict[str, Path]
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", domain_files["train"], "train")
        datasets.add_dataset(s, registry.store, "docs", "web", domain_files["general"], "general")
        first, second = (
            training.enqueue_train(
                s,
                domain="docs",
                base="tiny:v1",
                method="s2ft",
                regularize="alewr",
                args={"steps": 3, "seed": n},
            )[0].id
            for n in (0, 1)
        )
    worker = make_worker(registry)
    worker.run(until_idle=True)
    with transaction(registry.factory) as s:
        (imp,) = s.scalars(select(ImportanceMap)).all()  # one map for (tiny:v1, docs/web)
        assert imp.job_id == first and imp.dataset.name == "web"
        assert len(events(s, "importance.record")) == 1
        assert len(events(s, "dataset.read", "docs/web")) == 1  # the second job never read the data
        patches = [trained_by(s, first), trained_by(s, second)]
        # the regulariser's settings are stored beside the method's; the per-base map path is not
        assert [p.method_config["regularizer"] for p in patches] == 2 * [
            {"name": "alewr", "config": {"lambda": 1.0, "balance": 0.0}}
        ]
        assert not any("importance" in str(p.method_config) for p in patches)
        assert {port_sources.patch_label(p) for p in patches} == {"s2ft+alewr"}  # ported apart from s2ft
        assert s.get(Job, second).status == "succeeded"

        job, created = training.enqueue_importance(s, "tiny:v1", "docs")
        assert created
    worker.run(until_idle=True)
    with transaction(registry.factory) as s:
        assert s.get(Job, job.id).result["digest"] == imp.artifact_digest
        assert s.scalar(select(func.count()).select_from(ImportanceMap)) == 1
        assert len(events(s, "importance.record")) == len(events(s, "dataset.read", "docs/web")) == 1


def test_alewr_patches_retrain_with_their_settings_in_either_stored_form(
    registry: Registry, family: Family, domain_files: dict[str, Path]
) -> None:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", domain_files["train"], "train")
        datasets.add_dataset(s, registry.store, "docs", "web", domain_files["general"], "general")
        new_job, old_job = (
            training.enqueue_train(
                s,
                domain="docs",
                base="tiny:v1",
                method="s2ft",
                regularize="alewr",
                overrides=["alewr_lambda=0.5"],
                args={"steps": 2, "seed": n},
            )[0].id
            for n in (0, 1)
        )
    worker = make_worker(registry)
    assert worker.run(until_idle=True) == 4  # two trainings (the first measures importance), two evaluations
    assert worker.models.loads == 1  # importance and all four jobs borrowed the one resident v1, clean
    with worker.models.borrow(family.v1) as (model, _):
        fresh = load_causal_lm(family.v1).state_dict()
        assert all(torch.equal(v, fresh[k]) for k, v in model.state_dict().items())
    with transaction(registry.factory) as s:
        new, old = trained_by(s, new_job), trained_by(s, old_job)
        stored = dict(new.method_config)
        assert stored["regularizer"] == {"name": "alewr", "config": {"lambda": 0.5, "balance": 0.0}}
        own = {k: v for k, v in stored.items() if k != "regularizer"}
        old.method_config = {  # as a patch trained before regularisers had their own config holds it
            **own,
            "regularize": "alewr",
            "alewr_lambda": 0.5,
            "alewr_balance": 0.0,
            "importance": "/the/v1/map.safetensors",
        }
        assert port_sources.patch_label(old) == port_sources.patch_label(new) == "s2ft+alewr"
        sources = (new.id, old.id)
        bases.register_base(s, "tiny:v2", str(family.v2))
    with transaction(registry.factory) as s:
        retrains = [retraining.plan_retrain(s, source, "tiny:v2", "test") for source in sources]
        assert all(j is not None and j.payload["regularize"] == "alewr" for j in retrains)
    worker.run(until_idle=True)
    with transaction(registry.factory) as s:
        for job in retrains:
            assert job is not None and s.get(Job, job.id).status == "succeeded"
            retrained = trained_by(s, job.id)
            assert retrained.origin == "retrained" and retrained.base_version.version == "v2"
            assert retrained.method_config == stored  # the new form, with the source's settings
        assert s.scalar(select(func.count()).select_from(ImportanceMap)) == 2  # one map per base
