"""`patchreg lineage`: where a patch came from and where it went."""

from __future__ import annotations

import click

from cli.context import AppContext, json_flag, pass_app
from cli.output import emit
from core.evidence import describe_gate
from registry.schemas import LineageNode


def _line(node: LineageNode, focus: str) -> str:
    p = node.patch
    parts = [click.style(p.id, bold=p.id == focus), p.origin, f"on {p.base}", p.method, p.status]
    if node.verdict:
        parts.append(f"verdict {node.verdict}")
    if p.train_dataset:
        parts.append(
            f"data {p.train_dataset} sha256:{p.train_dataset_digest[:12] if p.train_dataset_digest else '?'}"
        )
    if p.job_id:
        parts.append(f"job {p.job_id}")
    gate = describe_gate(p.metrics)
    shown = sorted(
        (k, v) for k, v in p.metrics.items() if isinstance(v, int | float) and not (gate and k == "gain")
    )
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in shown)
    if metrics:
        parts.append(metrics)
    if gate:
        parts.append(gate)
    return "  ".join(parts) + ("   <" if p.id == focus else "")


def _print_tree(
    node: LineageNode, focus: str, prefix: str = "", last: bool = True, root: bool = True
) -> None:
    connector = "" if root else ("└─ " if last else "├─ ")
    click.echo(prefix + connector + _line(node, focus))
    child_prefix = prefix + ("" if root else ("   " if last else "│  "))
    for i, child in enumerate(node.children):
        _print_tree(child, focus, child_prefix, i == len(node.children) - 1, root=False)


@click.command()
@click.argument("patch_id", metavar="PATCH")
@json_flag
@pass_app
def lineage(app: AppContext, patch_id: str) -> None:
    """Show the root trained patch and every ported or retrained descendant."""
    tree = app.backend.lineage(patch_id)
    emit(app.json_output, tree, lambda: _print_tree(tree.root, tree.focus))
