"""A registry of a given shape, written straight as rows (no model files, no torch): for the
query-budget tests and the registry benchmarks, where what matters is how many rows the queries
meet, not what the blobs hold.

One family of `versions` base versions in a chain; `domains` domains; `patches` patches in
lineage chains of up to `depth` hops (a trained root on the first version, then ported copies
down the chain of versions, cycling when a chain is longer than the version chain), each ported
copy with its compatibility verdict, and a finished job per chain.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from registry.models import (
    Artifact,
    BaseFamily,
    BaseVersion,
    CompatVerdict,
    Domain,
    Job,
    Patch,
)

STATUSES = ("validated", "candidate", "degraded")


@dataclass(frozen=True)
class Shape:
    versions: int = 20
    domains: int = 200
    patches: int = 10_000
    depth: int = 50


def _digest(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def generate(session: Session, shape: Shape) -> dict[str, list[str]]:
    """Write the rows in `session` (the caller commits); returns the ids of one deepest chain
    (`chain`, root first) and the patch ids per domain (`domain:<name>`)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    clock = (start + timedelta(seconds=i) for i in itertools.count())
    family = BaseFamily(name="synth", architecture="LlamaForCausalLM", created_at=next(clock))
    session.add(family)
    versions: list[BaseVersion] = []
    for i in range(shape.versions):
        v = BaseVersion(
            family=family,
            version=f"v{i + 1}",
            source_uri=f"/models/synth/v{i + 1}",
            parent=versions[-1] if versions else None,
            model_type="llama",
            arch_fingerprint=_digest("arch"),
            tokenizer_fingerprint=_digest("tok"),
            config_digest=_digest("config"),
            weights_digest=_digest("weights", i),
            num_parameters=1000,
            tensor_table=[],
            created_at=next(clock),
        )
        versions.append(v)
    session.add_all(versions)
    domain_rows = [
        Domain(name=f"d{i:04d}", description="", created_at=next(clock)) for i in range(shape.domains)
    ]
    session.add_all(domain_rows)
    artifact = Artifact(digest=_digest("blob"), size=1024, media_type="application/x-patchreg")
    session.add(artifact)
    session.flush()

    made, chain_ids, by_domain = 0, [], {}
    verdicts: list[CompatVerdict] = []  # added after their patches are flushed (no relationship orders them)

    def flush() -> None:
        session.flush()
        session.add_all(verdicts)
        session.flush()
        verdicts.clear()

    for chain_no in itertools.count():
        if made >= shape.patches:
            break
        domain = domain_rows[chain_no % len(domain_rows)]
        length = (
            min(shape.depth, shape.patches - made)
            if chain_no == 0
            # chains of one domain (every len(domain_rows)-th) get lengths of their own too
            else min(1 + (chain_no + chain_no // len(domain_rows)) % shape.depth, shape.patches - made)
        )
        parent: Patch | None = None
        ids = []
        for hop in range(length):
            version = versions[hop % len(versions)]
            p = Patch(
                id=f"{made:012x}",
                domain_id=domain.id,
                base_version_id=version.id,
                method=("lora", "s2ft", "propulsion")[chain_no % 3],
                method_config={},
                artifact_digest=artifact.digest,
                trainable_params=1000,
                origin="trained" if parent is None else "ported",
                parent_id=parent.id if parent else None,
                source_id=ids[0] if ids else f"{made:012x}",
                status=STATUSES[made % len(STATUSES)],
                metrics={"accuracy": (made % 97) / 97, "loss": 1 + (made % 13) / 13},
                created_at=next(clock),
            )
            session.add(p)
            if parent is not None:
                verdicts.append(
                    CompatVerdict(
                        patch_id=parent.id, base_version_id=version.id, verdict="compatible", reasons=[]
                    )
                )
            ids.append(p.id)
            parent, made = p, made + 1
        session.add(
            Job(kind="train", payload={"domain": domain.name}, status="succeeded", created_at=next(clock))
        )
        by_domain.setdefault(f"domain:{domain.name}", []).extend(ids)
        if chain_no == 0:
            chain_ids = ids
        if made % 2000 < length:
            flush()
    flush()
    return {"chain": chain_ids, **by_domain}
