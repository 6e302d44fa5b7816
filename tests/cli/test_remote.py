"""The CLI against a server: one scenario run locally and against a real `patchreg serve`, compared.

Each backend gets a fresh server database and a fresh local one, prepared alike (the same tokens,
made by the same actor), and the local CLI acts as `token:admin`, the actor the server records for
the admin token: then every command's stdout, stderr and exit code, as text and as `--json`, must be
the same in both modes once what is random (ids, times, temp paths) is named in order of first use.
"""

from __future__ import annotations

import json
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from registry import migrate
from registry.db import make_engine, session_factory, transaction
from registry.services import tokens
from tests.client.conftest import ROLES, peft_adapter  # noqa: F401
from tests.conftest import BACKENDS, create_pg_database, drop_pg_database
from tests.servers import free_port, patchreg_serve

ROOT = Path(__file__).resolve().parents[2]


def prepare(db_url: str) -> dict[str, str]:
    """A registry at the head schema with one token per role; their secrets."""
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    with transaction(session_factory(engine)) as s:
        s.info["actor"] = "test"
        secrets = {role: tokens.create(s, role, scopes.split(","))[1] for role, scopes in ROLES.items()}
    engine.dispose()
    return secrets


def fresh_db(backend: str, tmp: Path) -> str:
    return f"sqlite:///{tmp / 'registry.db'}" if backend == "sqlite" else create_pg_database()


@dataclass
class Served:
    url: str
    backend: str
    secrets: dict[str, str]


@pytest.fixture(scope="module", params=BACKENDS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp(f"remote-{request.param}")
    db_url = fresh_db(request.param, home)
    secrets = prepare(db_url)
    try:
        with patchreg_serve(home / "server.log", "--home", str(home), "--db", db_url) as url:
            yield Served(url, request.param, secrets)
    finally:
        if request.param != "sqlite":
            drop_pg_database(db_url)


class Cli:
    """`patchreg` in-process with a fixed environment: never the user's credentials or registry."""

    def __init__(self, tmp: Path, global_args: list[str], **env: str | None) -> None:
        self.global_args = global_args
        self.env: dict[str, str | None] = {
            "PATCHREG_URL": None,
            "PATCHREG_TOKEN": None,
            "PATCHREG_DATABASE_URL": None,
            "PATCHREG_HOME": str(tmp / "default-home"),  # must stay absent in remote mode
            "PATCHREG_CONFIG_DIR": str(tmp / "config"),
            "PATCHREG_ACTOR": "token:admin",
            **env,
        }

    def __call__(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, [*self.global_args, *args], env=self.env)
        assert not isinstance(result.exception, AssertionError)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"patchreg {' '.join(args)} raised") from result.exception
        return result.exit_code, result.stdout, result.stderr


TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?")
ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{12}(?![0-9a-f])")
SECRET = re.compile(r"prt_[A-Za-z0-9_-]+")


def normalize(transcript: list[object], tmp: Path) -> list[str]:
    """Times as a fixed-width mark, this mode's temp dir as <TMP>, token secrets as one mark, and
    every 12-hex id (patch, job; short digests too) named by its order of first use, keeping its
    width so tables still align."""
    names: dict[str, str] = {}

    def one(entry: object) -> str:
        text = TIME.sub("YYYY-MM-DD HH:MM", repr(entry).replace(str(tmp), "<TMP>"))
        text = SECRET.sub("prt_<SECRET>", text)
        return ID.sub(lambda m: names.setdefault(m.group(), f"id{len(names):010d}"), text)

    return [one(entry) for entry in transcript]


def scenario(run: Cli, models: dict[str, Path], adapter: Path, data: Path, out: Path) -> list[object]:
    """Every data command the CLI runs remotely, and its errors; each answer as text and --json."""
    transcript: list[object] = []

    def step(*args: str) -> dict[str, str]:
        answers = {}
        for extra in ((), ("--json",)):
            code, stdout, stderr = run(*args, *extra)
            transcript.append((args, extra, code, stdout, stderr))
            answers["json" if extra else "text"] = stdout
        return answers

    def once(*args: str) -> str:  # a write, so --json goes with its only run
        code, stdout, stderr = run(*args, "--json")
        transcript.append((args, code, stdout, stderr))
        assert code == 0, stderr
        return stdout

    once("base", "register", "tiny:v1", str(models["v1"]))
    once("base", "register", "tiny:v3", str(models["v3"]))
    once("domain", "create", "med", "--description", "medical notes")
    step("domain", "create", "med")  # conflict
    step("domain", "list")
    once("dataset", "add", "med", "notes", str(data), "--role", "train")
    step("dataset", "add", "nope", "notes", str(data), "--role", "train")  # unknown domain
    step("dataset", "list")
    patch_id = json.loads(once("patch", "import", "med", "--base", "tiny:v1", str(adapter)))["id"]
    once("base", "register", "tiny:v2", str(models["v2"]), "--parent", "tiny:v1")  # queues port_all
    for args in (
        ("base", "list"),
        ("base", "show", "tiny:v1"),
        ("base", "show", "tiny:nope"),
        ("patch", "list"),
        ("patch", "list", "--limit", "1"),
        ("patch", "list", "--all", "--status", "candidate"),
        ("patch", "show", patch_id),
        ("patch", "show", "ffffffffffff"),
        ("resolve", "med", "--base", "tiny:v1"),
        ("resolve", "med", "--base", "tiny:v3"),
        ("compat", patch_id, "--base", "tiny:v2"),
        ("compat", patch_id, "--base", "tiny:v3"),
        ("compat", patch_id, "--base", "tiny:v2", "--serving"),
        ("fetch", "med", "--base", "tiny:v1", "--dry-run"),
        ("fetch", "med", "--base", "tiny:v1", "--dry-run", "--target", "vllm", "--approximate", "4"),
        ("fetch", "med", "--base", "tiny:v3", "--dry-run"),
        ("compat", "matrix", "tiny"),
        ("lineage", patch_id),
    ):
        step(*args)
    for fmt in ("native", "peft"):
        for i, extra in enumerate(((), ("--json",))):
            code, stdout, stderr = run(
                "fetch", "med", "--base", "tiny:v1", "--format", fmt, "-o", f"{out}/{fmt}{i}", *extra
            )
            transcript.append((fmt, extra, code, stdout, stderr))
            files = sorted(p.name for p in (out / f"{fmt}{i}").iterdir())
            transcript.append({f: (out / f"{fmt}{i}" / f).read_bytes() for f in files})
    step("fetch", "med", "--base", "tiny:v1", "-o", f"{out}/native0")  # not empty
    once("alias", "set", "med", "--base", "tiny:v1", "production", patch_id)
    step("alias", "list")
    step("alias", "set", "med", "--base", "tiny:v1", "staging", "ffffffffffff")
    once("train", "med", "--base", "tiny:v1", "--method", "lora", "--steps", "2", "--set", "r=4")
    step("train", "med", "--base", "tiny:v1", "--method", "lora", "--set", "rank=4")  # a typo
    step("train", "med", "--base", "tiny:v1", "--method", "s2ft", "--regularize", "alewr")  # no general data
    once("token", "create", "ci", "--scopes", "read,write")
    step("token", "create", "ci")  # taken
    step("token", "create", "bad", "--scopes", "read,root")
    once("token", "revoke", "ci")
    step("token", "list")
    job_id = json.loads(run("jobs", "list", "--json")[1])[0]["id"]
    for args in (("jobs", "list"), ("jobs", "show", job_id), ("jobs", "show", "nope"), ("audit",)):
        step(*args)
    return transcript


@pytest.fixture(scope="module")
def inputs(make_tiny_model, peft_adapter: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    data = tmp_path_factory.mktemp("data") / "notes.jsonl"
    data.write_text("".join(json.dumps({"text": f"note {i} about a patient"}) + "\n" for i in range(8)))
    models = {
        "v1": make_tiny_model(seed=0),
        "v2": make_tiny_model(seed=1),
        "v3": make_tiny_model(seed=0, hidden_size=96),
    }
    return models, peft_adapter, data


def test_every_data_command_answers_alike_locally_and_against_a_server(
    served: Served, inputs, tmp_path: Path
) -> None:
    models, adapter, data = inputs
    transcripts, raw = [], []
    for mode in ("local", "remote"):
        tmp = tmp_path / mode
        tmp.mkdir()
        if mode == "local":
            db_url = fresh_db(served.backend, tmp)
            prepare(db_url)
            run = Cli(tmp, ["--home", str(tmp / "home"), "--db", db_url])
        else:
            run = Cli(tmp, [], PATCHREG_URL=served.url, PATCHREG_TOKEN=served.secrets["admin"])
        try:
            got = scenario(run, models, adapter, data, tmp / "out")
        finally:
            if mode == "local" and served.backend != "sqlite":
                drop_pg_database(db_url)
        raw.append(got)
        transcripts.append(normalize(got, tmp))
        if mode == "remote":
            assert not (tmp / "default-home").exists(), "remote mode touched a local registry"
    local, remote = transcripts
    for here, there in zip(local, remote, strict=True):
        assert here == there
    codes = [t[-3] for t in raw[0] if isinstance(t, tuple)]
    assert set(codes) == {0, 1}, "the scenario exercises both successes and user errors"
    assert any("already exists" in line for line in local)


def test_errors_refusals_and_login(served: Served, tmp_path: Path) -> None:
    remote = Cli(tmp_path, [], PATCHREG_URL=served.url, PATCHREG_TOKEN="prt_wrong")
    code, out, err = remote("domain", "list")
    assert (code, out) == (1, "") and err.startswith("error: ") and err.count("\n") == 1  # unauthorized
    reader = Cli(tmp_path, [], PATCHREG_URL=served.url, PATCHREG_TOKEN=served.secrets["read"])
    code, _, err = reader("domain", "create", "nope")
    assert code == 1 and "scopes read" in err and err.count("\n") == 1  # forbidden
    for args in (("serve",), ("db", "upgrade"), ("gc",), ("worker",)):
        code, out, err = reader(*args)
        assert (code, out) == (2, ""), args
        said = f"error: `patchreg {args[0]}` runs only where the registry is, not against a server"
        assert err.startswith(f"{said} ({served.url}); run it with --home/--db") and err.count("\n") == 1
    code, _, err = reader("token", "list")
    assert code == 1 and "scopes read" in err and err.count("\n") == 1  # an admin's verb
    code, _, err = reader("port", "ffffffffffff", "--base", "tiny:v1", "--no-eval")
    assert code == 2 and err.startswith("error: `patchreg port --no-eval/--margin/--keep/--decide-by` runs")
    gone = Cli(tmp_path, ["--server", f"http://127.0.0.1:{free_port()}"])
    code, _, err = gone("domain", "list")
    assert code == 3 and err.startswith("error: ") and err.count("\n") == 1

    anonymous = Cli(tmp_path, [])
    code, _, err = anonymous("login", served.url, "--token", "prt_wrong")
    assert code == 1 and not (tmp_path / "config" / "credentials").exists()
    code, out, _ = anonymous("login", served.url + "/", "--token", served.secrets["write"])
    assert code == 0 and out.startswith(f"logged in to {served.url} as token write (read, write)")
    stored = tmp_path / "config" / "credentials"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"url": served.url, "token": served.secrets["write"]}
    code, out, _ = anonymous("domain", "create", "fromlogin", "--json")  # remote through the file
    assert code == 0 and json.loads(out)["name"] == "fromlogin"
    assert not (tmp_path / "default-home").exists()
    code, _, err = anonymous("serve")
    assert code == 2 and "runs only where the registry is" in err
    local = Cli(tmp_path, ["--home", str(tmp_path / "local")])  # --home wins over the login
    assert local("domain", "list")[0] == 1  # no local database: the local error, not the server
    assert anonymous("logout") == (0, f"logged out: removed {stored}\n", "")
    assert not stored.exists()
