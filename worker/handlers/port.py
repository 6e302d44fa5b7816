"""`port`: port one patch onto a base version, check, evaluate and gate it; retrain when it fails.

Idempotent: the ported record is unique per (source, base), the retrain job per dedupe key, and the
measurements, the retrain decision and the job's success commit together, so a rerun after a lost
worker measures again but records and creates nothing twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from registry.schemas import PortReport
from registry.services import retraining
from worker.context import JobContext
from worker.porting import port_in_job


def run(ctx: JobContext) -> dict[str, Any]:
    patch_id, base = ctx.payload["patch_id"], ctx.payload["base"]
    ctx.progress(0, 2, f"porting {patch_id} onto {base}")
    result: dict[str, Any] = {}

    def finish(s: Session, report: PortReport) -> None:
        result.update(
            source_id=patch_id,
            base=base,
            verdict=report.verdict.verdict,
            patch_id=report.patch.id if report.patch else None,
            status=report.status,
            why=report.why,
            forecast=report.forecast,
            retrain_job=None,
        )
        if report.patch is None or report.status == "degraded":
            why = f"port {report.verdict.verdict}" + (f", {report.status}" if report.status else "")
            job = retraining.plan_retrain(s, patch_id, base, f"{why}: {report.why}")
            result["retrain_job"] = job.id if job else None
        ctx.complete_in(s, result)

    report = port_in_job(ctx, patch_id, base, finish)
    ctx.progress(2, 2, f"{patch_id} on {base}: {report.verdict.verdict}, {report.status or 'not gated'}")
    return result
