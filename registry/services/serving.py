"""Which serving engines load a patch on a base, and how: `compat --serving` and `fetch --dry-run`.

Torch-free: the patch's header (and its scale vectors' bytes) and the base's registered tensor
table are all `core.serving`'s rules need, so a registry without torch answers too.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.serving import TARGETS, assess, patch_facts
from registry.schemas import ServingRead
from registry.services.architecture import serving_facts
from registry.services.lookup import get_base_version, get_patch
from registry.store import ArtifactStore


def serving_report(
    session: Session, store: ArtifactStore, patch_id: str, base: str, approximate: int | None = None
) -> list[ServingRead]:
    """One answer per export target (PEFT first, then each engine) for `patch_id` served on `base`."""
    patch = get_patch(session, patch_id)
    facts = patch_facts(store.local_path(patch.artifact_digest))
    base_facts = serving_facts(get_base_version(session, base))
    answers = [assess(facts, base_facts, target, approximate) for target in TARGETS]
    return [
        ServingRead(
            target=a.target,
            status=a.status,
            rank=a.rank,
            padded_bytes=a.padded_bytes,
            rule=a.rule,
            note=a.note,
            line=a.line(),
        )
        for a in answers
    ]
