"""The package boundaries of DESIGN.md, checked on the source: who may import whom.

Every import counts, lazy ones inside functions too, except where a rule says "at module level":
`registry/api` may load the trainer inside a handler (PEFT conversion), and `cli` loads torch only
inside the commands that need it. Another check keeps the modules free of import cycles.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "registry", "trainer", "worker", "cli", "client")
ML = ("torch", "transformers", "peft", "safetensors.torch", "tokenizers")
WEB = ("fastapi", "starlette", "uvicorn", "python_multipart")


def _modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path, *, module_level_only: bool = False, skip_type_checking: bool = False) -> set[str]:
    """Imported module names; `module_level_only` skips function bodies and TYPE_CHECKING blocks,
    `skip_type_checking` only the latter."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside_function = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                if not (module_level_only or skip_type_checking):
                    visit(child, top)
                continue
            if isinstance(child, ast.Import) and (top or not module_level_only):
                found.update(alias.name for alias in child.names)
            elif (
                isinstance(child, ast.ImportFrom)
                and child.level == 0
                and child.module
                and (top or not module_level_only)
            ):
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child, top and not inside_function)

    visit(tree, True)
    return found


def _hits(names: set[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


RULES = [
    # (package prefix, forbidden imports, module level only?, why)
    (
        "core",
        (*ML, *WEB, "sqlalchemy", "click", "registry", "trainer", "worker", "cli"),
        False,
        "torch-free contracts",
    ),
    ("registry", (*ML, "click", "trainer", "worker", "cli"), True, "the API starts without torch"),
    ("trainer", ("sqlalchemy", "alembic", "registry", "worker", "cli", *WEB, "click"), False, "no database"),
    ("worker", ("cli", *WEB, "click"), False, "the bridge serves jobs, not users"),
    ("cli", (*ML,), True, "`patchreg --help` stays fast"),
]


@pytest.mark.parametrize(("prefix", "forbidden", "top_only", "why"), RULES, ids=[r[0] for r in RULES])
def test_import_rules(prefix: str, forbidden: tuple[str, ...], top_only: bool, why: str) -> None:
    package = prefix.split(".")[0]
    broken = {
        module: hits
        for module, path in _modules(package)
        if module.startswith(prefix)
        and (hits := _hits(_imports(path, module_level_only=top_only), forbidden))
    }
    assert broken == {}, f"{prefix} must not import these ({why})"


# What the Python client may import: the standard library, httpx and pydantic, the torch-free
# contracts and the schemas the API answers with. Never the database, the server, the trainer.
CLIENT_MAY_IMPORT = ("client", "core", "registry.schemas", "httpx", "pydantic")


def test_client_imports_only_the_contracts_and_the_schemas() -> None:
    def allowed(name: str) -> bool:
        return name.split(".")[0] in sys.stdlib_module_names or any(
            name == a or name.startswith(a + ".") for a in CLIENT_MAY_IMPORT
        )

    broken = {
        module: sorted(n for n in _imports(path) if not allowed(n)) for module, path in _modules("client")
    }
    assert {m: hits for m, hits in broken.items() if hits} == {}, "the client needs no torch and no database"


def test_registry_core_never_imports_the_web_framework() -> None:
    broken = {
        module: hits
        for module, path in _modules("registry")
        if not module.startswith(("registry.api", "registry.web"))
        and (hits := _hits(_imports(path), (*WEB, *ML, "trainer")))
    }
    assert broken == {}


def test_the_web_pages_read_through_the_services_only() -> None:
    """registry/web renders what the services return: no ML, no trainer, no ORM models."""
    broken = {
        module: hits
        for module, path in _modules("registry")
        if module.startswith("registry.web")
        and (hits := _hits(_imports(path), (*ML, "trainer", "worker", "cli", "registry.models")))
    }
    assert broken == {}


def test_orm_classes_stay_inside_the_registry() -> None:
    outside = {
        module
        for package in ("core", "trainer", "worker", "cli")
        for module, path in _modules(package)
        if _hits(_imports(path), ("registry.models",))
    }
    assert outside == set()


def test_no_import_cycles() -> None:
    """Between modules, lazy imports inside functions count too (a lazy import that only breaks a
    cycle at import time still ties the two modules together); a package importing its own
    submodules (registration in `__init__`) does not, nor does a TYPE_CHECKING import."""
    graph: dict[str, set[str]] = {}
    for package in PACKAGES:
        for module, path in _modules(package):
            graph[module] = {
                t for t in _imports(path, skip_type_checking=True) if t.split(".")[0] in PACKAGES
            }
    modules = set(graph)

    def resolve(name: str) -> str | None:  # `from a.b import c` names a.b.c, which may be an attribute
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def related(a: str, b: str) -> bool:
        return a == b or a.startswith(b + ".") or b.startswith(a + ".")

    edges = {m: {r for t in ts if (r := resolve(t)) and not related(m, r)} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := walk(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_every_job_kind_has_a_handler() -> None:
    from core.vocab import JOB_KINDS
    from worker.handlers import HANDLERS

    assert set(HANDLERS) == set(JOB_KINDS)


def test_every_error_code_has_an_http_status_and_an_exit_code() -> None:
    from cli.errors import EXIT_USER_ERROR, to_user_error
    from core import errors
    from registry.api.errors import STATUS

    def family(cls: type) -> Iterator[type]:
        yield cls
        for sub in cls.__subclasses__():
            yield from family(sub)

    classes = [c for c in family(errors.PatchregError) if c.__module__ == "core.errors"]
    codes = {c.code for c in classes if c is not errors.PatchregError}
    assert codes - set(STATUS) == set()
    assert all(to_user_error(errors.PatchregError("x")).exit_code == EXIT_USER_ERROR == 1 for _ in classes)
