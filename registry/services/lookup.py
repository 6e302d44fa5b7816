"""Finding rows by the names people type: `family:version`, domain names, patch-id prefixes."""

from __future__ import annotations

import re
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Ambiguous, InvalidInput, NotFound
from registry.models import BaseFamily, BaseVersion, Dataset, Domain, Patch

T = TypeVar("T")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(kind: str, value: str) -> str:
    if not NAME_RE.match(value):
        raise InvalidInput(
            f"invalid {kind} {value!r}: use up to 100 letters, digits, '.', '_' or '-', starting alphanumeric"
        )
    return value


def parse_base_ref(ref: str) -> tuple[str, str]:
    family, sep, version = ref.partition(":")
    if not sep or not family or not version:
        raise InvalidInput(f"invalid base reference {ref!r}: expected FAMILY:VERSION, e.g. llama3:3.1")
    return check_name("family name", family), check_name("version", version)


def base_ref(version: BaseVersion) -> str:
    return f"{version.family.name}:{version.version}"


def get_family(session: Session, name: str) -> BaseFamily:
    family = session.scalar(select(BaseFamily).where(BaseFamily.name == name))
    if family is None:
        raise NotFound(f"no base family named {name!r}")
    return family


def get_base_version(session: Session, ref: str) -> BaseVersion:
    family, version = parse_base_ref(ref)
    row = session.scalar(
        select(BaseVersion).join(BaseFamily).where(BaseFamily.name == family, BaseVersion.version == version)
    )
    if row is None:
        known = session.scalars(
            select(BaseVersion.version).join(BaseFamily).where(BaseFamily.name == family)
        ).all()
        hint = f" (known versions of {family}: {', '.join(sorted(known))})" if known else ""
        raise NotFound(f"no base version {ref}{hint}")
    return row


def get_domain(session: Session, name: str) -> Domain:
    domain = session.scalar(select(Domain).where(Domain.name == name))
    if domain is None:
        raise NotFound(f"no domain named {name!r}; create it with `patchreg domain create {name}`")
    return domain


def get_dataset(session: Session, domain: str, name: str) -> Dataset:
    row = session.scalar(select(Dataset).join(Domain).where(Domain.name == domain, Dataset.name == name))
    if row is None:
        raise NotFound(f"no dataset {name!r} in domain {domain!r}")
    return row


def by_id_prefix(session: Session, model: type[T], noun: str, id_or_prefix: str) -> T:
    """A row by its short hex id or any unique prefix of at least 4 characters."""
    prefix = id_or_prefix.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{4,12}", prefix):
        raise InvalidInput(f"invalid {noun} id {id_or_prefix!r}: expected 4 to 12 hex digits")
    column = model.id  # type: ignore[attr-defined]
    # A range, not LIKE 'prefix%': both databases walk the primary key for it (SQLite's LIKE is
    # case-insensitive and PostgreSQL's needs a C collation to use an index). Ids are lowercase
    # hex, so every id with this prefix sorts between the prefix and the prefix + "g".
    within = (column >= prefix) & (column < prefix + "g")
    rows = session.scalars(select(model).where(within).order_by(column).limit(6)).all()
    if not rows:
        raise NotFound(f"no {noun} with id {prefix}")
    if len(rows) > 1:
        ids = ", ".join(r.id for r in rows[:5])  # type: ignore[attr-defined]
        raise Ambiguous(f"{noun} id prefix {prefix} matches several ids ({ids}…); type more of it")
    return rows[0]


def get_patch(session: Session, id_or_prefix: str) -> Patch:
    """A patch by its id or any unique prefix of at least 4 characters."""
    return by_id_prefix(session, Patch, "patch", id_or_prefix)
