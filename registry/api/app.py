"""`create_app`: the FastAPI application factory (`uvicorn --factory registry.api.app:create_app`).

Settings come from PATCHREG_* (or are passed in). The app starts even on an out-of-date schema, so
that `/healthz` can say so, but every `/v1` route then answers 503 `schema_out_of_date` until
`patchreg db upgrade` has run; `patchreg serve` refuses to start in that state.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI

from core.errors import PatchregError
from registry.api import errors
from registry.api.deps import ApiState
from registry.api.limits import BodyLimitMiddleware
from registry.api.routes import ROUTERS, health
from registry.api.uploads import UPLOAD_ROUTES
from registry.config import Settings

log = logging.getLogger("patchreg.api")


def _version() -> str:
    try:
        return version("patchreg")
    except PackageNotFoundError:
        return "0+unknown"


def sweep_temp(state: ApiState) -> None:
    """Remove what a killed process left in the store's temp space; entries changed within the
    age guard may be another live process's and stay."""
    removed = state.store.scratch.sweep(state.settings.temp_age_guard_seconds)
    if removed:
        size = sum(leftover.size for leftover in removed)
        log.info("removed %d stale temp entries (%d bytes) left by an earlier process", len(removed), size)


def create_app(settings: Settings | None = None) -> FastAPI:
    state = ApiState.open(settings or Settings())
    sweep_temp(state)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        state.engine.dispose()

    app = FastAPI(
        title="patchreg",
        version=_version(),
        summary="A registry for fine-tuned LLM patches that survive base-model releases.",
        lifespan=lifespan,
    )
    app.state.patchreg = state
    errors.install(app)
    app.add_middleware(
        BodyLimitMiddleware,
        json_limit=state.settings.api_max_json_bytes,
        upload_limit=state.settings.api_max_upload_bytes,
        upload_routes=UPLOAD_ROUTES,
    )
    app.include_router(health.router)
    v1 = APIRouter(prefix="/v1")
    for router in ROUTERS:
        v1.include_router(router)
    app.include_router(v1)
    from registry.web import install as install_web

    install_web(app)
    errors.install_openapi(app)
    try:
        state.guard.check()
    except PatchregError as exc:
        log.warning("serving 503 on every /v1 route until this is fixed: %s", exc.message)
    return app
