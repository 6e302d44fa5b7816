"""One router per noun; `ROUTERS` is what the app mounts under `/v1`."""

from __future__ import annotations

from registry.api.routes import (
    aliases,
    audit,
    bases,
    compat,
    datasets,
    domains,
    fetch,
    jobs,
    patches,
    resolve,
    tokens,
)

ROUTERS = [
    bases.router,
    domains.router,
    datasets.router,
    patches.router,
    compat.router,
    resolve.router,
    fetch.router,
    aliases.router,
    jobs.router,
    audit.router,
    tokens.router,
]
