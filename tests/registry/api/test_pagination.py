"""`GET /v1/patches` by pages: `limit`, an opaque `cursor`, and the next page in `Link` and
`X-Next-Cursor` (RFC 8288 `rel="next"`), on both databases, for every list; and the CLI walking them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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


LISTS = ["bases", "domains", "datasets", "patches", "aliases", "jobs", "audit", "tokens"]


def _fill(api: Api, tmp_path: Path) -> None:
    """At least three rows in every list: synthetic bases, domains, patches and jobs; datasets and
    aliases through the services; tokens and audit events from the writes themselves."""
    from registry.services import aliases, datasets, patches

    with transaction(api.registry.factory) as s:
        s.info["actor"] = "test"
        generate(s, Shape(versions=3, domains=3, patches=6, depth=2))
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a row"}\n')
    with transaction(api.registry.factory) as s:
        s.info["actor"] = "test"
        for i, p in enumerate(patches.list_patches(s)[:3]):
            datasets.add_dataset(s, api.registry.store, p.domain, f"data{i}", rows, "train", None)
            aliases.set_alias(s, p.domain, p.base, f"stage{i}", p.id)


@pytest.mark.parametrize("listing", LISTS)
def test_every_list_walks_by_pages(api: Api, tmp_path: Path, listing: str) -> None:
    """Each list pages the same way: pages of `limit` rows linked by `Link`/`X-Next-Cursor`,
    together the whole list in its order, with no row twice; a bad cursor is a 422."""
    _fill(api, tmp_path)
    role = "admin" if listing == "tokens" else "read"
    whole = api.ok("GET", f"/v1/{listing}", params={"limit": 1000}, as_=role)
    assert len(whole) >= 3
    seen, url, pages = [], f"/v1/{listing}?limit=2", 0
    while url:
        response = api.get(url, as_=role)
        assert response.status_code == 200, response.text
        seen += response.json()
        pages += 1
        link = response.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
        assert (response.headers.get("x-next-cursor") is None) == (link is None)
    assert seen == whole and pages == -(-len(whole) // 2)
    bad = api.get(f"/v1/{listing}", params={"cursor": "bm90IGEgY3Vyc29y"}, as_=role)
    assert bad.status_code == 422 and "invalid cursor" in bad.json()["error"]["message"]


COMMANDS = {
    "bases": ["base", "list"],
    "domains": ["domain", "list"],
    "datasets": ["dataset", "list"],
    "aliases": ["alias", "list"],
    "jobs": ["jobs", "list"],
    "audit": ["audit"],
    "tokens": ["token", "list"],
}


def test_every_list_command_shows_a_page_or_all(api: Api, tmp_path: Path) -> None:
    _fill(api, tmp_path)
    runner = CliRunner()
    home = ["--home", str(api.registry.home), "--db", api.registry.url]
    for listing, command in COMMANDS.items():
        one = runner.invoke(cli, [*home, *command, "--limit", "1", "--json"])
        assert one.exit_code == 0 and len(json.loads(one.stdout)) == 1, (listing, one.output)
        noun = "audit entries" if listing == "audit" else listing
        assert one.stderr == f"showing the first 1 {noun}; more match: --limit N or --all\n"
        every = runner.invoke(cli, [*home, *command, "--all", "--json"])
        assert every.exit_code == 0 and every.stderr == "", (listing, every.output)
        assert len(json.loads(every.stdout)) >= 3
