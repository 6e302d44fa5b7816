"""The README.md (model card) written beside every adapter or merged model a fetch writes.

Its YAML front matter holds the fields the Hugging Face Hub reads for the model tree: `base_model`
(the Hub id, only when the base came from `hf://`), `base_model_relation` (`adapter`, or
`finetune` for a merged model), `library_name` (`peft` or `transformers`) and `tags`. The body
holds what the Hub has no field for: the exact base revision, the lineage from the trained patch
to this one, the training data's digest, the evaluations beside the base alone, and the gate.
"""

from __future__ import annotations

import json
from typing import Any

from core.fetch import FetchPlan
from core.serving import approximation_summary

CARD = "README.md"


def _yaml_value(value: Any) -> str:
    return json.dumps(value)  # a JSON string or list is valid YAML, and quotes whatever needs it


def _metrics(m: dict[str, Any]) -> str:
    parts = [
        f"loss {m['loss']:.4f}" if "loss" in m else "",
        f"accuracy {m['accuracy']:.3f}" if "accuracy" in m else "",
    ]
    return ", ".join(p for p in parts if p) or "-"


def render(plan: FetchPlan, fmt: str, target: str = "peft", export: dict[str, Any] | None = None) -> str:
    """The card for `plan` written in `fmt` (peft or merged) for `target`."""
    merged = fmt == "merged"
    front = {
        **({"base_model": plan.base_name} if plan.source_uri.startswith("hf://") else {}),
        "base_model_relation": "finetune" if merged else "adapter",
        "library_name": "transformers" if merged else "peft",
        "tags": ["patchreg", plan.method, plan.domain, *([] if merged or target == "peft" else [target])],
    }
    lines = ["---", *(f"{k}: {_yaml_value(v)}" for k, v in front.items()), "---", ""]
    what = "merged model" if merged else ("PEFT adapter" if target == "peft" else f"{target} LoRA adapter")
    lines += [
        f"# {plan.domain} on {plan.base}: patch {plan.patch_id}",
        "",
        f"A {plan.method} patch ({plan.origin}, {plan.status}) as a {what}, fetched from a patchreg "
        f"registry: {plan.why}.",
        "",
        "| | |",
        "|---|---|",
        f"| base | {plan.base} ({plan.source_uri}) |",
        f"| base revision | {plan.revision or 'local files (no revision)'} |",
        f"| patch sha256 | `{plan.digest}` |",
    ]
    prov = plan.provenance
    if prov.get("train_dataset"):
        lines.append(
            f"| trained on | {prov['train_dataset']} (sha256 `{prov.get('train_dataset_digest')}`) |"
        )
    if prov.get("gate"):
        lines.append(f"| gate | {plan.status}: {prov['gate']} |")
    if export:
        lines.append(f"| export | {export.get('status')}, rank {export.get('rank')}: {export.get('rule')} |")
        if export.get("approximation"):
            lines.append(f"| approximation | {approximation_summary(export['approximation'])} |")
    if prov.get("lineage"):
        lines += ["", "## Lineage", ""]
        lines += [
            f"{i + 1}. `{step['patch']}` on {step['base']} ({step['origin']}, {step['status']})"
            for i, step in enumerate(prov["lineage"])
        ]
    if prov.get("evaluations"):
        lines += ["", "## Evaluations", "", "| dataset | with the patch | base alone |", "|---|---|---|"]
        lines += [
            f"| {e['dataset']} | {_metrics(e['patch'])} | {_metrics(e['base_alone'])} |"
            for e in prov["evaluations"]
        ]
    return "\n".join(lines) + "\n"
