"""The tables and plots of `bench/science.py`'s report: Markdown for docs/science.md, SVG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import plot


def _ci(effect: dict[str, Any] | None, digits: int = 3) -> str:
    if effect is None:
        return "-"
    return f"{effect['mean']:+.{digits}f} [{effect['low']:+.{digits}f}, {effect['high']:+.{digits}f}]"


def _share(effect: dict[str, Any] | None) -> str:
    if effect is None:
        return "- (retraining gained nothing)"
    return f"{effect['mean']:.0%} [{effect['low']:.0%}, {effect['high']:.0%}]"


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def tables(report: dict[str, Any]) -> str:
    tb, settings = report["testbed"], report["settings"]
    warning = [
        "**--quick: the tests' tiny testbed. These numbers show the script runs; they measure nothing.**",
        "",
    ]
    lines = (warning if settings.get("quick") else []) + [
        f"Testbed `{tb['digest'][:16]}`: {tb['parameters']:,} parameters; "
        + "; ".join(
            f"{n} {s['paragraphs']:,} paragraphs / {s['chars']:,} chars" for n, s in tb["sources"].items()
        )
        + ". Drift from v1 (‖W − W_v1‖/‖W_v1‖): "
        + ", ".join(f"{k} {v:.3f}" for k, v in tb["drift_from_v1"].items())
        + f". Training: {settings['steps']} steps, lr {settings['lr']:g}, batch {settings['batch_size']}; "
        + f"{settings['seeds']} seed(s); the whole run {report['seconds']} s.",
        "",
        "Intervals are 95 % percentile bootstraps over eval rows (2,000 resamplings, seed 0). Gains are"
        " per-row log-likelihood per token of the gold completion, patched − base alone.",
        "",
        "### On v1: domain gain, accuracy and forgetting",
        "",
        "| seed | training | trainable params | domain gain | accuracy (base → patched) | accuracy gain"
        " | forgetting (general text) |",
        "|---|---|---:|---|---|---|---|",
    ]
    for seed, runs in enumerate(report["seeds"]):
        for label, entry in runs.items():
            v1 = entry["v1"]
            lines.append(
                f"| {seed} | {label} | {entry['params']:,} | {_ci(v1['gain'])} | "
                f"{_acc(v1['base_accuracy'])} → {_acc(v1['accuracy'])} | {_ci(v1['accuracy_gain'])} | "
                f"{_ci(v1['forgetting'])} |"
            )
    lines += [
        "",
        "### Porting across releases: the v1 patch on each release, against retraining there",
        "",
        "| seed | training | release | port gain | retrained gain | recovery (port ÷ retrained) | accuracy"
        " base / port / retrained | gate on the port |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, runs in enumerate(report["seeds"]):
        for label, entry in runs.items():
            for hop in entry["hops"]:
                accuracy = " / ".join(
                    _acc(hop[k]) for k in ("base_accuracy", "port_accuracy", "retrain_accuracy")
                )
                lines.append(
                    f"| {seed} | {label} | {hop['release']} | {_ci(hop['port_gain'])} | "
                    f"{_ci(hop['retrain_gain'])} | {_share(hop['recovery'])} | {accuracy} | {hop['gate']} |"
                )
    forecast = report["forecast"]
    auc = "not computable (one outcome only)" if forecast["auc"] is None else f"{forecast['auc']:.3f}"
    lines += [
        "",
        f"### Forecast: {forecast['ports']} ports, {forecast['validated']} validated by the gate; "
        f"cross-validated AUC of `core.forecast` from the portability statistics: {auc}",
        "",
    ]
    return "\n".join(lines)


def plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """recovery.svg: port recovery per hop, one line per training, one panel per seed."""
    directory.mkdir(parents=True, exist_ok=True)
    recovery: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for seed, runs in enumerate(report["seeds"]):
        for label, entry in runs.items():
            points = [(h["hop"], h["recovery"]["mean"]) for h in entry["hops"] if h["recovery"]]
            if points:
                recovery.setdefault(f"seed {seed}", {})[label] = points
    written = []
    if recovery:
        path = directory / "recovery.svg"
        path.write_text(plot.chart(recovery, "release hops from v1", "port gain ÷ retrained gain", log=False))
        written.append(path)
    return written
