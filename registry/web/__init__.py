"""The web interface, served by `patchreg serve` under `/` (the API stays under `/v1`).

Server-rendered pages (Jinja2) over the same services and token scopes as the API; every page
reads without JavaScript, and a few lines of it (static/app.js) add confirmations and live job
progress. `install(app)` mounts it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

HERE = Path(__file__).resolve().parent


def install(app: FastAPI) -> None:
    from registry.web import actions, pages

    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(pages.router)
    app.include_router(actions.router)
