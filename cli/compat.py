"""`patchreg compat`: does a patch fit a base version, and why (not); and a family's matrix.

`compat PATCH --base F:V` (the check) and `compat matrix FAMILY` share one name, so `compat` is a
group that routes its known subcommands and hands everything else to the check.
"""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit, print_fields, print_table
from core.forecast import describe
from registry.schemas import CompatMatrix, ServingRead, VerdictRead

_CHECK = "\0check"  # routing token: never typed, since a shell argument cannot hold a NUL byte


class _UnnamedContext(click.Context):
    """Context of a command run under its group's name: usage and hints say `patchreg compat …`."""

    @property
    def command_path(self) -> str:
        if self.info_name is None and self.parent is not None:
            return self.parent.command_path
        return super().command_path


class CheckCommand(click.Command):
    context_class = _UnnamedContext


class CheckOrSubcommand(click.Group):
    """A group whose first argument is a subcommand name or else the default command's arguments."""

    def __init__(self, *args: Any, default: click.Command, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [_CHECK, *args]  # keep the group from reading the check's options as its own
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] == _CHECK:
            return None, self.default, args[1:]
        return super().resolve_command(ctx, args)

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        return ["(PATCH --base FAMILY:VERSION | matrix FAMILY [--domain D])"]


@click.command(cls=CheckCommand)
@click.argument("patch_id", metavar="PATCH")
@click.option(
    "--base", "base_ref", metavar="FAMILY:VERSION", required=True, help="The base version to check against."
)
@click.option("--serving", is_flag=True, help="Also say how each serving engine loads it, and why.")
@json_flag
@pass_app
def check(app: AppContext, patch_id: str, base_ref: str, serving: bool) -> None:
    """Check PATCH against a base version: verdict, reasons, and the LoRA rank a server needs;
    with --serving, one line per export target (PEFT, vLLM, SGLang, LoRAX, TGI, llama.cpp).
    The verdict is recorded for `compat matrix` (audited when it is new or has changed)."""
    row = app.backend.compat(patch_id, base_ref)
    lines = app.backend.serving(patch_id, base_ref, None) if serving else None

    def human() -> None:
        colour = "green" if row.verdict == "compatible" else "red"
        print_fields(
            [
                ("patch", f"{row.patch_id} (made on {row.source_base})"),
                ("base", row.base),
                ("verdict", click.style(row.verdict, fg=colour, bold=True)),
                ("PEFT rank", row.export_rank if row.export_rank is not None else "- (no LoRA form)"),
                ("forecast", forecast_line(row, patch_id, base_ref)),
            ]
        )
        if row.reasons:
            click.echo()
            print_table(row.reasons, [("CODE", "code"), ("MODULE", "module"), ("WHY", "message")])
        if lines is not None:
            click.echo()
            print_serving(lines)

    data: Any = row if lines is None else {**row.model_dump(mode="json"), "serving": lines}
    emit(app.json_output, data, human)


def forecast_line(row: VerdictRead, patch_id: str, base_ref: str) -> str:
    """The forecast in one line, or what to run to get one."""
    if row.forecast is not None:
        return describe(row.forecast)
    if row.portability is None:
        return (
            f"- (no portability statistics yet: `patchreg port {patch_id} --base {base_ref} --no-eval`"
            " measures them from the weights, without evaluating)"
        )
    return "- (no forecast fitted: `python -m bench.science --fit-out core/forecast_fit.json`)"


def print_serving(lines: list[ServingRead]) -> None:
    """One line per export target, coloured by whether it loads as exported."""
    colours = {"exact": "green", "padded": "green", "approximate": "yellow", "merged": "red"}
    for line in lines:
        click.echo(click.style(line.line, fg=colours.get(line.status)))


@click.group(cls=CheckOrSubcommand, default=check)
def compat() -> None:
    """Check a patch against a base version, or show a family's compatibility matrix.

    \b
      patchreg compat PATCH --base FAMILY:VERSION   verdict, reasons, PEFT rank (--json)
        [--serving]                                 and how each serving engine loads it
      patchreg compat matrix FAMILY [--domain D]    every source patch on every version
    """


@compat.command("matrix")
@click.argument("family")
@click.option("--domain", metavar="D", help="Only patches of this domain.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Show the first N rows."
)
@click.option("--all", "show_all", is_flag=True, help="Show every row (fetched page by page).")
@json_flag
@pass_app
def matrix(app: AppContext, family: str, domain: str | None, limit: int, show_all: bool) -> None:
    """Each source patch of FAMILY (rows, by domain then age) on each version (columns): source,
    ported status, incompatible, compatible but not ported, or not checked."""
    table, more = app.backend.matrix(family, domain, None if show_all else limit)
    emit(app.json_output, table, lambda: _print_matrix(table))
    if more:  # on stderr, so --json output stays the matrix
        click.echo(f"showing the first {limit} rows; more match: --limit N or --all", err=True)


def _print_matrix(table: CompatMatrix) -> None:
    versions = [ref.partition(":")[2] for ref in table.versions]
    columns = [("PATCH", "patch"), ("DOMAIN", "domain"), ("METHOD", "method")]
    columns += [(v, f"v:{v}") for v in versions]
    rows = [
        {
            "patch": row.patch_id,
            "domain": row.domain,
            "method": row.method,
            **{f"v:{v}": cell.label for v, cell in zip(versions, row.cells, strict=True)},
        }
        for row in table.rows
    ]
    scope = f"family {table.family}" + (f", domain {table.domain}" if table.domain else "")
    print_table(rows, columns, empty=f"no patches in {scope}")
