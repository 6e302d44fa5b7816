"""Read latencies of the registry at N patches, on SQLite and PostgreSQL, through the services.

    python -m bench.registry --sizes 1000 10000 --backends sqlite postgresql [--repeat 30] \
        [--plot docs/benchmarks/registry.svg] [--json results.json]

Generates each registry with `bench.synthetic` (one family of 20 versions, 200 domains, lineage
chains up to 50 hops), then times p50/p99 over `--repeat` calls of: resolve where a patch is served,
resolve where nothing fits (the refusal explains a bounded few), the lineage of a depth-50 chain,
the compat matrix of one domain, a page of 100 rows of the whole family's matrix, the whole matrix
and the whole patch list unpaged (what every list cost before pages), one page of 100 patches (the
first, and one 90% deep), the first page of jobs and a job claim.
Prints a Markdown table (the one in docs/benchmarks.md) and, with --plot, writes p50 against N per
operation as SVG. PostgreSQL runs in a fresh database on the local server (127.0.0.1:5432, as the
tests use), dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench import plot
from bench.synthetic import Shape, generate
from core.errors import NotFound
from registry import migrate, pagination
from registry.db import make_engine, session_factory, transaction
from registry.models import Job
from registry.services import jobs, lineage, matrix, patches, resolve

OPERATIONS = (
    "resolve, served",
    "resolve, refused",
    "lineage, depth 50",
    "matrix, one domain",
    "matrix, family page (100)",
    "matrix, whole family",
    "patch list, whole registry",
    "patch list, first page (100)",
    "patch list, a page 90% deep",
    "jobs, first page (100)",
    "job claim",
)
UNPAGED = ("matrix, whole family", "patch list, whole registry")  # left out of the plot


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


def time_calls(factory: Callable[[], Session], call: Callable[[Session], object], repeat: int) -> list[float]:
    samples = []
    for _ in range(repeat):
        with transaction(factory) as s:
            started = time.perf_counter()
            call(s)
            samples.append((time.perf_counter() - started) * 1000)
    return samples


def refused(s: Session) -> None:
    try:
        resolve.resolve_patch(s, "d0000", "synth:v20", method="full")  # no full patches exist
    except NotFound:
        return
    raise AssertionError("expected nothing to fit")


def measure(url: str, size: int, repeat: int) -> dict[str, tuple[float, float] | str]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    factory = session_factory(engine)
    with transaction(factory) as s:
        made = generate(s, Shape(patches=size))
        s.add_all(Job(kind="evaluate", payload={}, status="queued") for _ in range(min(1000, size // 10)))
    if engine.dialect.name == "postgresql":
        # what autovacuum does within a minute of a bulk insert: without statistics the planner
        # scans the patches table on every step of the recursive CTEs (matrix 10-50x slower)
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    chain = made["chain"]
    with transaction(factory) as s:  # the cursor of the page that starts 90% into the list
        listed = patches.list_patches(s)
        mark = listed[int(len(listed) * 0.9)]
        deep = pagination.encode(mark.created_at, mark.id)
    calls: dict[str, Callable[[Session], object]] = {
        "resolve, served": lambda s: resolve.resolve_patch(s, "d0000", "synth:v1"),
        "resolve, refused": refused,
        "lineage, depth 50": lambda s: lineage.lineage(s, chain[-1]),
        "matrix, one domain": lambda s: matrix.compat_matrix(s, "synth", "d0000"),
        "matrix, family page (100)": lambda s: matrix.compat_matrix(s, "synth", limit=100),
        "matrix, whole family": lambda s: matrix.compat_matrix(s, "synth"),
        "patch list, whole registry": lambda s: patches.list_patches(s),
        "patch list, first page (100)": lambda s: patches.page_patches(s, limit=100),
        "patch list, a page 90% deep": lambda s: patches.page_patches(s, limit=100, cursor=deep),
        "jobs, first page (100)": lambda s: jobs.page_jobs(s, limit=100),
        "job claim": lambda s: jobs.claim(s, "bench", lease_seconds=60),
    }
    results: dict[str, tuple[float, float] | str] = {}
    for name in OPERATIONS:
        slow = name in UNPAGED
        times = max(3, repeat // 10) if slow else repeat
        try:
            results[name] = percentiles(time_calls(factory, calls[name], times))
        except Exception as exc:  # a read that fails at this size is a result too
            results[name] = f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:60]}"
    engine.dispose()
    return results


def _cell(result: tuple[float, float] | str) -> str:
    return result if isinstance(result, str) else f"{result[0]:.1f} / {result[1]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--plot", type=Path, help="Write p50 against N (SVG) here.")
    parser.add_argument("--json", type=Path, help="Write the measurements (JSON) here.")
    args = parser.parse_args()
    table: dict[tuple[str, int], dict[str, tuple[float, float] | str]] = {}
    for backend in args.backends:
        for size in args.sizes:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    table[backend, size] = measure(f"sqlite:///{Path(tmp) / 'r.db'}", size, args.repeat)
            else:
                from tests.conftest import create_pg_database, drop_pg_database

                url = create_pg_database()
                try:
                    table[backend, size] = measure(url, size, args.repeat)
                finally:
                    drop_pg_database(url)
            print(f"measured {backend} at {size} patches", flush=True)
    columns = list(table)
    print("| operation (ms, p50 / p99) | " + " | ".join(f"{b} {n:,}" for b, n in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in OPERATIONS:
        cells = [_cell(table[c][name]) for c in columns]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        rows = [{"backend": b, "patches": n, "results": table[b, n]} for b, n in columns]
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        args.plot.write_text(_plot(table))
        print(f"wrote {args.plot}")


def _plot(table: dict[tuple[str, int], dict[str, tuple[float, float] | str]]) -> str:
    panels: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for (backend, size), results in table.items():
        for name in OPERATIONS:
            result = results[name]
            if name not in UNPAGED and not isinstance(result, str):
                panels.setdefault(backend, {}).setdefault(name, []).append((size, result[0]))
    return plot.chart(panels, "patches in the registry", "p50 latency (ms)")


if __name__ == "__main__":
    main()
