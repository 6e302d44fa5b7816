"""What services return: plain pydantic models built while the session is open.

ORM objects never leave `registry.services`; the CLI prints these and the API serialises them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class FamilyRead(Schema):
    name: str
    architecture: str
    created_at: datetime


class BaseVersionRead(Schema):
    ref: str  # "family:version"
    family: str
    version: str
    source_uri: str
    revision: str | None
    parent: str | None
    model_type: str
    arch_fingerprint: str
    tokenizer_fingerprint: str | None
    config_digest: str
    weights_digest: str
    num_parameters: int
    num_tensors: int
    status: str
    created_at: datetime


class BaseVersionDetail(BaseVersionRead):
    tensor_table: list[Any]


class DomainRead(Schema):
    name: str
    description: str
    created_at: datetime


class DatasetRead(Schema):
    domain: str
    name: str
    role: str
    digest: str
    size: int
    rows: int
    available_until: date | None
    available: bool
    created_at: datetime


class AliasRead(Schema):
    domain: str
    base: str
    name: str
    patch_id: str
    updated_at: datetime


class AuditEventRead(Schema):
    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    detail: dict[str, Any]
