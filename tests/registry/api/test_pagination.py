"""`GET /v1/patches` by pages: `limit`, an opaque `cursor`, and the next page in `Link` and
`X-Next-Cursor` (RFC 8288 `rel="next"`), on both databases; and the client and CLI walking them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from bench.synthetic import Shape, generate
from cli.main import cli
from registry.db import transaction
from tests.registry.api.conftest import Api


def test_pages_link_to_the_next_until_the_last(api: Api) -> None:
    with transaction(api.registry.factory) as s:
        generate(s, Shape(versions=3, domains=2, patches=7, depth=3))
    seen, url, pages = [], "/v1/patches?limit=3", 0
    while url:
        response = api.get(url)
        assert response.status_code == 200
        seen += [p["id"] for p in response.json()]
        pages += 1
        link = response.headers.get("link")
        if link is None:
            assert "x-next-cursor" not in response.headers
            break
        assert link.endswith('>; rel="next"') and "limit=3" in link
        assert response.headers["x-next-cursor"] in link
        url = link[1 : link.index(">")]
    assert pages == 3 and len(seen) == len(set(seen)) == 7
    assert [p["id"] for p in api.ok("GET", "/v1/patches")] == seen  # one default page holds all 7

    filtered = api.get("/v1/patches", params={"domain": "d0001", "limit": 1})
    assert "domain=d0001" in filtered.headers["link"]  # filters carry over to the next page
    bad = api.get("/v1/patches", params={"cursor": "%%%"})
    assert bad.status_code == 422 and "invalid cursor" in bad.json()["error"]["message"]
    assert api.get("/v1/patches", params={"limit": 1001}).status_code == 422


def test_the_cli_shows_a_page_and_says_when_more_match(api: Api) -> None:
    with transaction(api.registry.factory) as s:
        generate(s, Shape(versions=2, domains=2, patches=5, depth=2))
    runner = CliRunner()
    base = ["--home", str(api.registry.home), "--db", api.registry.url, "patch", "list"]
    two = runner.invoke(cli, [*base, "--limit", "2", "--json"])
    assert two.exit_code == 0 and len(json.loads(two.stdout)) == 2
    assert two.stderr == "showing the first 2 patches; more match: --limit N or --all\n"
    every = runner.invoke(cli, [*base, "--all", "--json"])
    assert every.exit_code == 0 and len(json.loads(every.stdout)) == 5 and every.stderr == ""


def test_the_matrix_by_pages(api: Api) -> None:
    with transaction(api.registry.factory) as s:
        generate(s, Shape(versions=3, domains=2, patches=30, depth=3))
    first = api.get("/v1/families/synth/matrix", params={"limit": 4})
    body = first.json()
    assert len(body["rows"]) == 4 and body["next_cursor"] == first.headers["x-next-cursor"]
    following = first.headers["link"]
    rest = api.ok("GET", following[1 : following.index(">")])
    everything = api.ok("GET", "/v1/families/synth/matrix", params={"limit": 1000})
    assert everything["next_cursor"] is None
    assert [r["patch_id"] for r in body["rows"] + rest["rows"]] == [
        r["patch_id"] for r in everything["rows"][: 4 + len(rest["rows"])]
    ]
