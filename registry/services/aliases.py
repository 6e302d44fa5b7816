"""Aliases: named pointers (e.g. `production`) from (domain, base version) to one patch."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session, joinedload

from core.errors import InvalidInput, NotFound
from registry import pagination
from registry.conflicts import insert_or_ignore
from registry.models import Alias, BaseVersion, Domain
from registry.pagination import Page
from registry.schemas import AliasRead
from registry.services import audit
from registry.services.lookup import base_ref, check_name, get_base_version, get_domain, get_patch


def _read(alias: Alias, domain: str, base: str) -> AliasRead:
    return AliasRead(
        domain=domain, base=base, name=alias.name, patch_id=alias.patch_id, updated_at=alias.updated_at
    )


def set_alias(session: Session, domain: str, base: str, name: str, patch_id: str) -> AliasRead:
    check_name("alias name", name)
    domain_row = get_domain(session, domain)
    version = get_base_version(session, base)
    patch = get_patch(session, patch_id)
    if patch.domain_id != domain_row.id or patch.base_version_id != version.id:
        raise InvalidInput(
            f"patch {patch.id} is for {patch.domain.name} on {base_ref(patch.base_version)}, "
            f"not {domain} on {base}"
        )
    # Insert-or-reuse, then lock: concurrent sets of one alias never conflict; the last one wins.
    key = {"domain_id": domain_row.id, "base_version_id": version.id, "name": name}
    created = insert_or_ignore(session, Alias, {**key, "patch_id": patch.id}, list(key))
    alias = session.scalar(
        select(Alias).filter_by(**key).with_for_update().execution_options(populate_existing=True)
    )
    assert alias is not None  # inserted above, or committed and hence visible
    previous = None if created else alias.patch_id
    alias.patch_id = patch.id
    session.flush()
    audit.record(session, "alias.set", f"{domain}@{base}/{name}", patch=patch.id, previous=previous)
    return _read(alias, domain, base)


def resolve_alias(session: Session, domain: str, base: str, name: str) -> str | None:
    """The patch id an alias points to, or None when the alias is not set."""
    domain_row = get_domain(session, domain)
    version = get_base_version(session, base)
    return session.scalar(
        select(Alias.patch_id).where(
            Alias.domain_id == domain_row.id, Alias.base_version_id == version.id, Alias.name == name
        )
    )


ALIASES_ORDER = (Domain.name, Alias.name, Alias.id)  # an alias name repeats across bases


def _aliases(session: Session, domain: str | None) -> Select[Alias, BaseVersion, Domain]:
    stmt = (
        select(Alias, BaseVersion, Domain)
        .join(BaseVersion, Alias.base_version_id == BaseVersion.id)
        .join(Domain, Alias.domain_id == Domain.id)
        .options(joinedload(BaseVersion.family))
    )
    if domain is not None:
        stmt = stmt.where(Domain.name == get_domain(session, domain).name)
    return stmt


def list_aliases(session: Session, domain: str | None = None) -> list[AliasRead]:
    rows = session.execute(_aliases(session, domain).order_by(*ALIASES_ORDER))
    return [_read(alias, d.name, base_ref(version)) for alias, version, d in rows]


def page_aliases(
    session: Session, domain: str | None = None, *, limit: int | None = None, cursor: str | None = None
) -> Page[AliasRead]:
    page = pagination.keyset(
        session,
        _aliases(session, domain),
        ALIASES_ORDER,
        lambda row: (row[2].name, row[0].name, row[0].id),
        limit=limit,
        cursor=cursor,
        rows=True,
    )
    return Page(
        [_read(alias, d.name, base_ref(version)) for alias, version, d in page.items], page.next_cursor
    )


def delete_alias(session: Session, domain: str, base: str, name: str) -> None:
    domain_row = get_domain(session, domain)
    version = get_base_version(session, base)
    alias = session.scalar(
        select(Alias).where(
            Alias.domain_id == domain_row.id, Alias.base_version_id == version.id, Alias.name == name
        )
    )
    if alias is None:
        raise NotFound(f"no alias {name!r} for {domain} on {base}")
    session.delete(alias)
    audit.record(session, "alias.delete", f"{domain}@{base}/{name}", patch=alias.patch_id)
