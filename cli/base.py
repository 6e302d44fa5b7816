"""`patchreg base`: base model families and versions."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.listing import page_options, rows_of
from cli.output import emit, print_fields, print_table
from cli.progress import byte_progress
from registry.schemas import ArchitectureRead, BaseVersionRead, MethodTargetsRead

LIST_COLUMNS = [
    ("BASE", "ref"),
    ("PARENT", "parent"),
    ("TYPE", "model_type"),
    ("PARAMS", "num_parameters"),
    ("ARCH", "arch_short"),
    ("SOURCE", "source_uri"),
    ("REGISTERED", "created_at"),
]


@click.group()
def base() -> None:
    """Register and inspect base model versions (FAMILY:VERSION)."""


@base.command("register")
@click.argument("ref", metavar="FAMILY:VERSION")
@click.argument("source", metavar="SOURCE")
@click.option("--parent", metavar="FAMILY:VERSION", help="The version this one evolved from.")
@json_flag
@pass_app
def register(app: AppContext, ref: str, source: str, parent: str | None) -> None:
    """Register a base version from a local model directory or hf://ORG/NAME[@REVISION]
    (against a server, SOURCE is read by the server: hf://, or a path on its machine).

    Reads config.json, the safetensors headers and the tokenizer files to fingerprint the model;
    weights are hashed in a stream, never loaded.
    """
    with byte_progress(f"hashing {ref}", not app.json_output and app.remote is None) as progress:
        row = app.backend.register_base(ref, source, parent, progress)
    emit(
        app.json_output,
        row,
        lambda: _said_registered(row),
    )


def _said_registered(row: BaseVersionRead) -> None:
    click.echo(f"registered {row.ref} ({row.num_parameters:,} parameters, arch {row.arch_fingerprint[:12]})")
    if row.port_all_job:
        click.echo(
            f"queued job {row.port_all_job}: port every patch of {row.parent}'s line onto {row.ref} "
            "(`patchreg worker` runs it; `patchreg jobs show` follows it)"
        )


@base.command("list")
@click.option("--family", metavar="F", help="Only this family.")
@page_options(100, "by family, oldest version first")
@json_flag
@pass_app
def list_(app: AppContext, family: str | None, limit: int, show_all: bool) -> None:
    """List base versions."""
    rows, note = rows_of(app, "bases", limit, show_all, family=family)
    table = [{**r.model_dump(), "arch_short": r.arch_fingerprint[:12]} for r in rows]
    emit(app.json_output, rows, lambda: print_table(table, LIST_COLUMNS, empty="no base versions registered"))
    note()


@base.command("show")
@click.argument("ref", metavar="FAMILY:VERSION")
@click.option("--tensors", is_flag=True, help="Also print the tensor table (name, shape, dtype).")
@json_flag
@pass_app
def show(app: AppContext, ref: str, tensors: bool) -> None:
    """Show a base version with its fingerprints."""
    row = app.backend.show_base(ref)

    def human() -> None:
        print_fields(
            [
                ("base", row.ref),
                ("parent", row.parent),
                ("source", row.source_uri),
                ("revision", row.revision),
                ("model type", row.model_type),
                ("architecture", _architecture_line(row.architecture)),
                ("sizes", _dims_line(row.architecture.dims)),
                ("parameters", row.num_parameters),
                ("tensors", row.num_tensors),
                ("arch fingerprint", row.arch_fingerprint),
                ("tokenizer", row.tokenizer_fingerprint),
                ("config", row.config_digest),
                ("weights", row.weights_digest),
                ("status", row.status),
                ("registered", row.created_at),
            ]
        )
        if row.architecture.methods:
            click.echo()
            click.echo(click.style("default targets (when no --set target_modules is given)", bold=True))
            print_fields([(f"  {m.method}", _targets_line(m)) for m in row.architecture.methods])
        if tensors:
            click.echo()
            table = [
                {"name": n, "shape": "×".join(map(str, s)) or "scalar", "dtype": d}
                for n, s, d in row.tensor_table
            ]
            print_table(table, [("TENSOR", "name"), ("SHAPE", "shape"), ("DTYPE", "dtype")])

    emit(app.json_output, row, human)


def _architecture_line(arch: ArchitectureRead) -> str:
    if arch.name is None:
        return f"unknown: {arch.note}"
    line = f"{arch.name}, decoder layers {arch.layers}.N"
    return f"{line}; {arch.note}" if arch.note else line


def _dims_line(dims: dict[str, int] | None) -> str | None:
    if not dims:
        return None
    kv = f" ({dims['kv_heads']} KV)" if dims["kv_heads"] != dims["heads"] else ""
    return (
        f"{dims['layers']} layers, hidden {dims['hidden']}, {dims['heads']} heads{kv}, "
        f"head size {dims['head_dim']}"
    )


def _targets_line(m: MethodTargetsRead) -> str:
    line = f"{','.join(m.parts)}: {', '.join(m.targets) or '(none)'}"
    if m.optional_parts:
        ratios = "/".join(f"{part[0]}_ratio" for part in m.optional_parts)
        line += f"; {ratios} add {','.join(m.optional_parts)}"
    return line
