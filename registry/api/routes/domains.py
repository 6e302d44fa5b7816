"""Domains: list and create."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from registry.api.auth import Reader, Writer
from registry.schemas import DomainRead
from registry.services import domains

router = APIRouter(tags=["domains"])


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""


@router.get("/domains")
def list_domains(ctx: Reader) -> list[DomainRead]:
    with ctx.transaction() as s:
        return domains.list_domains(s)


@router.post("/domains", status_code=201)
def create_domain(body: DomainCreate, ctx: Writer) -> DomainRead:
    with ctx.transaction() as s:
        return domains.create_domain(s, body.name, body.description)
