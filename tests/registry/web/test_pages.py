"""The web pages through the app, on the demo's registry: what each page shows, who may see the
write controls, and how every write is checked (scope, CSRF token, Origin) and audited."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from cli.main import cli
from registry.api.app import create_app
from registry.config import Settings
from registry.web.session import COOKIE, csrf_token
from tests.registry.web.conftest import DemoRegistry, as_


def patchreg_json(demo: DemoRegistry, *args: str) -> object:
    result = CliRunner().invoke(cli, ["--home", str(demo.home), *args, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def ported_patch(demo: DemoRegistry) -> dict:
    on_v2 = patchreg_json(demo, "patch", "list", "--base", "tiny:v2")
    return next(p for p in on_v2 if p["origin"] == "ported")  # type: ignore[union-attr]


def test_pages_need_a_login_unless_reads_are_open(web: TestClient, demo_registry: DemoRegistry) -> None:
    answer = web.get("/patches/abc?x=1")
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=/patches/abc%3Fx%3D1"
    assert "Paste an API token" in web.get("/login").text

    wrong = web.post("/login", data={"token": "prt_nope", "next": "/jobs"})
    assert wrong.status_code == 401 and "unknown or revoked token" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")
    good = web.post("/login", data={"token": demo_registry.secrets["read"], "next": "https://evil.example/"})
    assert good.status_code == 303 and good.headers["location"] == "/families"  # never off-site
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and cookie.startswith(COOKIE)

    logged_out = web.post("/logout")
    assert logged_out.status_code == 303 and 'patchreg_token=""' in logged_out.headers["set-cookie"]

    app = create_app(Settings(home=demo_registry.home, api_open_reads=True))
    with TestClient(app, follow_redirects=False) as anonymous:
        page = anonymous.get("/families")
        assert page.status_code == 200 and "reading without a token" in page.text
        patch = ported_patch(demo_registry)
        shown = anonymous.get(f"/patches/{patch['id']}")
        assert shown.status_code == 200 and "set alias" not in shown.text
        refused = anonymous.post(f"/patches/{patch['id']}/alias", data={"csrf": "", "name": "production"})
        assert refused.status_code == 403 and "anonymous visitor cannot change the registry" in refused.text


def test_families_show_the_release_tree_and_what_changed(web: TestClient, demo_registry) -> None:
    page = as_(web, demo_registry, "read").get("/families")
    assert page.status_code == 200
    text = page.text
    assert "tiny:v1" in text and "tiny:v2" in text and "compatibility matrix" in text
    changes = re.search(r"changed since tiny:v1:(.*?)</span>\s*</span>", text, re.S)
    assert changes is not None and "weights" in changes.group(1)
    assert "architecture" not in changes.group(1)  # v2 = v1 trained further: same shapes, new weights
    assert web.get("/families/tiny").status_code == 200
    missing = web.get("/families/nope")
    assert (
        missing.status_code == 404
        and "family named &#39;nope&#39;" in missing.text
        and "<html" in missing.text
    )


def test_the_matrix_colours_each_cell_and_filters(web: TestClient, demo_registry) -> None:
    as_(web, demo_registry, "read")
    page = web.get("/families/tiny/matrix").text
    for method in ("lora", "s2ft", "propulsion", "s2ft+alewr"):
        assert f"<td>{method}</td>" in page
    assert 'class="cell state-source"' in page
    assert re.search(r'class="cell status-(validated|degraded)"', page)
    assert "<summary>why</summary><ul><li>beats the base alone by" in page  # the gate's reason
    only_lora = web.get("/families/tiny/matrix", params={"method": "lora"}).text
    assert "<td>lora</td>" in only_lora and "<td>propulsion</td>" not in only_lora


def test_a_patch_page_tells_its_story(
    web: TestClient, demo_registry: DemoRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.forecast as forecast_module
    from tests.core.test_forecast import _write_fit

    _write_fit(tmp_path / "fit.json")
    monkeypatch.setattr(forecast_module, "FIT_FILE", tmp_path / "fit.json")
    patch = ported_patch(demo_registry)
    page = as_(web, demo_registry, "read").get(f"/patches/{patch['id']}").text
    assert patch["id"] in page and patch["parent_id"] in page  # itself and its source, in the lineage
    assert "Compatibility with tiny:v2" in page and "verdict-compatible" in page
    assert "Portability" in page
    forecast = re.search(
        r"Forecast before evaluation: <b>(\d+)%</b> chance to be validated by a gate keeping 50%", page
    )
    assert forecast is not None and "held-out AUC 0.80" in page
    assert "base alone" in page and "base + patch" in page and "source" in page  # the chart
    assert "patchreg fetch docs --base tiny:v2 --format peft --target vllm -o docs-vllm" in page
    assert "Audit trail" in page and "<td>patch.ported</td>" in page
    assert "set alias" not in page and 'name="csrf"' not in page  # a read token sees no write controls


def test_domains_show_data_and_its_window(web: TestClient, demo_registry) -> None:
    page = as_(web, demo_registry, "read").get("/domains").text
    assert 'id="domain-docs"' in page
    for name in ("train", "eval", "general"):
        assert f"<td>{name}</td>" in page
    assert "sha256:" in page


def test_jobs_list_with_progress_and_controls_by_scope(web: TestClient, demo_registry) -> None:
    read_page = as_(web, demo_registry, "read").get("/jobs").text
    assert "succeeded" in read_page and "port_all" in read_page
    assert "/cancel" not in read_page and "/retry" not in read_page
    fragment = web.get("/jobs", params={"fragment": "1"}).text
    assert fragment.lstrip().startswith("<table") and "<html" not in fragment
    failed_only = web.get("/jobs", params={"status": "failed"}).text
    assert "No jobs." in failed_only


def test_writes_need_the_scope_a_matching_csrf_token_and_this_site(
    web: TestClient, demo_registry: DemoRegistry
) -> None:
    patch = ported_patch(demo_registry)
    url = f"/patches/{patch['id']}/alias"
    read_csrf = csrf_token(demo_registry.secrets["read"])
    as_(web, demo_registry, "read")
    refused = web.post(url, data={"csrf": read_csrf, "name": "staging"})
    assert refused.status_code == 403 and "&#39;write&#39; scope" in refused.text

    as_(web, demo_registry, "write")
    page = web.get(f"/patches/{patch['id']}").text
    assert "set alias" in page
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    assert csrf == csrf_token(demo_registry.secrets["write"])
    for data, headers in (
        ({"name": "staging"}, {}),  # no token
        ({"csrf": read_csrf, "name": "staging"}, {}),  # another session's
        ({"csrf": csrf, "name": "staging"}, {"Origin": "https://evil.example"}),
    ):
        bad = web.post(url, data=data, headers=headers)
        assert bad.status_code in (403, 422), bad.text
    assert all(a["name"] != "staging" for a in patchreg_json(demo_registry, "alias", "list"))  # type: ignore[index]

    done = web.post(url, data={"csrf": csrf, "name": "staging"}, headers={"Origin": "http://testserver"})
    assert done.status_code == 303 and done.headers["location"] == f"/patches/{patch['id']}"
    listed = patchreg_json(demo_registry, "alias", "list")
    assert {"name": "staging", "patch_id": patch["id"], "base": "tiny:v2"}.items() <= next(
        a
        for a in listed
        if a["name"] == "staging"  # type: ignore[union-attr]
    ).items()
    events = patchreg_json(demo_registry, "audit", "--subject", "docs@tiny:v2/staging")
    assert [(e["action"], e["actor"]) for e in events] == [("alias.set", "token:write")]  # type: ignore[union-attr]


def test_status_port_and_job_controls(web: TestClient, demo_registry: DemoRegistry) -> None:
    patch = ported_patch(demo_registry)
    as_(web, demo_registry, "write")
    csrf = csrf_token(demo_registry.secrets["write"])
    changed = web.post(
        f"/patches/{patch['id']}/status", data={"csrf": csrf, "status": "rejected", "reason": "from the web"}
    )
    assert changed.status_code == 303
    assert patchreg_json(demo_registry, "patch", "show", patch["id"])["status"] == "rejected"  # type: ignore[index]
    bad_status = web.post(
        f"/patches/{patch['id']}/status", data={"csrf": csrf, "status": "bogus", "reason": "x"}
    )
    assert bad_status.status_code == 422 and "<html" in bad_status.text

    source = patch["parent_id"]
    queued = web.post(f"/patches/{source}/port", data={"csrf": csrf, "base": "tiny:v2"})
    assert queued.status_code == 303 and queued.headers["location"].startswith("/jobs#job-")
    job_id = queued.headers["location"].removeprefix("/jobs#job-")
    job = patchreg_json(demo_registry, "jobs", "show", job_id)
    assert job["kind"] == "port" and job["payload"]["patch_id"] == source  # type: ignore[index]
    if job["status"] in ("failed", "cancelled"):  # type: ignore[index]
        assert web.post(f"/jobs/{job_id}/retry", data={"csrf": csrf}).status_code == 303
