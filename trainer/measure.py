"""One measurement function for every gate: evaluate a patch on the arms a plan asks for.

Used by `evaluate` jobs (base alone vs base + patch) and `port` jobs (the same on the new base, plus
the source patch on its own base, plus portability statistics). Models are borrowed from the
worker's resident bases (`trainer.resident`), loaded at most once per base directory; the patch is
applied in place and reverted exactly between arms.
Numbers the registry already holds (`plan.stored`) are reused instead of measured again. The no-op
check compares the scored tokens of the "base" and patched arms on the first eval set, so it costs
no forward pass of its own unless one of those arms was stored (then it re-runs `NOOP_ROWS` rows).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.evidence import PER_ROW
from core.plans import Measurement, MeasurePlan
from core.rows import read_rows

if TYPE_CHECKING:
    from trainer.resident import ResidentModels

NOOP_ROWS = 4  # rows the no-op check re-runs when an arm it compares was stored by an earlier job
Progress = Callable[[int, int, str], None]  # (done, total, message)


def measure(
    plan: MeasurePlan,
    device: str = "cpu",
    on_progress: Progress | None = None,
    models: ResidentModels | None = None,
) -> Measurement:
    """Measure `plan` on models borrowed from `models` (a worker's resident bases; default: loaded
    for this call only). Every arm with the patch applies and reverts it in place."""
    from trainer.evaluate import evaluate
    from trainer.patch.apply import apply_patch
    from trainer.patch.io import load_patch
    from trainer.port.noop import screen
    from trainer.port.stats import portability_stats
    from trainer.resident import ResidentModels

    patch = load_patch(plan.patch_path)
    portability = None
    if plan.portability:
        assert plan.source_base_dir is not None, "portability needs the source base"
        portability = portability_stats(patch, plan.source_base_dir, plan.base_dir).to_dict()
    if not plan.eval_sets:
        return Measurement(rows=[], noop=None, portability=portability)

    resident = models if models is not None else ResidentModels(0, device)
    patched = next(n for n, a in plan.arms.items() if a.with_patch and not a.on_source_base)
    with ExitStack() as borrowed:
        held: dict[Path, tuple[Any, Any]] = {}

        def model(directory: Path) -> tuple[Any, Any]:
            if directory not in held:
                held[directory] = borrowed.enter_context(resident.borrow(directory))
            return held[directory]

        base, tokenizer = model(plan.base_dir)
        first = read_rows(plan.eval_sets[0].path)
        screened = screen(base, patch, probes=min(NOOP_ROWS, len(first)))
        # the first eval set's scored tokens, without and with the patch on the base: the no-op check
        kept: dict[str, list[Any]] = {}
        rows = []
        for i, eval_set in enumerate(plan.eval_sets):
            if on_progress is not None:
                on_progress(i, len(plan.eval_sets), f"evaluating on {eval_set.name}")
            data = first if i == 0 else read_rows(eval_set.path)
            row: dict[str, Any] = {"dataset": eval_set.name}
            for name, arm in plan.arms.items():
                stored = plan.stored.get((eval_set.dataset_id, name))
                if stored is not None:
                    row[name] = stored
                    continue
                directory = plan.source_base_dir if arm.on_source_base else plan.base_dir
                assert directory is not None, f"arm {name} needs the source base"
                m, tok = model(directory)
                keep = i == 0 and name in ("base", patched) and screened.reason is None
                with apply_patch(m, patch) if arm.with_patch else nullcontext():
                    result = evaluate(m, tok, data, keep_logprobs=keep)
                row[name] = {**result.to_dict(), PER_ROW: result.per_row()}
                if keep:
                    kept[name] = result.logprobs or []
            rows.append(row)
        if screened.reason is not None:
            noop = screened.unmeasured()
        else:  # an arm the registry already held is measured again on a few rows only
            probe = first[:NOOP_ROWS]
            for name in ("base", patched):
                if name not in kept:
                    with apply_patch(base, screened.live) if name == patched else nullcontext():
                        kept[name] = evaluate(base, tokenizer, probe, keep_logprobs=True).logprobs or []
            n = min(len(kept["base"]), len(kept[patched]))
            noop = screened.compare(kept["base"][:n], kept[patched][:n])
    if on_progress is not None:
        on_progress(len(plan.eval_sets), len(plan.eval_sets), "evaluated")
    return Measurement(rows=rows, noop=noop.to_dict(), portability=portability)
