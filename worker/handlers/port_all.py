"""`port_all`: a new base version was registered; queue one `port` job per patch worth porting.

Fanning out (instead of porting inline) lets many workers port a family's patches in parallel and
retry each port on its own. The `port` jobs and this job's success commit together.
"""

from __future__ import annotations

from typing import Any

from registry.services import audit, port_sources
from worker.context import JobContext


def run(ctx: JobContext) -> dict[str, Any]:
    base = ctx.payload["base"]
    ctx.progress(0, 1, f"planning ports onto {base}")
    with ctx.transaction() as s:
        queued = port_sources.enqueue_ports(s, base)
        uncovered = port_sources.domains_without_sources(s, base)
        if uncovered:
            audit.record(s, "port_all.nothing_to_port", base, domains=uncovered)
        result = {
            "base": base,
            "ports": [
                {
                    "source_id": src.patch_id,
                    "domain": src.domain,
                    "method": src.method,
                    "source_base": src.source_base,
                    "job": job.id,
                }
                for src, job in queued
            ],
            "domains_without_patches": uncovered,
        }
        ctx.complete_in(s, result)
    return result
