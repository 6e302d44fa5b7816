"""The read pages: families and their release trees, the compatibility matrix, a patch, domains and
their data, jobs. Each one is a read with the viewer's token, as the matching `/v1` GET would be."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from core.errors import NotFound
from core.serving import TARGETS
from core.vocab import JOB_KINDS, JOB_STATUSES, PATCH_STATUSES
from registry.schemas import BaseVersionRead, EvaluationRead, LineageNode
from registry.services import (
    aliases,
    audit,
    bases,
    compat,
    datasets,
    domains,
    evaluations,
    jobs,
    lineage,
    matrix,
    patches,
    resolve,
)
from registry.web.render import HtmlRoute, page
from registry.web.session import current_viewer

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)
MATRIX_PAGE = 100  # rows per page of the matrix
FINGERPRINTS = (
    ("architecture", "arch_fingerprint"),
    ("tokenizer", "tokenizer_fingerprint"),
    ("config", "config_digest"),
    ("weights", "weights_digest"),
)


@dataclass
class Release:
    """One version in a family's release tree, with what changed since its parent."""

    version: BaseVersionRead
    changed: list[str]
    children: list[Release] = field(default_factory=list)


def release_trees(versions: list[BaseVersionRead]) -> dict[str, list[Release]]:
    """family -> its root releases (versions without a parent), children in creation order."""
    by_ref = {v.ref: v for v in versions}
    nodes: dict[str, Release] = {}
    for v in sorted(versions, key=lambda v: v.created_at):
        parent = by_ref.get(v.parent) if v.parent else None
        changed = [label for label, key in FINGERPRINTS if parent and getattr(v, key) != getattr(parent, key)]
        nodes[v.ref] = Release(v, changed)
    roots: dict[str, list[Release]] = defaultdict(list)
    for node in nodes.values():
        parent_node = nodes.get(node.version.parent or "")
        (parent_node.children if parent_node else roots[node.version.family]).append(node)
    return dict(roots)


@router.get("/", response_class=HTMLResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/families", status_code=303)


@router.get("/families", response_class=HTMLResponse)
def families(request: Request) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        versions = bases.list_bases(s)
    return page(request, viewer, "families.html", trees=release_trees(versions))


@router.get("/families/{family}", response_class=HTMLResponse)
def family(request: Request, family: str) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        versions = bases.list_bases(s, family)
    if not versions:
        raise NotFound(f"no family named {family!r}")
    return page(request, viewer, "family.html", family=family, trees=release_trees(versions))


@router.get("/families/{family}/matrix", response_class=HTMLResponse)
def family_matrix(
    request: Request,
    family: str,
    domain: str | None = None,
    method: str | None = None,
    cursor: str | None = None,
) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        table = matrix.compat_matrix(s, family, domain or None, limit=MATRIX_PAGE, cursor=cursor or None)
        all_rows = table.rows if not domain else matrix.compat_matrix(s, family, limit=MATRIX_PAGE).rows
        # the gate's sentence for each patch in a cell (why it is validated or degraded)
        gates = {
            p.id: str(p.metrics["gate"])
            for version in table.versions
            for p in patches.list_patches(s, domain or None, version)
            if p.metrics.get("gate")
        }
    rows = [r for r in table.rows if not method or r.method == method]
    return page(
        request,
        viewer,
        "matrix.html",
        matrix=table,
        rows=rows,
        gates=gates,
        domains=sorted({r.domain for r in all_rows}),
        methods=sorted({r.method for r in all_rows}),
        domain=domain or "",
        method=method or "",
    )


def _walk(node: LineageNode) -> list[LineageNode]:
    return [node, *(n for child in node.children for n in _walk(child))]


def _chart(
    tree: list[LineageNode], evals: dict[str, list[EvaluationRead]], root_id: str
) -> list[dict[str, Any]]:
    """Per base version in the lineage and per eval set: base alone, base + patch, and the source
    (the lineage's root on its own base), each as the latest accuracy and loss recorded."""

    def latest(rows: list[EvaluationRead], dataset: str) -> dict[str, Any] | None:
        found = [e.metrics for e in rows if e.dataset == dataset]
        return found[-1] if found else None

    root_evals = evals.get(root_id, [])
    groups = []
    for node in tree:
        p = node.patch
        own = evals.get(p.id, [])
        alone = evals.get(f"base:{p.base}", [])
        for dataset in sorted({e.dataset for e in own}):
            groups.append(
                {
                    "base": p.base,
                    "patch": p,
                    "dataset": dataset,
                    "bars": [
                        ("base alone", latest(alone, dataset)),
                        ("base + patch", latest(own, dataset)),
                        ("source", latest(root_evals, dataset) if p.id != root_id else None),
                    ],
                }
            )
    return groups


@router.get("/patches/{patch_id}", response_class=HTMLResponse)
def patch_page(request: Request, patch_id: str) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        p = patches.show_patch(s, patch_id)
        tree = lineage.lineage(s, p.id)
        nodes = _walk(tree.root)
        evals: dict[str, list[EvaluationRead]] = {}
        for node in nodes:
            evals[node.patch.id] = evaluations.list_for(s, patch_id=node.patch.id)
            evals.setdefault(
                f"base:{node.patch.base}",
                [e for e in evaluations.list_for(s, base=node.patch.base) if e.patch_id is None],
            )
        verdict = compat.get_verdict(s, p.parent_id, p.base) if p.parent_id else None  # the port's check
        pinned = [a for a in aliases.list_aliases(s, p.domain) if a.patch_id == p.id]
        events = audit.list_events(s, 100, subject=p.id)
        family = p.base.partition(":")[0]
        others = [v.ref for v in bases.list_bases(s, family) if v.ref != p.base]
        try:
            chosen = resolve.resolve_patch(s, p.domain, p.base)
        except NotFound:
            chosen = None
    return page(
        request,
        viewer,
        "patch.html",
        patch=p,
        lineage=tree,
        verdict=verdict,
        chart=_chart(nodes, evals, tree.root.patch.id),
        aliases=pinned,
        events=events,
        other_bases=others,
        chosen=chosen,
        targets=TARGETS,
        statuses=PATCH_STATUSES,
    )


@router.get("/domains", response_class=HTMLResponse)
def domains_page(request: Request) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        listed = domains.list_domains(s)
        data = datasets.list_datasets(s)
    by_domain: dict[str, list[Any]] = defaultdict(list)
    for ds in data:
        by_domain[ds.domain].append(ds)
    return page(request, viewer, "domains.html", domains=listed, datasets=by_domain, today=datasets.today())


@router.get("/jobs", response_class=HTMLResponse)
def jobs_page(
    request: Request, status: str | None = None, kind: str | None = None, fragment: bool = False
) -> HTMLResponse:
    viewer = current_viewer(request)
    with viewer.context.transaction() as s:
        listed = jobs.list_jobs(
            s, status=status or None, kind=kind or None, limit=200, debug=viewer.can("admin")
        )
    template = "jobs_table.html" if fragment else "jobs.html"
    return page(
        request,
        viewer,
        template,
        jobs=listed,
        status=status or "",
        kind=kind or "",
        statuses=JOB_STATUSES,
        kinds=JOB_KINDS,
    )
