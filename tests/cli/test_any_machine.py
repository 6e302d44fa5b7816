"""The many-machine deployment, each machine its own process and home, nothing shared but the
database URL, the store URL and the API URL:

- an object store (the S3 test server) holds the base models and every artifact;
- the API (`patchreg serve`) on PostgreSQL + S3;
- a GPU worker (here on the CPU) with only PostgreSQL + S3 and a cache of its own;
- a laptop with only `pip install patchreg` (no torch) and a URL + token.

The laptop runs `patchreg demo --quick`'s story through the server: register v1 from s3://, data,
the demo's four trainings, a PEFT adapter of its own; the worker trains; the laptop releases v2 from
s3://; the worker ports, evaluates, gates and retrains; the laptop reads the matrix, fetches the
patch for v2 as a PEFT adapter and reads its lineage. Then it runs the README's "From any machine"
commands as written, with only the names swapped for the test's.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.demo.plan import DOMAIN, QUICK
from cli.demo.setup import write_data
from tests.cli.test_remote import prepare
from tests.client.conftest import peft_adapter  # noqa: F401
from tests.conftest import create_pg_database, drop_pg_database
from tests.s3_server import raw_client
from tests.servers import patchreg_serve

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def laptop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtual environment with only `pip install <this project>`: no extras, so no torch."""
    venv = tmp_path_factory.mktemp("laptop") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        capture_output=True,
    )
    return venv / "bin"


@pytest.fixture(scope="session")
def quick_family(tmp_path_factory: pytest.TempPathFactory):
    from trainer.family import build_family

    return build_family(tmp_path_factory.mktemp("any-machine-family"), QUICK.family)


def machine_env(home: Path, **extra: str) -> dict[str, str]:
    """A process's environment with nothing of this one's patchreg or AWS settings but `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATCHREG_", "AWS_"))}
    return {**env, "HOME": str(home), "PATCHREG_HOME": str(home / ".patchreg"), **extra}


@pytest.fixture
def database() -> Iterator[str]:
    url = create_pg_database()
    yield url
    drop_pg_database(url)


@pytest.mark.timeout(900)
def test_a_laptop_with_only_the_client_runs_the_demo_story_through_the_server(
    s3_env: str,
    database: str,
    laptop: Path,
    quick_family,
    peft_adapter: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}  # the test server's
    store = {"PATCHREG_STORE": f"s3://{s3_env}/registry", "PATCHREG_DATABASE_URL": database, **aws}
    s3 = raw_client()
    for version in ("v1", "v2"):
        for file in getattr(quick_family, version).iterdir():
            s3.upload_file(str(file), s3_env, f"models/tiny/{version}/{file.name}")
    secrets = prepare(database)

    api_home, worker_home, laptop_home = (tmp_path / name for name in ("api", "worker", "laptop"))
    for home in (api_home, worker_home, laptop_home):
        home.mkdir()
    api_env = machine_env(api_home, **store)
    with patchreg_serve(api_home / "server.log", env=api_env, cwd=api_home) as url:
        story(url, secrets["write"], laptop, laptop_home, worker_home, store, quick_family, peft_adapter)
    assert not (api_home / ".patchreg" / "artifacts").exists()  # the API kept no artifact locally


def story(
    url: str,
    token: str,
    laptop: Path,
    laptop_home: Path,
    worker_home: Path,
    store: dict[str, str],
    family,
    adapter: Path,
) -> None:
    bucket = store["PATCHREG_STORE"].removeprefix("s3://").partition("/")[0]
    env = machine_env(laptop_home, PATCHREG_URL=url, PATCHREG_TOKEN=token)

    def patchreg(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(laptop / "patchreg"), *args], cwd=laptop_home, env=env, capture_output=True, text=True
        )
        if ok:
            assert done.returncode == 0, f"patchreg {' '.join(args)}: {done.stderr}"
        return done

    def worker() -> None:  # another machine: PostgreSQL + S3 and its own home, nothing else
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", "worker", "--until-idle", "--device", "cpu"],
            cwd=worker_home,
            env={**machine_env(worker_home, **store), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stdout + done.stderr

    no_torch = subprocess.run([str(laptop / "python"), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0
    local = patchreg("--home", str(laptop_home / "mine"), "demo", "--quick", ok=False)
    assert local.returncode == 1 and local.stderr.count("\n") == 1
    assert "needs torch, which this installation lacks: pip install 'patchreg[ml]'" in local.stderr

    v1 = json.loads(patchreg("base", "register", "tiny:v1", f"s3://{bucket}/models/tiny/v1", "--json").stdout)
    assert v1["source_uri"] == f"s3://{bucket}/models/tiny/v1@{v1['revision']}"
    patchreg("domain", "create", DOMAIN)
    for name, (file, role) in write_data(QUICK, laptop_home / "data").items():
        patchreg("dataset", "add", DOMAIN, name, str(file), "--role", role)
    for t in QUICK.trainings:
        words = ["train", DOMAIN, "--base", "tiny:v1", "--method", t.method]
        words += ["--regularize", t.regularize] if t.regularize else []
        for setting in t.overrides:
            words += ["--set", setting]
        patchreg(*words, "--steps", str(QUICK.steps), "--lr", str(QUICK.lr), "--batch-size", "4")
    patchreg("domain", "create", "notes")  # the adapter is the only patch there: it is what ports
    imported = json.loads(
        patchreg("patch", "import", "notes", "--base", "tiny:v1", str(adapter), "--json").stdout
    )
    worker()

    patchreg("base", "register", "tiny:v2", f"s3://{bucket}/models/tiny/v2", "--parent", "tiny:v1")
    worker()
    assert json.loads(patchreg("jobs", "list", "--status", "failed", "--json").stdout) == []
    assert any(worker_home.glob(".patchreg/base-cache/s3/*/models/tiny/v2/*/.patchreg-verified"))

    matrix = json.loads(patchreg("compat", "matrix", "tiny", "--domain", DOMAIN, "--json").stdout)
    on_v2 = {row["method"]: row["cells"][1]["state"] for row in matrix["rows"] if row["base"] == "tiny:v1"}
    assert on_v2 == {t.label: "ported" for t in QUICK.trainings}  # every trained patch followed v2
    fetched = patchreg("fetch", "notes", "--base", "tiny:v2", "--format", "peft", "-o", "adapter")
    manifest = json.loads((laptop_home / "adapter" / "patchreg.json").read_text())
    assert manifest["base"] == "tiny:v2" and manifest["origin"] == "ported"
    assert manifest["patch_id"] in fetched.stdout
    assert (laptop_home / "adapter" / "adapter_config.json").is_file()
    lineage = json.loads(patchreg("lineage", manifest["patch_id"], "--json").stdout)
    assert lineage["root"]["patch"]["id"] == imported["id"]
    assert [c["patch"]["id"] for c in lineage["root"]["children"]] == [manifest["patch_id"]]
    assert "tiny:v2" in patchreg("lineage", manifest["patch_id"]).stdout

    again = json.loads(patchreg("port", imported["id"], "--base", "tiny:v2", "--wait", "--json").stdout)
    assert again["kind"] == "port" and again["status"] == "succeeded"  # the job the release queued
    assert again["result"]["patch_id"] == manifest["patch_id"]

    readme_lines(bucket, adapter, laptop_home, patchreg, worker)


def readme_lines(bucket: str, adapter: Path, laptop_home: Path, patchreg, worker) -> None:
    """The README's "From any machine" block, each `patchreg` line as written but for the names;
    the worker runs where the README says workers port."""
    text = (ROOT / "README.md").read_text().split("### From any machine", 1)[1]
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block is not None
    ran = []
    for line in block.group(1).splitlines():
        command = line.split("  #", 1)[0].strip()
        if not command.startswith("patchreg "):
            continue
        command = (
            command.replace("s3://models/llama3/3.1", f"s3://{bucket}/models/tiny/v1")
            .replace("s3://models/llama3/3.2", f"s3://{bucket}/models/tiny/v2")
            .replace("llama3:", "readme:")
            .replace("./my-lora", str(adapter))
            .replace("-o adapter", "-o readme-adapter")
        )
        if "$(jq -r .patch_id adapter/patchreg.json)" in command:
            patch_id = json.loads((laptop_home / "readme-adapter" / "patchreg.json").read_text())["patch_id"]
            command = command.replace('"$(jq -r .patch_id adapter/patchreg.json)"', patch_id)
        done = patchreg(*shlex.split(command)[1:])
        ran.append(done.stdout)
        if "--parent" in command:
            worker()
    assert len(ran) == 7
    assert "readme:3.1" in ran[-1] and "readme:3.2" in ran[-1]  # the lineage: imported, then ported
