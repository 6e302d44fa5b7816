"""Aligned tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import click
from pydantic import BaseModel


def to_jsonable(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list | tuple):
        return [to_jsonable(d) for d in data]
    if isinstance(data, dict):
        return {k: to_jsonable(v) for k, v in data.items()}
    if isinstance(data, datetime | date):
        return data.isoformat()
    return data


def print_json(data: Any) -> None:
    click.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=False))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_table(rows: Sequence[Any], columns: Sequence[tuple[str, str]], empty: str = "nothing yet") -> None:
    """`columns` are (header, attribute) pairs; numbers align right, text left."""
    if not rows:
        click.echo(f"({empty})")
        return
    cells = [
        [_cell(getattr(r, attr) if not isinstance(r, dict) else r.get(attr)) for _, attr in columns]
        for r in rows
    ]
    numeric = [
        all(isinstance(getattr(r, a) if not isinstance(r, dict) else r.get(a), int | float) for r in rows)
        for _, a in columns
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    click.echo(click.style(line([h for h, _ in columns]), bold=True))
    for c in cells:
        click.echo(line(c))


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        click.echo(f"{click.style(key.ljust(width), bold=True)}  {_cell(value)}")


def emit(app_json: bool, data: Any, human: Any) -> None:
    """JSON when asked for, else call `human()` to print for people."""
    if app_json:
        print_json(data)
    else:
        human()


def export_summary(decided: dict[str, Any]) -> str:
    """What a serving export decided, for people: rank, padding cost, notes, approximation error."""
    parts = [f"{decided['target']}: {decided['status']}, rank {decided['rank']}"]
    if decided.get("padded_bytes"):
        parts.append(f"padding adds {decided['padded_bytes'] / 1e6:.2f} MB")
    approx = decided.get("approximation")
    if approx:
        worst = max(approx["relative_error"].values())
        parts.append(
            f"rank-{approx['rank']} SVD: weight error up to {worst:.3%} per module"
            + (
                f", logit error {approx['logit_error']:.3%} of the patch's effect"
                if "logit_error" in approx
                else ""
            )
        )
    if decided.get("note"):
        parts.append(decided["note"])
    return "; ".join(parts)
