"""Query budgets: the main read paths run a number of SQL statements that does not grow with the
size of their answer (no N+1), counted with SQLAlchemy's cursor events on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event

from bench.synthetic import Shape, generate
from core.errors import InvalidInput, NotFound
from registry.db import transaction
from registry.services import (
    aliases,
    audit,
    bases,
    datasets,
    domains,
    jobs,
    lineage,
    matrix,
    patches,
    resolve,
    tokens,
)
from tests.conftest import Registry


@contextmanager
def counted(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_lineage_is_a_constant_number_of_statements_at_any_depth(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        chains = generate(s, Shape(versions=20, domains=3, patches=120, depth=50))
    chain = chains["chain"]
    assert len(chain) == 50
    costs = {}
    for depth in (1, 5, 50):  # the chain's first patch, one 5 deep, the deepest
        with transaction(registry.factory) as s, counted(registry.engine) as statements:
            tree = lineage.lineage(s, chain[depth - 1])
        costs[depth] = len(statements)
        node, seen = tree.root, 1
        while node.children:
            (node,) = node.children
            seen += 1
        assert tree.root.patch.id == chain[0] and seen == 50 and node.verdict == "compatible"
    assert costs[1] == costs[5] == costs[50] <= 6, costs


def test_patch_pages_cost_the_same_whatever_their_size_or_depth(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        generate(s, Shape(versions=4, domains=5, patches=300, depth=8))
    costs = {}
    for size in (10, 200):
        with transaction(registry.factory) as s, counted(registry.engine) as statements:
            first = patches.page_patches(s, limit=size)
            patches.page_patches(s, limit=size, cursor=first.next_cursor)  # a page deeper in
        costs[size] = len(statements)
    assert costs[10] == costs[200] <= 4, costs


def test_pages_walk_every_patch_once_in_order(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        generate(s, Shape(versions=3, domains=4, patches=95, depth=5))
    with transaction(registry.factory) as s:
        everything = [p.id for p in patches.list_patches(s)]
        walked, cursor, pages = [], None, 0
        while True:
            page = patches.page_patches(s, limit=10, cursor=cursor)
            walked += [p.id for p in page.items]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert walked == everything and len(walked) == 95 and pages == 10
        domain_page = patches.page_patches(s, domain="d0001", limit=1000)
        assert domain_page.next_cursor is None and {p.domain for p in domain_page.items} == {"d0001"}
        with pytest.raises(InvalidInput, match="invalid cursor"):
            patches.page_patches(s, cursor="not-a-cursor!")
        with pytest.raises(InvalidInput, match="limit must be between 1 and 1000"):
            patches.page_patches(s, limit=5000)


def test_a_refusal_explains_a_bounded_few_in_the_same_statements_for_any_domain(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        generate(s, Shape(versions=6, domains=2, patches=400, depth=6))
    costs = {}
    for domain in ("d0000", "d0001"):
        with (
            counted(registry.engine) as statements,
            pytest.raises(NotFound) as refused,
            transaction(registry.factory) as s,
        ):
            resolve.resolve_patch(s, domain, "synth:v6", method="full")  # no full patch anywhere
        costs[domain] = len(statements)
        detail = refused.value.detail
        with transaction(registry.factory) as s:
            in_domain = len(patches.list_patches(s, domain))
        assert in_domain > 150  # a busy domain: far more than a refusal names
        assert (
            len(detail["patches"]) == resolve.MAX_LISTED and detail["more"] == in_domain - resolve.MAX_LISTED
        )
        assert f"; +{detail['more']} more (patchreg patch list --domain {domain})" in refused.value.message
        assert all(p["why"].startswith("synth:v") for p in detail["patches"])
    assert costs["d0000"] == costs["d0001"] <= 9, costs


def test_matrix_pages_cost_the_same_and_add_up_to_the_whole(registry: Registry) -> None:
    with transaction(registry.factory) as s:
        generate(s, Shape(versions=5, domains=3, patches=240, depth=5))
    costs = {}
    with transaction(registry.factory) as s:
        whole = matrix.compat_matrix(s, "synth")
        assert whole.next_cursor is None and len(whole.rows) > 30
        for size in (5, 30):
            with counted(registry.engine) as statements:
                first = matrix.compat_matrix(s, "synth", limit=size)
                deeper = matrix.compat_matrix(s, "synth", limit=size, cursor=first.next_cursor)
            costs[size] = len(statements)
            assert [r.patch_id for r in first.rows + deeper.rows] == [
                r.patch_id for r in whole.rows[: 2 * size]
            ]
            assert [r.model_dump() for r in first.rows] == [r.model_dump() for r in whole.rows[:size]]
        walked, cursor = [], None
        while True:
            table = matrix.compat_matrix(s, "synth", limit=7, cursor=cursor)
            walked += table.rows
            if table.next_cursor is None:
                break
            cursor = table.next_cursor
        assert [r.model_dump() for r in walked] == [r.model_dump() for r in whole.rows]
    assert costs[5] == costs[30] <= 12, costs


def _every_list_filled(registry: Registry, tmp_path: Path) -> None:
    """Dozens of rows in every list, spread over many domains and versions (so a lazy load per row
    would show as more statements on a bigger page)."""
    with transaction(registry.factory) as s:
        s.info["actor"] = "test"
        generate(s, Shape(versions=12, domains=30, patches=90, depth=3))
    rows = tmp_path / "rows.jsonl"
    with transaction(registry.factory) as s:
        s.info["actor"] = "test"
        for i, p in enumerate(patches.list_patches(s)[:30]):
            rows.write_text(f'{{"text": "row {i}"}}\n')
            datasets.add_dataset(s, registry.store, p.domain, f"data{i}", rows, "train", None)
            aliases.set_alias(s, p.domain, p.base, f"stage{i}", p.id)
            tokens.create(s, f"token{i}", ["read"])


PAGERS = {
    "bases": lambda s, **kw: bases.page_bases(s, **kw),
    "domains": lambda s, **kw: domains.page_domains(s, **kw),
    "datasets": lambda s, **kw: datasets.page_datasets(s, **kw),
    "aliases": lambda s, **kw: aliases.page_aliases(s, **kw),
    "jobs": lambda s, **kw: jobs.page_jobs(s, **kw),
    "audit": lambda s, **kw: audit.page_events(s, **kw),
    "tokens": lambda s, **kw: tokens.page_tokens(s, **kw),
}


def test_every_list_page_costs_the_same_whatever_its_size(registry: Registry, tmp_path: Path) -> None:
    _every_list_filled(registry, tmp_path)
    for name, pager in PAGERS.items():
        costs = {}
        for size in (2, 6):
            with transaction(registry.factory) as s, counted(registry.engine) as statements:
                first = pager(s, limit=size)
                deeper = pager(s, limit=size, cursor=first.next_cursor)
            assert len(first.items) == len(deeper.items) == size, name
            costs[size] = len(statements)
        assert costs[2] == costs[6] <= 2, (name, costs)  # a statement per page


def test_a_claim_costs_the_same_however_long_the_queue(registry: Registry) -> None:
    """Claiming reads one job by the status indexes, whatever is queued or finished around it."""
    from registry.models import Job

    costs = {}
    for queued in (3, 400):
        with transaction(registry.factory) as s:
            s.add_all(Job(kind="evaluate", payload={}, status="queued") for _ in range(queued))
            s.add_all(Job(kind="evaluate", payload={}, status="succeeded") for _ in range(queued))
        with transaction(registry.factory) as s, counted(registry.engine) as statements:
            claimed = jobs.claim(s, "budget", lease_seconds=60)
        assert claimed is not None and claimed.status == "running"
        costs[queued] = len(statements)
    assert costs[3] == costs[400] <= 4, costs
