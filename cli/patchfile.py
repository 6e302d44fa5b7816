"""`patchreg export` and `patchreg patch inspect`: commands that work on a patch file directly.

torch, transformers and the trainer package are imported inside the command bodies so that
`patchreg --help` stays fast; `patch inspect` reads the header alone and never imports torch.
PatchregError propagates; the root group turns it into one stderr line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from core.patchfile import PatchHeader, read_patch_header
from core.serving import MAX_RANK, TARGETS


def _wants_json(ctx: click.Context, flag: bool) -> bool:
    """`--json` on the command, or the root group's global `--json` (its context has `json_output`)."""
    return flag or bool(getattr(ctx.find_root().obj, "json_output", False))


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]


def _summary_json(path: Path, header: PatchHeader) -> dict[str, Any]:
    return {
        "path": str(path),
        "format_version": header.format_version,
        "method": header.method,
        "method_config": header.method_config,
        "metadata": header.metadata,
        "num_params": header.num_params,
        "peft_adapter": header.peft_adapter,
        "export_rank": header.export_rank,
        "modules": {
            name: {
                "kind": m.kind,
                "tensors": {t: {"shape": list(i.shape), "dtype": i.dtype_name} for t, i in m.tensors.items()},
                "rank": m.rank,
                "scale": m.scale,
                "num_params": m.num_params,
            }
            for name, m in header.modules.items()
        },
    }


@click.command("inspect")
@click.argument("patch_file", metavar="PATCH.safetensors", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def inspect_command(ctx: click.Context, patch_file: Path, as_json: bool) -> None:
    """Show a patch's method, config, format version and per-module deltas (header only)."""
    info = _summary_json(patch_file, read_patch_header(patch_file, where=str(patch_file)))
    if _wants_json(ctx, as_json):
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    peft = info["peft_adapter"] or "none (dense or mixed kinds; use --format merged)"
    if info["peft_adapter"] == "LORA":
        peft = f"LORA, max rank {info['export_rank']}"
    head = [
        ["patch", info["path"]],
        ["method", info["method"]],
        ["format", str(info["format_version"])],
        ["config", json.dumps(info["method_config"], sort_keys=True)],
        ["params", f"{info['num_params']:,}"],
        ["peft", peft],
    ]
    for key, value in sorted(info["metadata"].items()):
        head.append([key, value])
    width = max(len(key) for key, _ in head) + 2
    for key, value in head:
        click.echo(f"{key:<{width}}{value}")
    click.echo()
    rows = []
    for name, m in info["modules"].items():
        tensors = " ".join(f"{t}[{','.join(map(str, i['shape']))}]" for t, i in m["tensors"].items())
        extra = f"scale={m['scale']:g}" if m["scale"] is not None else ""
        rank = "-" if m["rank"] is None else str(m["rank"])
        rows.append([name, m["kind"], tensors, rank, f"{m['num_params']:,}", extra])
    for line in _table(rows, ["MODULE", "KIND", "TENSORS", "RANK", "PARAMS", ""]):
        click.echo(line)


@click.command("export")
@click.argument("patch_file", metavar="PATCH.safetensors", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--model", "model_dir", required=True, type=click.Path(path_type=Path), help="Base model directory."
)
@click.option("--format", "fmt", required=True, type=click.Choice(["peft", "merged"]), help="Output form.")
@click.option(
    "-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path), help="New output dir."
)
@click.option("--base-name", default=None, help="base_model_name_or_path to record (default: --model).")
@click.option("--revision", default=None, help="Base model revision to record in the PEFT config.")
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default="peft",
    show_default=True,
    help="With --format peft: the engine the adapter is for (one uniform rank it loads exactly).",
)
@click.option(
    "--approximate",
    type=click.IntRange(1, MAX_RANK),
    metavar="RANK",
    default=None,
    help="Export scale/dense deltas for --target as a rank-RANK truncated SVD (error printed and kept).",
)
@click.option(
    "--eval-rows",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSONL rows to measure an approximation's logit error on (default: fixed probe sentences).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def export_command(
    ctx: click.Context,
    patch_file: Path,
    model_dir: Path,
    fmt: str,
    out_dir: Path,
    base_name: str | None,
    revision: str | None,
    target: str,
    approximate: int | None,
    eval_rows: Path | None,
    as_json: bool,
) -> None:
    """Export a patch as a PEFT adapter (LoRA / IA3, or the LoRA form a serving engine loads) or as
    a merged standalone model."""
    from core.errors import ConfigError
    from core.patchfile import peft_adapter_type
    from trainer.patch.apply import check_compatible
    from trainer.patch.io import load_patch
    from trainer.patch.merge import merge_into_directory
    from trainer.patch.model_shapes import meta_model, target_shapes
    from trainer.patch.peft_export import export_peft, export_rank

    if not (model_dir / "config.json").is_file():
        raise ConfigError(f"--model {model_dir} is not a model directory (no config.json)")
    if target != "peft" and fmt != "peft":
        raise ConfigError(f"--target {target} shapes a PEFT adapter; it does not apply to --format {fmt}")
    if approximate is not None and target == "peft":
        raise ConfigError("--approximate applies to a serving --target (vllm, sglang, lorax, tgi, llama.cpp)")
    patch = load_patch(patch_file)
    result: dict[str, Any] = {"format": fmt, "out": str(out_dir), "modules": len(patch.deltas)}
    if fmt == "merged":
        merge_into_directory(model_dir, patch, out_dir)
    elif target != "peft":
        result["target"] = target
        result["export"] = _export_for_engine(
            patch, model_dir, out_dir, target, base_name, revision, approximate, eval_rows
        )
    else:
        adapter = peft_adapter_type(d.kind for d in patch.deltas.values())
        meta = meta_model(model_dir)
        check_compatible(meta, patch)
        export_peft(patch, out_dir, base_name or str(model_dir), revision, module_shapes=target_shapes(meta))
        result.update(adapter=adapter, export_rank=export_rank(patch))
    if _wants_json(ctx, as_json):
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    if "export" in result:
        from cli.output import export_summary

        click.echo(f"exported a {target} LoRA adapter for {result['modules']} patched modules to {out_dir}")
        click.echo(export_summary(result["export"]))
        return
    what = "merged model" if fmt == "merged" else f"PEFT {result['adapter']} adapter"
    if result.get("export_rank") is not None:
        what += f" (max rank {result['export_rank']})"
    click.echo(f"exported {what} with {result['modules']} modules to {out_dir}")


def _export_for_engine(
    patch: Any,
    model_dir: Path,
    out_dir: Path,
    target: str,
    base_name: str | None,
    revision: str | None,
    approximate: int | None,
    eval_rows: Path | None,
) -> dict[str, Any]:
    """The serving form for `target`, with its decisions in `patchreg.json`, appearing atomically."""
    from core.atomic import atomic_output_dir
    from core.fetch import MANIFEST
    from core.rows import read_rows
    from trainer.checkpoint_weights import serving_facts
    from trainer.patch.engine_export import write_engine_for_base

    texts = [r.prompt + r.completion for r in read_rows(eval_rows)[:8]] if eval_rows is not None else None
    with atomic_output_dir(out_dir) as stage:
        decided = write_engine_for_base(
            patch, stage, target, serving_facts(model_dir), base_name or str(model_dir), revision,
            base_dir=model_dir, approximate=approximate, texts=texts,
        )  # fmt: skip
        (stage / MANIFEST).write_text(json.dumps({"target": target, "export": decided}, indent=2) + "\n")
    return decided
