"""`patchreg demo --quick`, the showcase, end to end on SQLite and PostgreSQL: every trained patch
is ported onto the new base by the worker alone, with a verdict, evaluations and a status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cli.demo.plan import DOMAIN, QUICK, V1, V2
from core.method_config import regularizer_name
from registry.db import make_engine, session_factory, transaction
from registry.schemas import PatchRead
from registry.services import compat, evaluations, jobs, patches
from tests.cli.conftest import Patchreg

LABELS = {"lora", "s2ft", "propulsion", "s2ft+alewr"}
_built: list[Path] = []  # the family the first run built; later runs reuse it as a rerun would


def _label(p: PatchRead) -> str:
    return p.method + ("+alewr" if regularizer_name(p.method_config) == "alewr" else "")


def test_quick_demo_trains_ports_evaluates_and_retrains(patchreg: Patchreg, db_url: str) -> None:
    models = QUICK.models_dir(patchreg.home)
    if _built:  # the first backend builds the family from nothing; the second reuses it
        shutil.copytree(_built[0], models)
    out = patchreg("demo", "--quick").stdout
    if not _built:
        _built.append(models)

    for header in (
        "==> patchreg base register tiny:v1",
        "==> patchreg train docs --base tiny:v1 --method s2ft --regularize alewr",
        "==> patchreg base register tiny:v2",
        "==> patchreg compat matrix tiny",
        "==> patchreg lineage ",
    ):
        assert header in out
    assert "PATCH         DOMAIN  METHOD      v1                  v2" in out
    assert "done in " in out and "fetch docs --base tiny:v2 --format peft -o adapter" in out
    ui = out.split("See the release story in a browser:", 1)[1]
    assert "token create me --scopes read,write" in ui and " serve\n" in ui
    assert "then open http://127.0.0.1:8000/families/tiny/matrix and paste the token" in ui

    engine = make_engine(db_url)
    try:
        with transaction(session_factory(engine)) as s:
            sources = [p for p in patches.list_patches(s, DOMAIN, V1) if p.origin == "trained"]
            on_v2 = patches.list_patches(s, DOMAIN, V2)
            assert sorted(_label(p) for p in sources) == sorted(LABELS)
            for src in sources:
                (ported,) = [p for p in on_v2 if p.origin == "ported" and p.parent_id == src.id]
                assert ported.digest == src.digest  # a port stores no new bytes
                assert ported.status in ("validated", "degraded", "inconclusive"), ported
                verdict = compat.get_verdict(s, src.id, V2)
                assert verdict is not None and verdict.verdict == "compatible"
                assert verdict.portability is not None
                # the shipped forecast (core/forecast_fit.json) scored the port before it was evaluated
                assert verdict.forecast is not None and 0 <= verdict.forecast["probability"] <= 1
                assert f"{ported.id}, compatible, {ported.status}: " in out and "(forecast: " in out
                measured = evaluations.list_for(s, patch_id=ported.id)
                assert measured and measured[0].metrics["accuracy"] is not None
                retrained = [p for p in on_v2 if p.origin == "retrained" and p.parent_id == src.id]
                # the train data is still available, so exactly the degraded ports were retrained
                assert len(retrained) == (ported.status == "degraded")
                assert f"port {ported.id}: {ported.status}, " in out  # the demo says what became of it
            assert any(e.patch_id is None for e in evaluations.list_for(s, base=V2))  # v2 alone
            assert {j.status for j in jobs.list_jobs(s, limit=1000)} == {"succeeded"}
            count = len(patches.list_patches(s))
    finally:
        engine.dispose()

    again = patchreg("demo", "--quick").stdout  # a finished run is shown again, nothing redone
    assert "nothing left to run" in again and "port " in again
    engine = make_engine(db_url)
    try:
        with transaction(session_factory(engine)) as s:
            assert len(patches.list_patches(s)) == count
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (("domain", "create", "medical"), "already holds domain medical"),
        (("--json", "demo"), "no --json output"),
    ],
)
def test_demo_refuses_a_registry_that_is_not_its_own(
    patchreg: Patchreg, setup: tuple[str, ...], message: str
) -> None:
    if setup[0] == "domain":
        patchreg(*setup)
        result = patchreg("demo", "--quick", ok=False)
        assert result.exit_code == 1
    else:
        result = patchreg(*setup, ok=False)
        assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_the_demo_tallies_every_patch_status() -> None:
    from cli.demo.report import STATUS_ORDER
    from core.vocab import PATCH_STATUSES

    assert sorted(STATUS_ORDER) == sorted(PATCH_STATUSES)
