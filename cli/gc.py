"""`patchreg gc`: find and remove blobs no row references and temp files a dead process left.

Nothing younger than `--older-than` is touched (see `registry.services.gc` for why that is safe
next to live writers); `--dry-run` only reports.
"""

from __future__ import annotations

import re

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit
from registry.schemas import GcReport
from registry.services import gc as gc_service

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType[float]):
    """`90`, `90s`, `30m`, `2h` or `7d`, as seconds."""

    name = "duration"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        match = _DURATION.match(str(value).lower())
        if match is None:
            self.fail(f"{value!r} is not a duration (e.g. 90s, 30m, 2h, 7d)", param, ctx)
        return float(match.group(1)) * _UNIT[match.group(2)]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:,.1f} {unit}"


def _summary(report: GcReport) -> None:
    verb = "would remove" if report.dry_run else "removed"
    for kind, label in (("blob", "unreferenced blobs"), ("temp", "stale temp entries")):
        count, size = report.total(kind)
        young, young_size = report.total(kind, kept=True)
        line = f"{verb} {count} {label} ({_size(size)})"
        if young:
            line += f"; kept {young} younger than the age guard ({_size(young_size)})"
        click.echo(line)
    for item in report.removed:
        click.echo(f"  {item.kind:<5} {item.name}  {_size(item.size)}, untouched {item.age_seconds:,.0f}s")


@click.command()
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option(
    "--older-than",
    type=Duration(),
    default=None,
    help="Age guard: only touch what has not changed for this long, e.g. 30m, 2h, 7d "
    "(default $PATCHREG_TEMP_AGE_GUARD_SECONDS, one hour).",
)
@json_flag
@pass_app
def gc(app: AppContext, dry_run: bool, older_than: float | None) -> None:
    """Remove blobs no row references and temp files left by killed processes.

    A blob or temp entry younger than the age guard is always kept: a write may be between storing
    its blob and committing the row that references it, or still streaming an upload. The guard
    must exceed the longest such write.
    """
    guard = app.settings.temp_age_guard_seconds if older_than is None else older_than
    with app.transaction() as s:
        report = gc_service.collect(s, app.store, older_than=guard, dry_run=dry_run)
    emit(app.json_output, report, lambda: _summary(report))
