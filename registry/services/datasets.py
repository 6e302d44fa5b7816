"""Datasets: validated JSONL stored as artifacts, readable until their `available_until` date.

A dataset with `available_until = D` may be read through D - 1 (UTC) and never from D on: that
is how data-use agreements end, and why porting without data matters.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, contains_eager, joinedload

from core.errors import AlreadyExists, DataUnavailable, InvalidInput, NotFound
from core.plans import EvalSet
from core.rows import count_rows
from registry import pagination
from registry.models import Dataset, Domain
from registry.pagination import Page
from registry.schemas import DatasetRead
from registry.services import artifacts, audit
from registry.services.lookup import check_name, get_domain
from registry.store import ArtifactStore

MEDIA_TYPE = "application/jsonl"


def today() -> date:
    return datetime.now(UTC).date()


def is_available(ds: Dataset, on: date | None = None) -> bool:
    return ds.available_until is None or (on or today()) < ds.available_until


def to_read(ds: Dataset) -> DatasetRead:
    return DatasetRead(
        domain=ds.domain.name,
        name=ds.name,
        role=ds.role,
        digest=ds.artifact_digest,
        size=ds.artifact.size,
        rows=ds.rows,
        available_until=ds.available_until,
        available=is_available(ds),
        created_at=ds.created_at,
    )


def add_dataset(
    session: Session,
    store: ArtifactStore,
    domain: str,
    name: str,
    file: Path,
    role: str,
    available_until: date | None = None,
) -> DatasetRead:
    check_name("dataset name", name)
    domain_row = get_domain(session, domain)
    if session.scalar(select(Dataset.id).where(Dataset.domain_id == domain_row.id, Dataset.name == name)):
        raise AlreadyExists(f"dataset {name!r} already exists in domain {domain!r}")
    if available_until is not None and available_until <= today():
        raise InvalidInput(
            f"--available-until {available_until} is not in the future: the data could never be read"
        )
    rows = count_rows(file, role)  # every row checked before the first byte is stored
    blob = artifacts.store_file(session, store, Path(file), MEDIA_TYPE)
    row = Dataset(
        domain=domain_row,
        name=name,
        role=role,
        artifact_digest=blob.digest,
        rows=rows,
        available_until=available_until,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "dataset.add",
        f"{domain}/{name}",
        role=role,
        rows=rows,
        digest=blob.digest,
        available_until=available_until.isoformat() if available_until else None,
    )
    return to_read(row)


DATASETS_ORDER = (Domain.name, Dataset.name)  # unique: a name is unique within its domain


def _datasets(session: Session, domain: str | None) -> Select[Dataset]:
    stmt = select(Dataset).join(Domain).options(contains_eager(Dataset.domain), joinedload(Dataset.artifact))
    if domain is not None:
        stmt = stmt.where(Dataset.domain_id == get_domain(session, domain).id)
    return stmt


def list_datasets(session: Session, domain: str | None = None) -> list[DatasetRead]:
    return [to_read(d) for d in session.scalars(_datasets(session, domain).order_by(*DATASETS_ORDER))]


def page_datasets(
    session: Session, domain: str | None = None, *, limit: int | None = None, cursor: str | None = None
) -> Page[DatasetRead]:
    page = pagination.keyset(
        session,
        _datasets(session, domain),
        DATASETS_ORDER,
        lambda d: (d.domain.name, d.name),
        limit=limit,
        cursor=cursor,
    )
    return Page([to_read(d) for d in page.items], page.next_cursor)


def readable_eval_sets(session: Session, store: ArtifactStore, domain: str) -> list[EvalSet]:
    """The domain's eval datasets that may still be read, oldest first, as verified local files."""
    rows = session.scalars(
        select(Dataset)
        .where(Dataset.domain_id == get_domain(session, domain).id, Dataset.role == "eval")
        .order_by(Dataset.id)
    )
    return [
        EvalSet(ds.id, f"{ds.domain.name}/{ds.name}", readable_path(session, store, ds))
        for ds in rows
        if is_available(ds)
    ]


def readable_file(session: Session, store: ArtifactStore, dataset_id: int) -> Path:
    """`readable_path` of the dataset with this id (as jobs name their datasets)."""
    ds = session.get(Dataset, dataset_id)
    if ds is None:
        raise NotFound(f"no dataset with id {dataset_id} (was it deleted after the job was queued?)")
    return readable_path(session, store, ds)


def readable_path(session: Session, store: ArtifactStore, ds: Dataset) -> Path:
    """The verified local file of a dataset, refused once its availability has ended."""
    if not is_available(ds):
        raise DataUnavailable(
            f"dataset {ds.domain.name}/{ds.name} was available until {ds.available_until}; "
            "it may no longer be read"
        )
    audit.record(session, "dataset.read", f"{ds.domain.name}/{ds.name}", digest=ds.artifact_digest)
    return store.local_path(ds.artifact_digest)


def eval_texts(session: Session, store: ArtifactStore, domain: str, limit: int = 8) -> tuple[str, ...]:
    """Up to `limit` texts (prompt + completion) from the domain's first readable eval dataset: what
    an approximated export's logit error is measured on. Empty when none may be read."""
    from core.rows import read_rows

    for eval_set in readable_eval_sets(session, store, domain):
        return tuple(r.prompt + r.completion for r in read_rows(eval_set.path)[:limit])
    return ()
