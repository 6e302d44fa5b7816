"""Domains: the subject areas patches are trained for (medical, legal, support…)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import AlreadyExists
from registry import pagination
from registry.models import Domain
from registry.pagination import Page
from registry.schemas import DomainRead
from registry.services import audit
from registry.services.lookup import check_name


def create_domain(session: Session, name: str, description: str = "") -> DomainRead:
    check_name("domain name", name)
    if session.scalar(select(Domain.id).where(Domain.name == name)) is not None:
        raise AlreadyExists(f"domain {name!r} already exists")
    row = Domain(name=name, description=description)
    session.add(row)
    session.flush()
    audit.record(session, "domain.create", name, description=description)
    return DomainRead.model_validate(row)


def list_domains(session: Session) -> list[DomainRead]:
    return [DomainRead.model_validate(d) for d in session.scalars(select(Domain).order_by(Domain.name))]


def page_domains(
    session: Session, *, limit: int | None = None, cursor: str | None = None
) -> Page[DomainRead]:
    page = pagination.keyset(
        session, select(Domain), (Domain.name,), lambda d: (d.name,), limit=limit, cursor=cursor
    )
    return Page([DomainRead.model_validate(d) for d in page.items], page.next_cursor)
