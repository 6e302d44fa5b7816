"""Query budgets: the main read paths run a number of SQL statements that does not grow with the
size of their answer (no N+1), counted with SQLAlchemy's cursor events on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, event

from bench.synthetic import Shape, generate
from registry.db import transaction
from registry.services import lineage
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
