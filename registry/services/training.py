"""Training requests and ALEWR importance maps, registry side.

`enqueue_train` checks everything a training job needs before it is queued (the domain, the base,
a readable train dataset, the method's name, the shape of its settings, and its targets and S²FT
ratios against the base's architecture: `train_checks`), so bad input fails at once with one line
instead of as a job that fails later. The trainer validates the settings' values
when the job runs. Importance maps are measured once per (base version, general dataset) and reused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import inputs
from core.errors import DataUnavailable, InvalidInput
from core.method_config import regularizer_name
from core.vocab import REGULARIZABLE, REGULARIZERS, TRAIN_METHODS
from registry.conflicts import insert_or_ignore
from registry.models import Dataset, ImportanceMap
from registry.schemas import JobRead
from registry.services import artifacts, audit, jobs, train_checks
from registry.services.datasets import is_available
from registry.services.lookup import base_ref, get_base_version, get_dataset, get_domain, get_patch
from registry.store import ArtifactStore

IMPORTANCE_MEDIA_TYPE = "application/vnd.patchreg.importance+safetensors"
# Training arguments: (type, lowest, highest), the trainer's own bounds (`trainer.loop.TrainArgs`)
# where it has them, sanity limits elsewhere; a value outside them (or NaN, Infinity, 1e300) is
# refused here instead of failing the job in the worker.
TRAIN_ARGS: dict[str, tuple[type, float, float]] = {
    "steps": (int, 1, 10_000_000),
    "epochs": (float, 0, 1e6),
    "lr": (float, 0, 1.0),
    "batch_size": (int, 1, 65_536),
    "grad_accum": (int, 1, 65_536),
    "max_length": (int, 1, 1 << 24),
    "warmup_steps": (int, 0, 10_000_000),
    "seed": (int, 0, (1 << 63) - 1),
    "max_tokens_per_batch": (int, 1, 1 << 32),
    "gradient_checkpointing": (bool, 0, 1),
}


def pick_dataset(session: Session, domain: str, role: str, name: str | None) -> Dataset:
    """The named dataset of `role`, or the domain's newest readable one; refused once expired."""
    if name is not None:
        ds = get_dataset(session, domain, name)
        if ds.role != role:
            raise InvalidInput(f"dataset {domain}/{name} has role {ds.role}, not {role}")
    else:
        candidates = session.scalars(
            select(Dataset)
            .where(Dataset.domain_id == get_domain(session, domain).id, Dataset.role == role)
            .order_by(Dataset.created_at.desc(), Dataset.id.desc())
        ).all()
        if not candidates:
            raise InvalidInput(
                f"domain {domain} has no {role} dataset; add one with `patchreg dataset add {domain} "
                f"NAME FILE --role {role}`"
            )
        ds = next((d for d in candidates if is_available(d)), candidates[0])
    if not is_available(ds):
        raise DataUnavailable(
            f"{role} dataset {domain}/{ds.name} was available until {ds.available_until}; "
            "it may no longer be read"
        )
    return ds


def _check_args(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key not in TRAIN_ARGS:
            raise InvalidInput(f"unknown training argument {key!r}; allowed: {', '.join(TRAIN_ARGS)}")
        if value is None:
            continue
        kind, lo, hi = TRAIN_ARGS[key]
        if kind is bool:
            if not isinstance(value, bool):
                raise InvalidInput(f"training argument {key}={value!r}: expected true or false")
            out[key] = value
            continue
        number = inputs.number(
            value,
            f"training argument {key}",
            lo=lo,
            hi=hi,
            integer=kind is int,
            lo_open=lo == 0 and kind is float,
        )
        out[key] = kind(number)
    return out


def check_regularizable(method: str, regularize: str) -> None:
    """Refuse an unknown regulariser, or one the method's trained weights cannot carry."""
    if regularize not in REGULARIZERS:
        raise InvalidInput(f"unknown regulariser {regularize!r}; choose one of {', '.join(REGULARIZERS)}")
    if method not in REGULARIZABLE:
        raise InvalidInput(
            f"method {method!r} does not support --regularize {regularize} (use {' or '.join(REGULARIZABLE)})"
        )


def _check_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if not re.fullmatch(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=.*", item, re.S):
            raise InvalidInput(f"--set {item!r}: expected key=value")
    return list(overrides)


def enqueue_train(
    session: Session,
    *,
    domain: str,
    base: str,
    method: str,
    overrides: list[str] | tuple[str, ...] = (),
    method_config: dict[str, Any] | None = None,
    regularize: str | None = None,
    dataset: str | None = None,
    general_dataset: str | None = None,
    args: dict[str, Any] | None = None,
    origin: str = "trained",
    parent_id: str | None = None,
    dedupe_key: str | None = None,
) -> tuple[JobRead, bool]:
    """Queue a training job for `domain` on `base`: (job, created).

    A stored `method_config` (a retrain) names its own regulariser (`core.method_config`)."""
    if method not in TRAIN_METHODS:
        raise InvalidInput(f"unknown method {method!r}; choose one of {', '.join(TRAIN_METHODS)}")
    if regularize is None and method_config:
        regularize = regularizer_name(method_config)
    if regularize is not None:
        check_regularizable(method, regularize)
    if origin not in ("trained", "retrained"):
        raise InvalidInput(f"a training job makes trained or retrained patches, not {origin}")
    if overrides and method_config is not None:
        raise InvalidInput("give either --set overrides or a full method_config, not both")
    overrides = _check_overrides(list(overrides))
    version = get_base_version(session, base)
    train_checks.check_against_base(version, method, train_checks.requested(method, overrides, method_config))
    get_domain(session, domain)
    train_ds = pick_dataset(session, domain, "train", dataset)
    general = pick_dataset(session, domain, "general", general_dataset) if regularize == "alewr" else None
    if parent_id is not None:
        parent_id = get_patch(session, parent_id).id
    payload = {
        "domain": domain,
        "base": base_ref(version),
        "method": method,
        "overrides": overrides,
        "method_config": method_config,
        "regularize": regularize,
        "dataset_id": train_ds.id,
        "dataset": train_ds.name,
        "general_dataset_id": general.id if general else None,
        "args": _check_args(args or {}),
        "origin": origin,
        "parent_id": parent_id,
    }
    return jobs.enqueue(session, "train", payload, dedupe_key=dedupe_key)


def find_importance(session: Session, base: str, dataset_id: int) -> str | None:
    """The digest of the stored importance map of `base` measured on the dataset, if any."""
    version = get_base_version(session, base)
    return session.scalar(
        select(ImportanceMap.artifact_digest).where(
            ImportanceMap.base_version_id == version.id, ImportanceMap.dataset_id == dataset_id
        )
    )


def record_importance(
    session: Session, store: ArtifactStore, base: str, dataset_id: int, file: Path, job_id: str | None
) -> str:
    """Store an importance map for (base, dataset); the first one recorded is kept."""
    existing = find_importance(session, base, dataset_id)
    if existing is not None:
        return existing
    version = get_base_version(session, base)
    blob = artifacts.store_file(session, store, file, IMPORTANCE_MEDIA_TYPE)
    row = {
        "base_version_id": version.id,
        "dataset_id": dataset_id,
        "artifact_digest": blob.digest,
        "job_id": job_id,
    }
    if not insert_or_ignore(session, ImportanceMap, row, ["base_version_id", "dataset_id"]):
        kept = find_importance(session, base, dataset_id)  # a concurrent job recorded one first
        assert kept is not None
        return kept
    audit.record(session, "importance.record", base_ref(version), dataset_id=dataset_id, digest=blob.digest)
    return blob.digest


def enqueue_importance(
    session: Session, base: str, domain: str, dataset: str | None = None
) -> tuple[JobRead, bool]:
    """Queue the measurement of `base`'s importance map on a general dataset of `domain`."""
    version = get_base_version(session, base)
    ds = pick_dataset(session, domain, "general", dataset)
    return jobs.enqueue(
        session,
        "importance",
        {"base": base_ref(version), "domain": domain, "dataset_id": ds.id, "dataset": ds.name},
        dedupe_key=f"importance:{version.id}:{ds.id}",
    )
