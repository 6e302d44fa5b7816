"""A worker keeps its bases loaded: a release's port jobs load each base once, whatever the
number of patches, and the resident model is bit-identical to a fresh load after every job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from registry.db import transaction
from registry.services import bases, datasets, domains, jobs, patches
from tests.conftest import Registry
from trainer.family import Family, domain_rows, write_jsonl
from trainer.hf import load_causal_lm
from trainer.patch.io import save_patch
from trainer.patch.types import LowRank, Patch, Scale
from worker.runner import Worker, WorkerConfig

Q = "model.layers.{}.self_attn.q_proj"


def _patches(tmp_path: Path) -> list[Path]:
    """Three patches of different methods (port_all ports the best per domain and method)."""
    g = torch.Generator().manual_seed(0)
    made = [
        Patch(
            "lora",
            {},
            {Q.format(0): LowRank(torch.randn(2, 64, generator=g), torch.randn(64, 2, generator=g), 1.0)},
        ),
        Patch("propulsion", {}, {Q.format(1): Scale(1 + 0.2 * torch.randn(64, generator=g))}),
        Patch(
            "full",
            {},
            {Q.format(1): LowRank(torch.randn(2, 64, generator=g), torch.randn(64, 2, generator=g), 0.5)},
        ),
    ]
    return [save_patch(p, tmp_path / f"{p.method}.safetensors") for p in made]


def _release(
    registry: Registry,
    family: Family,
    tmp_path: Path,
    cache_bytes: int | None,
    before_run: Callable[[], None] = lambda: None,
) -> Worker:
    _, evals = domain_rows()
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        domains.create_domain(s, "docs")
        datasets.add_dataset(
            s, registry.store, "docs", "quiz", write_jsonl(evals[:8], tmp_path / "q.jsonl"), "eval"
        )
        for path in _patches(tmp_path):
            patches.register_patch(s, registry.store, "docs", "tiny:v1", path, "imported")
        bases.register_base(s, "tiny:v2", str(family.v2), parent="tiny:v1")  # queues port_all
    config = WorkerConfig(
        work_root=registry.home / "work",
        lease_seconds=30,
        poll_seconds=0.05,
        backoff_seconds=0,
        model_cache_bytes=cache_bytes,
    )
    worker = Worker(registry.factory, registry.store, config)
    before_run()
    worker.run(until_idle=True)
    with transaction(registry.factory) as s:
        ports = jobs.list_jobs(s, kind="port")
        assert len(ports) == 3 and all(j.status == "succeeded" for j in ports), [j.error for j in ports]
    return worker


def test_a_release_loads_each_base_once_and_leaves_it_clean(
    registry: Registry, family: Family, tmp_path: Path
) -> None:
    worker = _release(registry, family, tmp_path, cache_bytes=None)
    assert worker.models.loads == 2  # v2 once, v1 once (for the source evaluations): not 2 per job
    for directory in (family.v1, family.v2):
        with worker.models.borrow(directory) as (model, _):
            fresh = load_causal_lm(directory)
            resident = model.state_dict()
            assert all(torch.equal(v, resident[k]) for k, v in fresh.state_dict().items())
    assert worker.models.loads == 2


def test_without_a_cache_every_job_loads_its_bases(
    registry: Registry, family: Family, tmp_path: Path
) -> None:
    worker = _release(registry, family, tmp_path, cache_bytes=0)
    assert worker.models.loads == 6  # 3 port jobs x (v2, v1)


def test_a_port_job_hashes_its_patch_once(
    registry: Registry, family: Family, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patch blob is read by compat, the port plan and the measurement: hashed once per job,
    and again in the next job (a worker never trusts a blob across jobs)."""
    from registry.store import local

    hashed: list[str] = []
    real = local.sha256_file

    def counting(path: Path, on_bytes=None):  # type: ignore[no-untyped-def]
        hashed.append(Path(path).name)
        return real(path, on_bytes)

    _release(
        registry,
        family,
        tmp_path,
        cache_bytes=None,
        before_run=lambda: monkeypatch.setattr(local, "sha256_file", counting),
    )
    with transaction(registry.factory) as s:
        digests = {p.digest for p in patches.list_patches(s) if p.origin == "imported"}
    per_patch = {d: hashed.count(d) for d in digests}
    assert all(n == 1 for n in per_patch.values()), per_patch  # one port job each


def test_one_eval_file_in_two_domains_is_evaluated_once_on_a_base(
    registry: Registry, family: Family, tmp_path: Path
) -> None:
    """A dataset is its bytes: the base alone is measured once on them, whichever domain asks."""
    from sqlalchemy import func, select

    from registry.models import Evaluation

    _, evals = domain_rows()
    quiz = write_jsonl(evals[:8], tmp_path / "q.jsonl")
    lora, *_ = _patches(tmp_path)
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        for name in ("docs", "legal"):
            domains.create_domain(s, name)
            datasets.add_dataset(s, registry.store, name, "quiz", quiz, "eval")
            row = patches.register_patch(s, registry.store, name, "tiny:v1", lora, "imported")
            jobs.enqueue(s, "evaluate", {"patch_id": row.id}, dedupe_key=f"evaluate:{row.id}")
    config = WorkerConfig(work_root=registry.home / "work", poll_seconds=0.05, backoff_seconds=0)
    assert Worker(registry.factory, registry.store, config).run(until_idle=True) == 2
    with transaction(registry.factory) as s:
        alone = select(func.count()).select_from(Evaluation).where(Evaluation.patch_id.is_(None))
        patched = select(func.count()).select_from(Evaluation).where(Evaluation.patch_id.is_not(None))
        assert (s.scalar(alone), s.scalar(patched)) == (1, 2)
        assert all(j.status == "succeeded" for j in jobs.list_jobs(s, kind="evaluate"))
