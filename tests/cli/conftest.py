"""Run `patchreg` in-process the way a user types it, against one registry per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import cli


class Patchreg:
    def __init__(self, home: Path, db_url: str | None) -> None:
        self.home, self.db_url = home, db_url
        self.runner = CliRunner()

    def __call__(self, *args: str, ok: bool = True) -> Result:
        base = ["--home", str(self.home)] + (["--db", self.db_url] if self.db_url else [])
        result = self.runner.invoke(cli, [*base, *args], catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        return result

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture
def patchreg(db_url: str, tmp_path: Path) -> Patchreg:
    return Patchreg(tmp_path / "home", db_url)
