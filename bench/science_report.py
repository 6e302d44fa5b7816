"""The tables and plots of `bench/science.py`'s report: Markdown for docs/science.md, SVG plots.

Methods are compared row by row: every training is evaluated on the same eval rows, so the
difference between two trainings' per-row gains has a paired bootstrap interval of its own.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean
from typing import Any

from bench import plot
from core.evidence import paired_effect

# (claim, training, against): each a row-by-row comparison on v1, per seed
COMPARISONS = (
    ("S²FT vs LoRA (matched parameters)", "s2ft", "lora"),
    ("Propulsion vs LoRA", "propulsion", "lora"),
    ("ALEWR: S²FT + ALEWR vs S²FT", "s2ft+alewr", "s2ft"),
)
GATES = {
    "default": "default gate (keep 80 %)",
    "keep50": "gate keeping 50 %",
    "keep25": "gate keeping 25 %",
    "keep0": "gate keeping 0 % (beats the base alone)",
}


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


def _difference(a: list[float], b: list[float]) -> str:
    return _ci(paired_effect([x - y for x, y in zip(a, b, strict=True)]).to_dict())


def _header(report: dict[str, Any]) -> list[str]:
    tb, settings = report["testbed"], report["settings"]
    warning = [
        "**--quick: the tests' tiny testbed. These numbers show the script runs; they measure nothing.**",
        "",
    ]
    return (warning if settings.get("quick") else []) + [
        f"Testbed `{tb['digest'][:16]}`: {tb['parameters']:,} parameters; "
        + "; ".join(
            f"{n} {s['paragraphs']:,} paragraphs / {s['chars']:,} chars" for n, s in tb["sources"].items()
        )
        + ". Drift from v1 (‖W − W_v1‖/‖W_v1‖): "
        + ", ".join(f"{k} {v:.3f}" for k, v in tb["drift_from_v1"].items())
        + f". Training: {settings['steps']} steps, lr {settings['lr']:g}, batch {settings['batch_size']}; "
        + f"{settings['seeds']} seed(s); the whole run {report.get('seconds', '-')} s.",
        "",
        "Intervals are 95 % percentile bootstraps over eval rows (2,000 resamplings, seed 0). Gains are"
        " per-row log-likelihood per token of the gold completion, patched − base alone.",
        "",
    ]


def _on_v1(report: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _claims(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### The methods' claims on v1, row by row (training − the one it is compared with)",
        "",
        "| claim | seed | params (ratio) | domain gain difference | accuracy difference"
        " | forgetting difference (positive = forgets less) |",
        "|---|---|---|---|---|---|",
    ]
    for claim, mine, other in COMPARISONS:
        for seed, runs in enumerate(report["seeds"]):
            if mine not in runs or other not in runs:
                continue
            a, b = runs[mine], runs[other]
            ratio = a["params"] / b["params"] if b["params"] else float("nan")
            lines.append(
                f"| {claim} | {seed} | {a['params']:,} vs {b['params']:,} ({ratio:.2f}×) | "
                + " | ".join(
                    _difference(a["rows"][k], b["rows"][k]) for k in ("gain", "correct", "forgetting")
                )
                + " |"
            )
    return lines


def _ports(report: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "### Porting across releases: each release's patch on every later release, against retraining there",
        "",
        "| seed | training | port | port gain | retrained gain | recovery (port ÷ retrained) | accuracy"
        " base / port / retrained | gate (keep 80 % default / 50 % / 25 % / 0 %) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, runs in enumerate(report["seeds"]):
        for label, entry in runs.items():
            for hop in entry["hops"]:
                accuracy = " / ".join(
                    _acc(hop[k]) for k in ("base_accuracy", "port_accuracy", "retrain_accuracy")
                )
                gates = " / ".join(hop["gates"][g] for g in GATES)
                lines.append(
                    f"| {seed} | {label} | {hop['source']} → {hop['release']} | {_ci(hop['port_gain'])} | "
                    f"{_ci(hop['retrain_gain'])} | {_share(hop['recovery'])} | {accuracy} | {gates} |"
                )
    return lines


def decay(report: dict[str, Any]) -> dict[str, dict[int, list[float]]]:
    """Per training, per hop count: the recovery of every port that many releases on."""
    out: dict[str, dict[int, list[float]]] = {}
    for runs in report["seeds"]:
        for label, entry in runs.items():
            for hop in entry["hops"]:
                if hop["recovery"]:
                    out.setdefault(label, {}).setdefault(hop["hop"], []).append(hop["recovery"]["mean"])
    return out


def _ports_count(n: int) -> str:
    return f"{n} port" + ("s" if n > 1 else "")


def _decay(report: dict[str, Any]) -> list[str]:
    table = decay(report)
    hops = sorted({h for per in table.values() for h in per})
    lines = [
        "",
        "### Recovery by hops between source and target release (mean over seeds and ports; min–max)",
        "",
        "| training | " + " | ".join(f"{h} hop{'s' if h > 1 else ''}" for h in hops) + " |",
        "|---|" + "---|" * len(hops),
    ]
    for label, per in table.items():
        cells = [
            f"{mean(per[h]):.0%} ({min(per[h]):.0%}–{max(per[h]):.0%}, {_ports_count(len(per[h]))})"
            if h in per
            else "-"
            for h in hops
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _forecast(report: dict[str, Any]) -> list[str]:
    forecast = report.get("forecast")
    if forecast is None:
        return []
    lines = ["", f"### Forecast: {forecast['ports']} ports", ""]
    for gate, name in GATES.items():
        measured = forecast["gates"][gate]
        few = min(measured["validated"], forecast["ports"] - measured["validated"])
        auc = (
            f"not measured (the rarer outcome has {few} port{'s' * (few != 1)}; 5 of each are needed)"
            if measured["auc"] is None
            else f"{measured['auc']:.3f} ({measured['folds']}-fold cross-validated)"
        )
        baselines = measured.get("baselines")
        if baselines:
            auc += "; ranking by one number instead: " + ", ".join(
                f"{k} {v:.3f}" for k, v in baselines.items()
            )
        lines.append(f"- {name}: {measured['validated']} validated; AUC of `core.forecast`: {auc}")
    return lines


def tables(report: dict[str, Any]) -> str:
    sections = _header(report) + _on_v1(report) + _claims(report) + _ports(report) + _decay(report)
    return "\n".join(sections + _forecast(report) + [""])


def plots(report: dict[str, Any], directory: Path) -> list[Path]:
    """recovery.svg (recovery by hop: from v1, and every pair), methods.svg (domain gain against
    forgetting on v1) and params.svg (accuracy on v1 against trainable parameters); one point per
    training, the mean over seeds."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    from_v1: dict[str, list[tuple[float, float]]] = {}
    for label in report["seeds"][0]:
        points: dict[int, list[float]] = {}
        for runs in report["seeds"]:
            for hop in runs.get(label, {"hops": []})["hops"]:
                if hop["source"] == "v1" and hop["recovery"]:
                    points.setdefault(hop["hop"], []).append(hop["recovery"]["mean"])
        if points:
            from_v1[label] = [(h, mean(v)) for h, v in sorted(points.items())]
    every = {label: [(h, mean(v)) for h, v in sorted(per.items())] for label, per in decay(report).items()}
    if from_v1:
        path = directory / "recovery.svg"
        panels = {"the v1 patch on v2, v3, v4": from_v1, "every port, by hops": every}
        path.write_text(plot.chart(panels, "release hops", "port gain ÷ retrained gain", log=False))
        written.append(path)

    def per_training(x: Any, y: Any) -> dict[str, list[tuple[float, float]]]:
        labels = report["seeds"][0]
        runs = {label: [seed[label] for seed in report["seeds"] if label in seed] for label in labels}
        return {label: [(mean(map(x, rs)), mean(map(y, rs)))] for label, rs in runs.items()}

    path = directory / "methods.svg"
    methods = per_training(lambda e: e["v1"]["forgetting"]["mean"], lambda e: e["v1"]["gain"]["mean"])
    path.write_text(
        plot.chart({"on v1": methods}, "general-text change (− = forgotten)", "domain gain", log=False)
    )
    written.append(path)
    path = directory / "params.svg"
    params = per_training(lambda e: e["params"], lambda e: e["v1"]["accuracy"])
    path.write_text(plot.chart({"on v1": params}, "trainable parameters (log)", "domain accuracy", log=True))
    written.append(path)
    return written
