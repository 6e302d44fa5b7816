"""The methods' claims, measured on the testbed family (`trainer/testbed.py`) with the product's own
code: `trainer.loop.train` trains, `trainer.measure.measure` evaluates (per-row evidence, the no-op
check, portability statistics) and `trainer.gate.decide` gates, exactly as a worker does.

    .venv/bin/python -m bench.science [--quick] [--seeds 1] [--steps 300] [--json out.json] \\
        [--markdown docs/science-results.md] [--plots docs/science]

For each seed and each training (LoRA, S²FT at LoRA's parameter count, Propulsion, S²FT + ALEWR):
train on v1 and on every release (retraining), then port each release's patch to every later release
(PortLLM: the same delta; v1 → v2, v3, v4, v2 → v3, v4 and v3 → v4). Reported, each with its 95 %
bootstrap interval over eval rows:
- port recovery per hop: the port's gain over its base alone ÷ the gain of the patch retrained there;
- domain gain (per-row log-likelihood and accuracy) and forgetting (the same on held-out general
  text: patched − base alone, negative = forgotten) on v1;
- the gate's decision on every port (on the domain's eval rows; the default gate, and ones that ask
  a port to keep 50 %, 25 % or 0 % of its source's gain instead of 80 %), and a cross-validated AUC of
  `core.forecast` predicting it from the portability statistics (when both outcomes occur).
`--fit-out` writes the forecast fitted on every port, the one `patchreg compat` and `port` show.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.evidence import PER_ROW, Effect, paired_effect, paired_ratio  # noqa: E402
from core.plans import EVALUATE_ARMS, PORT_ARMS, EvalSet, Measurement, MeasurePlan  # noqa: E402

# label: (method, settings, ALEWR lambda or None); S²FT's budget is set to LoRA's parameter count
TRAININGS: dict[str, tuple[str, tuple[str, ...], float | None]] = {
    "lora": ("lora", (), None),
    "s2ft": ("s2ft", (), None),
    "propulsion": ("propulsion", (), None),
    "s2ft+alewr": ("s2ft", (), 0.01),
}
DOMAIN, GENERAL = "domain/eval", "general/held-out"
# the gates every port is decided by: the default, then ones asking it to keep less of its source's
# gain (keep 0 %: only to beat the base alone); the forecast is fitted for the first with both outcomes
MIN_OUTCOME = 5  # ports of each outcome an AUC needs: 5 stratified folds, one of each per fold
GATE_KEEPS = {"default": 0.8, "keep50": 0.5, "keep25": 0.25, "keep0": 0.0}


def _rows_of(measured: Measurement, dataset: str) -> dict[str, Any]:
    return next(r for r in measured.rows if r["dataset"] == dataset)


def _diffs(row: dict[str, Any], patched: str, base: str, key: str = "scores") -> list[float]:
    a, b = row[patched][PER_ROW][key], row[base][PER_ROW][key]
    return [x - y for x, y in zip(a, b, strict=True) if x is not None and y is not None]


def _effect(values: list[float]) -> dict[str, Any]:
    return paired_effect(values).to_dict()


class Lab:
    """The testbed's bases kept loaded, the eval sets, and the work's scratch directory."""

    def __init__(self, testbed: Any, scratch: Path, steps: int, lr: float, batch: int) -> None:
        from core.rows import read_rows
        from trainer.resident import ResidentModels

        self.tb, self.scratch, self.steps, self.lr, self.batch = testbed, scratch, steps, lr, batch
        self.models = ResidentModels(8 << 30, "cpu")
        self.train_rows = read_rows(testbed.domain_train)
        general = testbed.general.read_text().splitlines(keepends=True)
        half = len(general) // 2  # one half weighs ALEWR's importance, the other measures forgetting
        self.importance_rows = [json.loads(line) for line in general[:half]]
        forgetting = scratch / "general-held-out.jsonl"
        forgetting.write_text("".join(general[half:]))
        self.domain_set = EvalSet(1, DOMAIN, testbed.domain_eval)
        self.general_set = EvalSet(2, GENERAL, forgetting)
        self.importance: dict[Path, str] = {}

    def train(self, release: Path, label: str, seed: int, budget: float | None) -> tuple[Path, int]:
        """Train `label` on `release`; the patch file and its trainable parameter count."""
        from trainer.loop import TrainArgs, train
        from trainer.methods import get_method, parse_overrides
        from trainer.patch.io import save_patch
        from trainer.regularizers import regularization

        method, settings, alewr = TRAININGS[label]
        if method == "s2ft" and budget is not None:
            settings = (*settings, f"budget={budget:.6g}")
        reg = regularization("alewr", importance=self._importance(release), lambda_=alewr) if alewr else None
        args = TrainArgs(steps=self.steps, lr=self.lr, batch_size=self.batch, seed=seed, device="cpu")
        with self.models.borrow(release, alone=True) as (model, tokenizer):
            config = parse_overrides(method, settings)
            result = train(
                model, tokenizer, self.train_rows, get_method(method), config, args, regularization=reg
            )
        path = save_patch(result.patch, self.scratch / f"{label}-{release.name}-seed{seed}.safetensors")
        return path, result.trainable_params

    def _importance(self, release: Path) -> str:
        from trainer.regularizers.alewr.importance import compute_importance

        if release not in self.importance:
            out = self.scratch / f"omega-{release.name}.safetensors"
            self.importance[release] = str(
                compute_importance(release, self.importance_rows, out_path=out, steps=20, max_length=256)
            )
        return self.importance[release]

    def measure(
        self, patch: Path, base: Path, source_base: Path | None = None, general: bool = False
    ) -> Measurement:
        """Evaluate on the domain's eval rows (and the general held-out text with `general`); with
        `source_base`, as a port: arms ported/base/source/source_base and portability statistics."""
        from trainer.measure import measure

        arms = dict(PORT_ARMS) if source_base is not None else dict(EVALUATE_ARMS)
        plan = MeasurePlan(
            patch_path=patch,
            base_dir=base,
            source_base_dir=source_base,
            eval_sets=(self.domain_set, self.general_set) if general else (self.domain_set,),
            arms=arms,
            portability=source_base is not None,
        )
        return measure(plan, "cpu", models=self.models)


def run_seed(
    lab: Lab, seed: int, only: tuple[str, ...] = tuple(TRAININGS), save: Any = None
) -> dict[str, Any]:
    """Every training in `only` for one seed (`save(partial)` after each, so a long run can be read
    while it goes on)."""
    from trainer.gate import GateConfig, decide

    releases = lab.tb.releases
    out: dict[str, Any] = {}
    lora_params: int | None = None
    total = lab.tb.note["parameters"]
    gates = {name: GateConfig(keep_fraction=keep) for name, keep in GATE_KEEPS.items()}
    for label in only:
        budget = lora_params / total if lora_params and TRAININGS[label][0] == "s2ft" else None
        started = time.monotonic()
        patches = [lab.train(r, label, seed, budget) for r in releases]
        if label == "lora":
            lora_params = patches[0][1]
        source, params = patches[0]
        on_v1 = lab.measure(source, releases[0], general=True)
        domain, general = _rows_of(on_v1, DOMAIN), _rows_of(on_v1, GENERAL)
        entry: dict[str, Any] = {
            "params": params,
            "v1": {
                "gain": _effect(_diffs(domain, "patch", "base")),
                "accuracy_gain": _effect(_diffs(domain, "patch", "base", "correct")),
                "forgetting": _effect(_diffs(general, "patch", "base")),
                "accuracy": domain["patch"]["accuracy"],
                "base_accuracy": domain["base"]["accuracy"],
            },
            "hops": [],
            # per eval row, patched − base alone: methods are compared row by row on the same rows
            "rows": {
                "gain": _diffs(domain, "patch", "base"),
                "correct": _diffs(domain, "patch", "base", "correct"),
                "forgetting": _diffs(general, "patch", "base"),
            },
        }
        retrained = {
            j: _rows_of(lab.measure(patches[j][0], releases[j]), DOMAIN) for j in range(1, len(releases))
        }
        for i, j in combinations(range(len(releases)), 2):
            port = lab.measure(patches[i][0], releases[j], source_base=releases[i])
            port_rows, again_rows = _rows_of(port, DOMAIN), retrained[j]
            port_gain, retrain_gain = _diffs(port_rows, "ported", "base"), _diffs(again_rows, "patch", "base")
            decisions = {
                name: decide(port, gate, patched="ported", source="source") for name, gate in gates.items()
            }
            recovery: Effect | None = None
            if sum(retrain_gain) > 0:
                recovery = paired_ratio(port_gain, retrain_gain)
            entry["hops"].append(
                {
                    "source": releases[i].name,
                    "release": releases[j].name,
                    "hop": j - i,
                    "port_gain": _effect(port_gain),
                    "source_gain": _effect(_diffs(port_rows, "source", "source_base")),
                    "retrain_gain": _effect(retrain_gain),
                    "recovery": recovery.to_dict() if recovery else None,
                    "port_accuracy": port_rows["ported"]["accuracy"],
                    "retrain_accuracy": again_rows["patch"]["accuracy"],
                    "base_accuracy": port_rows["base"]["accuracy"],
                    "gate": decisions["default"].status,
                    "why": decisions["default"].why,
                    "gates": {name: d.status for name, d in decisions.items()},
                    "portability": port.portability,
                }
            )
        entry["seconds"] = round(time.monotonic() - started, 1)
        out[label] = entry
        print(f"seed {seed}: {label} done in {entry['seconds']} s", flush=True)
        if save is not None:
            save(out)
    return out


def _ports(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [hop for seed in results for entry in seed.values() for hop in entry["hops"]]


def forecast_auc(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per gate, the cross-validated AUC of core.forecast on every port measured (outcome: the gate
    validated it); None where only one outcome occurred."""
    from core.forecast import auc, cross_validated_auc, features

    ports = _ports(results)
    rows = [features(hop["portability"]) for hop in ports]
    summary: dict[str, Any] = {"ports": len(ports), "gates": {}}
    for gate in GATE_KEEPS:
        held = [int(hop["gates"][gate] == "validated") for hop in ports]
        entry: dict[str, Any] = {"validated": sum(held), "auc": None}
        if min(sum(held), len(held) - sum(held)) >= MIN_OUTCOME:
            entry["auc"] = cross_validated_auc(rows, held, folds=MIN_OUTCOME)
            entry["folds"] = MIN_OUTCOME
            # what the fit must beat: ranking by one statistic, no fitting at all
            entry["baselines"] = {
                "score": auc([r["score"] for r in rows], held),
                "1 − mean_evolution": auc([-r["mean_evolution"] for r in rows], held),
                "fewer hops": auc([-hop["hop"] for hop in ports], held),
            }
        summary["gates"][gate] = entry
    return summary


def fitted_forecast(
    results: list[dict[str, Any]], summary: dict[str, Any], testbed: str
) -> dict[str, Any] | None:
    """The forecast fitted on every port, for the first gate of GATE_KEEPS with both outcomes,
    with what it was fitted on: what `--fit-out` writes for the product to load."""
    from core.forecast import features, fit

    ports = _ports(results)
    for gate, keep in GATE_KEEPS.items():
        measured = summary["gates"][gate]
        if measured["auc"] is None:
            continue
        held = [int(hop["gates"][gate] == "validated") for hop in ports]
        model = fit([features(hop["portability"]) for hop in ports], held)
        return {
            **model.to_dict(),
            "target": {"gate": gate, "keep_fraction": keep, "metric": "score"},
            "validated": sum(held),
            "held_out_auc": measured["auc"],
            "folds": measured["folds"],
            "testbed": testbed,
            "command": "python -m bench.science " + " ".join(sys.argv[1:]),
        }
    return None


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="The tests' tiny testbed (numbers mean nothing)."
    )
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=list(TRAININGS), default=list(TRAININGS))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="Write every measurement here.")
    parser.add_argument("--markdown", type=Path, help="Write the tables here.")
    parser.add_argument("--plots", type=Path, help="Write the SVG plots into this directory.")
    parser.add_argument(
        "--fit-out", type=Path, help="Write the forecast fitted on every port here (core/forecast_fit.json)."
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        help="Measure nothing: report (tables, plots, forecast) from a JSON an earlier run wrote, "
        "whole seeds only where it was stopped part-way.",
    )
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.from_json:
        report = json.loads(args.from_json.read_text())
        report.pop("partial", None)
        if report["seeds"] and set(report["seeds"][-1]) != set(report["seeds"][0]):
            report["seeds"] = report["seeds"][:-1]  # the last seed was cut short: keep whole ones
        report["settings"]["seeds"] = len(report["seeds"])
    else:
        report = measure_all(args)
    conclude(report, args)


def measure_all(args: argparse.Namespace) -> dict[str, Any]:
    from trainer.testbed import QUICK, TestbedRecipe, build_testbed

    recipe = QUICK if args.quick else TestbedRecipe()
    started = time.monotonic()
    testbed = build_testbed(recipe)
    report: dict[str, Any] = {
        "testbed": {
            k: testbed.note[k] for k in ("digest", "parameters", "sources", "drift_from_v1", "releases")
        },
        "settings": {
            "steps": args.steps,
            "lr": args.lr,
            "batch_size": args.batch_size,
            "seeds": args.seeds,
            "quick": args.quick,
        },
        "seeds": [],
    }

    def save(partial: dict[str, Any] | None = None) -> None:
        if args.json:
            seeds = report["seeds"] + ([partial] if partial is not None else [])
            args.json.write_text(
                json.dumps({**report, "seeds": seeds, "partial": partial is not None}, indent=1)
            )

    with tempfile.TemporaryDirectory() as tmp:
        lab = Lab(testbed, Path(tmp), args.steps, args.lr, args.batch_size)
        for seed in range(args.seeds):
            report["seeds"].append(run_seed(lab, seed, tuple(args.only), save=save))
            report["seconds"] = round(time.monotonic() - started)
    return report


def conclude(report: dict[str, Any], args: argparse.Namespace) -> None:
    """The forecast (its AUC, and the fit with --fit-out), then the JSON, tables and plots."""
    report["forecast"] = forecast_auc(report["seeds"])
    fitted = fitted_forecast(report["seeds"], report["forecast"], report["testbed"]["digest"])
    if args.fit_out:
        if fitted is None:
            print("no gate saw both outcomes: no forecast to fit, --fit-out left alone", file=sys.stderr)
        else:
            args.fit_out.write_text(json.dumps(fitted, indent=1) + "\n")
    if args.json:
        args.json.write_text(json.dumps({**report, "partial": False}, indent=1))
    from bench.science_report import plots, tables

    text = tables(report)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.plots:
        plots(report, args.plots)


if __name__ == "__main__":
    main()
