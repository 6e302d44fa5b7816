"""`plan_fetch`: the patch `fetch` serves for (domain, base) and what an export needs about that base.

The choice is `resolve.resolve_patch`'s rule; the base's name for PEFT, its revision and the
[out, in] shapes of its runtime weights (Conv1D transposed back, expert slices, a tied head; what
one-hot PEFT exports size their selectors by) come from the registered base version, so no base
download is needed to plan.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.fetch import FetchPlan
from registry.models import Evaluation
from registry.services import evaluations, patches, resolve
from registry.services.architecture import serving_facts
from registry.services.lineage import MAX_DEPTH
from registry.services.lookup import base_ref, get_base_version, get_patch
from registry.sources import peft_base_name


def provenance(session: Session, patch_id: str) -> dict[str, Any]:
    """What a model card says beyond the Hub's fields: the lineage from the trained patch to this
    one (base, origin, status each step), its training data's digest, its evaluations next to the
    base alone on the same data, and the gate's verdict."""
    row = get_patch(session, patch_id)
    chain = [row]
    while chain[-1].parent is not None and len(chain) < MAX_DEPTH:
        chain.append(chain[-1].parent)
    root = patches.to_read(chain[-1])
    this = patches.to_read(row)
    own = session.scalars(select(Evaluation).where(Evaluation.patch_id == row.id).order_by(Evaluation.id))
    evals = [
        {
            "dataset": f"{e.dataset.domain.name}/{e.dataset.name}",
            "base": base_ref(e.base_version),
            "patch": _brief(e.metrics),
            "base_alone": _brief(
                evaluations.latest(session, None, base_ref(e.base_version), e.dataset_id) or {}
            ),
        }
        for e in own
    ]
    return {
        "lineage": [
            {"patch": p.id, "base": base_ref(p.base_version), "origin": p.origin, "status": p.status}
            for p in reversed(chain)
        ],
        "train_dataset": root.train_dataset,
        "train_dataset_digest": root.train_dataset_digest,
        "evaluations": evals,
        "gate": this.metrics.get("gate"),
    }


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("loss", "accuracy") if metrics.get(k) is not None}


def plan_fetch(session: Session, domain: str, base: str, method: str | None = None) -> FetchPlan:
    chosen = resolve.resolve_patch(session, domain, base, method)
    patch = chosen.patch
    version = get_base_version(session, patch.base)
    facts = serving_facts(version)
    return FetchPlan(
        patch_id=patch.id,
        domain=patch.domain,
        base=patch.base,
        base_name=peft_base_name(version.source_uri),
        revision=version.revision,
        source_uri=version.source_uri,
        weights_digest=version.weights_digest,
        method=patch.method,
        origin=patch.origin,
        status=patch.status,
        digest=patch.digest,
        why=chosen.why,
        module_shapes=facts.shapes,
        model_type=facts.model_type,
        tied_head=facts.tied_head,
        provenance=provenance(session, patch.id),
    )
