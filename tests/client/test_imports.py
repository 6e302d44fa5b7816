"""The client runs where there is no torch and no database driver: importing it loads neither."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.client.conftest import ROOT

# (click is absent on purpose: httpx imports it, when installed, for its own command line)
HEAVY = ("torch", "transformers", "peft", "numpy", "sqlalchemy", "psycopg", "alembic", "fastapi", "starlette")


def test_importing_the_client_loads_no_ml_no_database_no_server() -> None:
    code = (
        "import json, sys, client\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {list(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
