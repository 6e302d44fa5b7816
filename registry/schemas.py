"""What services return: plain pydantic models built while the session is open.

ORM objects never leave `registry/` (tests/test_architecture.py); the CLI prints these and the API
serialises them. What the worker measures travels as `core.plans` data inside these schemas.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.plans import MeasurePlan


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


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
    port_all_job: str | None = None  # set when registering a version with a parent queued its porting


class MethodTargetsRead(Schema):
    """What a method trains on an architecture when the user names no targets."""

    method: str
    parts: list[str]  # the parts (q, k, v, o, gate, up, down) its targets compute
    targets: list[str]  # layer-relative projection paths (`self_attn.qkv_proj`)
    optional_parts: list[str] = []  # s2ft: parts its v_ratio/u_ratio add on this architecture


class ArchitectureRead(Schema):
    """The catalog entry (`core.arch`) a base version is, or why it has none."""

    model_type: str
    name: str | None  # catalog name ("Phi-3"); None when model_type is not in the catalog
    layers: str | None  # runtime prefix of the decoder layers (`model.layers`)
    methods: list[MethodTargetsRead]
    dims: dict[str, int] | None  # layers, hidden, heads, kv_heads, head_dim (from the recorded config)
    note: str | None  # the unknown-architecture message, or that no config was recorded


class BaseVersionDetail(BaseVersionRead):
    tensor_table: list[Any]
    config: dict[str, Any] | None  # config.json without volatile keys; None before revision 0003
    architecture: ArchitectureRead


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


class PatchRead(Schema):
    id: str
    domain: str
    base: str
    method: str
    method_config: dict[str, Any]
    digest: str
    size: int
    trainable_params: int
    origin: str
    parent_id: str | None
    train_dataset: str | None  # "domain/name"
    train_dataset_digest: str | None
    job_id: str | None
    status: str
    metrics: dict[str, Any]
    created_at: datetime


class Reason(Schema):
    """One finding of a compatibility check: machine-readable fields plus a sentence for people."""

    code: str
    severity: str  # "error" makes the verdict incompatible; "info" does not
    message: str
    module: str | None = None
    expected: Any = None
    found: Any = None


class VerdictRead(Schema):
    patch_id: str
    base: str
    source_base: str
    verdict: str
    reasons: list[Reason]
    export_rank: int | None
    portability: dict[str, Any] | None
    # core.forecast from the portability statistics: will the port validate? (None: none measured)
    forecast: dict[str, Any] | None = None
    checked_at: datetime


class ServingRead(Schema):
    """How one export target loads a patch on a base (`core.serving.assess`)."""

    target: str
    status: str  # exact | padded | approximate | merged (needs --format merged)
    rank: int | None
    padded_bytes: int
    rule: str
    note: str | None
    line: str  # the sentence people read


class LineageNode(Schema):
    patch: PatchRead
    verdict: str | None  # the compatibility verdict on its own base, for ported patches
    children: list[LineageNode]


class Lineage(Schema):
    focus: str  # the patch that was asked about
    root: LineageNode


class EvaluationRead(Schema):
    patch_id: str | None  # None: the base alone
    base: str
    dataset: str  # "domain/name"
    metrics: dict[str, Any]
    job_id: str | None
    created_at: datetime


class Resolution(Schema):
    """What `fetch` serves for (domain, base): the patch and the one-sentence reason it was chosen."""

    patch: PatchRead
    why: str


class MatrixCell(Schema):
    """One (source patch, base version) cell of a family's compatibility matrix.

    `state` is "source", "ported", "incompatible", "compatible" (checked, not ported) or
    "not checked"; `label` is what people read ("source (validated)", "degraded", …).
    """

    version: str  # "family:version"
    state: str
    label: str
    patch_id: str | None = None  # the source itself or its ported copy on this version
    status: str | None = None
    # for "incompatible": why, one sentence per failed check (a factory: a page builds thousands of
    # cells, and a literal [] default is deep-copied into each)
    reasons: list[str] = Field(default_factory=list)


class MatrixRow(Schema):
    patch_id: str
    domain: str
    method: str
    origin: str
    base: str
    cells: list[MatrixCell]


class CompatMatrix(Schema):
    family: str
    domain: str | None
    versions: list[str]  # "family:version", in creation order
    rows: list[MatrixRow]
    next_cursor: str | None = None  # a page of rows: where the next one starts (None: the last)


class JobRead(Schema):
    id: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    dedupe_key: str | None
    worker: str | None
    lease_until: datetime | None
    run_after: datetime
    progress: dict[str, Any]
    message: str
    result: dict[str, Any] | None
    error: str | None  # one line: `code: message`
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_detail: str | None = None  # the whole error, traceback included: admins and the CLI only


class TokenRead(Schema):
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


class Identity(Schema):
    """`GET /v1/whoami`: the token a request was made with (None when reads are open) and its scopes."""

    token: str | None
    scopes: list[str]


class PortPlan(Schema):
    """A port as recorded so far (verdict, the ported record) and what is left to measure.

    `measure` is None when nothing will be measured: the verdict was incompatible."""

    verdict: VerdictRead
    patch: PatchRead | None  # the ported record; None when incompatible
    created: bool
    source_id: str
    source_base: str
    target_base: str
    measure: MeasurePlan | None = None
    why_not_evaluated: str | None = None  # set when the plan measures no eval data


class PortReport(Schema):
    """What a port did: the verdict, the ported patch, what was measured and how the gate ruled."""

    verdict: VerdictRead
    patch: PatchRead | None
    created: bool
    portability: dict[str, Any] | None = None
    forecast: dict[str, Any] | None = None  # core.forecast, made from `portability` before any evaluation
    rows: list[dict[str, Any]] = []
    noop: dict[str, Any] | None = None
    status: str | None = None
    why: str = ""


class EvaluationPlan(Schema):
    """An `evaluate` job's plan: a trained patch to measure on its own base, or a ported patch to
    re-check through its port (`port_of` = (source patch, base))."""

    patch_id: str
    base: str
    port_of: tuple[str, str] | None = None
    measure: MeasurePlan | None = None  # None: ported, or the domain has no readable eval data


class GcItem(Schema):
    kind: str  # "blob" (no artifacts row has its digest) or "temp" (an entry under <store>/tmp)
    name: str  # the blob's digest, or the temp entry's name (relative to the temp root)
    size: int
    age_seconds: float


class GcReport(Schema):
    """What `gc` found: `removed` went (or, on a dry run, would go); `kept` are unreferenced blobs
    and temp entries younger than the age guard, which a write in progress may still need."""

    dry_run: bool
    older_than_seconds: float
    removed: list[GcItem]
    kept: list[GcItem]

    def total(self, kind: str, *, kept: bool = False) -> tuple[int, int]:
        """(count, bytes) of one kind of item, removed or kept."""
        items = [i for i in (self.kept if kept else self.removed) if i.kind == kind]
        return len(items), sum(i.size for i in items)
