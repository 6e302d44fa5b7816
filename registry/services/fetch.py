"""`plan_fetch`: the patch `fetch` serves for (domain, base) and what an export needs about that base.

The choice is `resolve.resolve_patch`'s rule; the base's name for PEFT, its revision and the
[out, in] shapes of its runtime weights (Conv1D transposed back, expert slices, a tied head; what
one-hot PEFT exports size their selectors by) come from the registered base version, so no base
download is needed to plan.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.fetch import FetchPlan
from registry.services import resolve
from registry.services.architecture import serving_facts
from registry.services.lookup import get_base_version
from registry.sources import peft_base_name


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
        method=patch.method,
        origin=patch.origin,
        status=patch.status,
        digest=patch.digest,
        why=chosen.why,
        module_shapes=facts.shapes,
        model_type=facts.model_type,
        tied_head=facts.tied_head,
    )
