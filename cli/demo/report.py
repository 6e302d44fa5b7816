"""What the demo prints at the end: the evaluation table, what became of each port, the summary.

Every number comes from the registry: the evaluations the worker recorded and the patches' status
and gate reasons (the share of its source's gain a port kept included). Nothing is computed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from cli.context import AppContext
from cli.demo.plan import DOMAIN, EVAL, V1, V2
from cli.output import print_table
from core.method_config import method_label
from registry.schemas import PatchRead, VerdictRead
from registry.services import compat, evaluations, patches

# every patch status, in the order a tally names them (tests/cli/test_demo.py checks it covers them)
STATUS_ORDER = ("validated", "inconclusive", "degraded", "candidate", "rejected", "deprecated")


@dataclass
class Story:
    """One trained patch and what the release of v2 made of it."""

    label: str
    source: PatchRead
    ported: PatchRead | None
    retrained: PatchRead | None
    verdict: VerdictRead | None
    v1: dict[str, Any] | None  # metrics on the eval set, per role
    on_v1: dict[str, Any] | None
    v2: dict[str, Any] | None
    on_v2: dict[str, Any] | None
    retrained_on_v2: dict[str, Any] | None

    @property
    def kept(self) -> float | None:
        """The share of its source's gain the port kept, as the gate measured it (per-row scores:
        `core.evidence`); None when the port was not gated against a source with a gain."""
        evidence = self.ported.metrics.get("evidence") if self.ported is not None else None
        kept = evidence.get("kept") if isinstance(evidence, dict) else None
        return float(kept["fraction"]) if kept else None


def gather(app: AppContext) -> list[Story]:
    with app.transaction() as s:
        on_v1, on_v2 = patches.list_patches(s, DOMAIN, V1), patches.list_patches(s, DOMAIN, V2)
        measured: dict[tuple[str, str | None], dict[str, Any]] = {}
        for base in (V1, V2):
            for e in evaluations.list_for(s, base=base):  # oldest first: the newest one wins
                if e.dataset == f"{DOMAIN}/{EVAL}":
                    measured[(base, e.patch_id)] = e.metrics
        stories = []
        for src in (p for p in on_v1 if p.origin == "trained"):
            ported = next((p for p in on_v2 if p.origin == "ported" and p.parent_id == src.id), None)
            retrained = next((p for p in on_v2 if p.origin == "retrained" and p.parent_id == src.id), None)
            stories.append(
                Story(
                    label=method_label(src.method, src.method_config),
                    source=src,
                    ported=ported,
                    retrained=retrained,
                    verdict=compat.get_verdict(s, src.id, V2),
                    v1=measured.get((V1, None)),
                    on_v1=measured.get((V1, src.id)),
                    v2=measured.get((V2, None)),
                    on_v2=measured.get((V2, ported.id)) if ported else None,
                    retrained_on_v2=measured.get((V2, retrained.id)) if retrained else None,
                )
            )
    return stories


def _cell(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "-"
    acc = metrics.get("accuracy")
    return (f"{acc:.3f}" if acc is not None else "-") + f" / {metrics['loss']:.3f}"


def print_evaluations(stories: list[Story], eval_rows: int) -> None:
    one_row = f", one row = {1 / eval_rows:.3f}" if eval_rows else ""
    click.echo(f"    each cell: accuracy / loss on {DOMAIN}/{EVAL} ({eval_rows} two-choice rows{one_row})")
    rows = [
        {
            "method": st.label,
            "v1": _cell(st.v1),
            "source": _cell(st.on_v1),
            "v2": _cell(st.v2),
            "ported": _cell(st.on_v2),
            "kept": f"{st.kept:.0%}" if st.kept is not None else "-",
            "status": st.ported.status if st.ported else (st.verdict.verdict if st.verdict else "-"),
            "retrained": _cell(st.retrained_on_v2) + (f" {st.retrained.status}" if st.retrained else ""),
        }
        for st in stories
    ]
    columns = [
        ("METHOD", "method"),
        ("V1 ALONE", "v1"),
        ("SOURCE ON V1", "source"),
        ("V2 ALONE", "v2"),
        ("V2 + PORTED", "ported"),
        ("KEPT", "kept"),
        ("PORT", "status"),
        ("V2 + RETRAINED", "retrained"),
    ]
    print_table(rows, columns, empty="no trained patches")
    click.echo()
    width = max((len(st.label) for st in stories), default=0)
    for st in stories:
        lead = f"    {st.label.ljust(width)}  "
        if st.ported is None:
            why = "; ".join(r.message for r in st.verdict.reasons) if st.verdict else "not ported yet"
            click.echo(f"{lead}not ported: {why}")
        else:
            click.echo(f"{lead}port {st.ported.id}: {st.ported.status}, {st.ported.metrics.get('gate', '')}")
        if st.retrained is not None:
            gate = st.retrained.metrics.get("gate", "")
            click.echo(f"{' ' * len(lead)}retrained {st.retrained.id}: {st.retrained.status}, {gate}")


def summary(stories: list[Story], seconds: float, reran: bool = False) -> str:
    ported = [st.ported for st in stories if st.ported]
    retrained = [st.retrained for st in stories if st.retrained]

    def tally(items: list[PatchRead]) -> str:
        counts: dict[str, int] = {}
        for p in items:
            counts[p.status] = counts.get(p.status, 0) + 1
        return ", ".join(f"{counts[st]} {st}" for st in sorted(counts, key=STATUS_ORDER.index))

    minutes, secs = divmod(round(seconds), 60)
    took = f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
    if reran:
        text = "nothing left to run: this home holds a finished demo, shown again"
        text += " (a fresh --home runs it anew): "
    else:
        text = f"done in {took}: "
    text += f"{len(stories)} patches trained on {V1}; {len(ported)} ported onto {V2} "
    text += f"without training ({tally(ported) or 'none'})"
    if retrained:
        text += f"; {len(retrained)} retrained there from the still-available data ({tally(retrained)})"
    return text + "."
