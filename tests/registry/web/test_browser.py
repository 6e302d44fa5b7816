"""The web interface in a real headless browser (Debian's chromium, driven by Playwright) against a
real `patchreg serve` on the demo's registry: family → matrix → patch → lineage, what a read token
sees and may do, CSRF, and an alias set in the browser that the CLI then lists.

With PATCHREG_SCREENSHOTS=DIR the main pages are saved there as PNG (docs/screenshots/ is made so).
Without chromium the test fails under CI=true (`.ci/run` installs it) and says so loudly elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.registry.web.conftest import DemoRegistry
from tests.servers import patchreg_serve

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        message = "chromium is not installed (apt-get install chromium): the browser tests cannot run"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def served(demo_registry: DemoRegistry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("web-serve") / "server.log"
    with patchreg_serve(log, "--home", str(demo_registry.home), "--db", demo_registry.url) as url:
        yield url


def shoot(page, name: str) -> None:
    where = os.environ.get("PATCHREG_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(where) / f"{name}.png"), full_page=True)


def login(context, url: str, secret: str):
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{url}/families")
    assert page.url.startswith(f"{url}/login?next=")
    page.fill("input[name=token]", secret)
    page.click("form.stack button")
    page.wait_for_url(f"{url}/families")
    return page


def test_a_reader_walks_family_matrix_patch_lineage(
    browser, served: str, demo_registry: DemoRegistry
) -> None:
    context = browser.new_context()
    page = login(context, served, demo_registry.secrets["read"])
    assert "tiny:v2" in page.inner_text("main") and "changed since tiny:v1" in page.inner_text("main")
    shoot(page, "families")

    page.click("text=compatibility matrix")
    page.wait_for_url(f"{served}/families/tiny/matrix")
    assert page.locator("table.matrix tbody tr").count() >= 4
    shoot(page, "matrix")

    ported = page.locator("table.matrix td.cell:not(.state-source):not(.state-not-checked) a").first
    ported_id = ported.get_attribute("href").rsplit("/", 1)[1]
    ported.click()
    page.wait_for_url(f"{served}/patches/{ported_id}")
    main = page.inner_text("main")
    assert f"Patch {ported_id}" in main and "Lineage" in main and "Compatibility with tiny:v2" in main
    assert page.locator("text=set alias").count() == 0  # a read token sees no write controls
    shoot(page, "patch")

    source = page.locator("ul.lineage > li > .node a").first  # the lineage's root: the source
    source_id = source.inner_text()
    source.click()
    page.wait_for_url(f"{served}/patches/{source_id}")
    assert "trained" in page.inner_text("dl.facts")

    page.goto(f"{served}/jobs")
    assert "port_all" in page.inner_text("main")
    shoot(page, "jobs")
    page.goto(f"{served}/domains")
    assert "general" in page.inner_text("main")
    shoot(page, "domains")

    posted = page.request.post(  # the same browser session, posting behind the page's back
        f"{served}/patches/{ported_id}/alias", form={"csrf": "", "name": "sneaky"}, max_redirects=0
    )
    assert posted.status == 403
    context.close()


def test_a_writer_sets_an_alias_that_the_cli_sees_and_csrf_is_refused(
    browser,
    served: str,
    demo_registry: DemoRegistry,
) -> None:
    context = browser.new_context()
    page = login(context, served, demo_registry.secrets["write"])
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmation each write asks for
    page.goto(f"{served}/families/tiny/matrix?method=lora")
    page.locator("table.matrix td.cell:not(.state-source):not(.state-not-checked) a").first.click()
    patch_id = page.url.rsplit("/", 1)[1]

    page.fill("input[name=name]", "canary")
    page.click("text=set alias")
    page.wait_for_url(f"{served}/patches/{patch_id}")
    assert "canary" in page.inner_text("main")
    listed = CliRunner().invoke(cli, ["--home", str(demo_registry.home), "alias", "list", "--json"])
    assert {"name": "canary", "patch_id": patch_id}.items() <= next(
        a for a in json.loads(listed.stdout) if a["name"] == "canary"
    ).items()

    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')")
    page.fill("input[name=name]", "forged")
    page.click("text=set alias")
    assert "CSRF check failed" in page.inner_text("main")
    listed = CliRunner().invoke(cli, ["--home", str(demo_registry.home), "alias", "list", "--json"])
    assert all(a["name"] != "forged" for a in json.loads(listed.stdout))
    context.close()
