"""The deployment files: docker-compose.yml, its CPU override, the Dockerfile and .dockerignore.

Images cannot be built or pulled here, so these tests check the structure the docs promise:
PostgreSQL with a healthcheck and a volume, an S3-compatible store (MinIO) with its bucket made
once, a one-shot migration that the API and the workers wait for, a GPU reservation the CPU
override removes, and no directory shared between patchreg containers: only the database and the
store URLs. When a Docker Compose v2 CLI is on the machine, the merged configuration it prints is
checked too. (The same topology runs for real in tests/cli/test_any_machine.py.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
CPU_OVERRIDE = ROOT / "docker-compose.cpu.yml"
PATCHREG_SERVICES = ("migrate", "api", "worker")
DATABASE_URL = "postgresql+psycopg://patchreg:patchreg@postgres:5432/patchreg"
STORE_URL = "s3://patchreg/artifacts"


class Reset:
    """Compose's `!reset` tag: the override removes the key it is on."""


class _ComposeLoader(yaml.SafeLoader):
    pass


_ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())
_ComposeLoader.add_constructor(
    "!override",
    lambda loader, node: (
        loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True)
    ),
)


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_ComposeLoader)  # a SafeLoader subclass


def _defaults(value: str) -> str:
    """Interpolate `${VAR:-default}` with its default, as compose does when VAR is unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def _volumes(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target -> (source, read_only) from the short `[source:]target[:ro]` syntax; an anonymous
    volume's source is ""."""
    mounts = {}
    for entry in service.get("volumes", []):
        parts = _defaults(entry).split(":")
        if len(parts) == 1:
            parts = ["", *parts]
        mounts[parts[1]] = (parts[0], parts[2:] == ["ro"])
    return mounts


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_services_present(services: dict[str, Any]) -> None:
    assert set(services) == {"postgres", "minio", "bucket", "migrate", "api", "worker"}


def test_postgres_has_a_healthcheck_and_a_named_volume(compose: dict[str, Any], services) -> None:
    pg = services["postgres"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    source, _ = _volumes(pg)["/var/lib/postgresql/data"]
    assert source in compose["volumes"]


def test_migrate_runs_once_after_postgres_is_healthy(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_the_migration_and_the_bucket(services: dict[str, Any], name: str) -> None:
    assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services[name]["depends_on"]["bucket"]["condition"] == "service_completed_successfully"


def test_the_object_store_keeps_its_data_and_makes_the_bucket_once(compose: dict[str, Any], services) -> None:
    minio, bucket = services["minio"], services["bucket"]
    assert _defaults(minio["image"]).startswith("minio/minio")
    assert "healthcheck" in minio and "9000:9000" in minio["ports"]
    source, _ = _volumes(minio)["/data"]
    assert source in compose["volumes"]
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing store/patchreg" in " ".join(bucket["command"])
    assert bucket["restart"] == "no"
    assert STORE_URL.removeprefix("s3://").split("/")[0] == "patchreg"


def test_api_serves_on_8000_with_a_healthcheck(services: dict[str, Any]) -> None:
    api = services["api"]
    assert api["command"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert "8000:8000" in api["ports"]
    assert "http://127.0.0.1:8000/healthz" in " ".join(api["healthcheck"]["test"])
    assert _defaults(api["environment"]["PATCHREG_API_OPEN_READS"]) == "false"


def test_worker_reserves_an_nvidia_gpu_and_can_be_scaled(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["command"] == ["worker", "--device", "auto"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert device.get("count") in (1, "all") or device.get("device_ids")
    # `--scale worker=N` needs replicas that do not clash on a name or a host port.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_every_patchreg_service_shares_one_image_and_the_settings(services: dict[str, Any]) -> None:
    images = {_defaults(services[name]["image"]) for name in PATCHREG_SERVICES}
    assert len(images) == 1
    for name in PATCHREG_SERVICES:
        env = services[name]["environment"]
        assert _defaults(env["PATCHREG_DATABASE_URL"]) == DATABASE_URL
        assert env["PATCHREG_STORE"] == STORE_URL
        assert _defaults(env["AWS_ENDPOINT_URL"]) == "http://minio:9000"
        assert _defaults(env["AWS_ACCESS_KEY_ID"]) == _defaults(
            services["minio"]["environment"]["MINIO_ROOT_USER"]
        )
        assert env["PATCHREG_HOME"] == "/data/home"
        assert services[name]["build"]["context"] == "."


def test_every_patchreg_variable_is_a_setting(services: dict[str, Any]) -> None:
    from registry.config import Settings

    for name in PATCHREG_SERVICES:
        for key in services[name]["environment"]:
            if key.startswith("PATCHREG_"):
                assert key.removeprefix("PATCHREG_").lower() in Settings.model_fields, key


def test_api_and_workers_share_no_directory(compose: dict[str, Any], services) -> None:
    """Only URLs: the API keeps its home in a named volume; each worker replica gets an anonymous
    one (its own caches), so a worker on another machine needs nothing the API has."""
    api, worker = _volumes(services["api"]), _volumes(services["worker"])
    assert api["/data/home"][0] in compose["volumes"]
    assert worker["/data/home"] == ("", False)  # anonymous: one per replica
    named = set(compose["volumes"])
    assert not {src for src, _ in api.values()} & {src for src, _ in worker.values()} & named


@pytest.mark.parametrize("name", ["api", "worker"])
def test_models_are_mounted_read_only(services: dict[str, Any], name: str) -> None:
    source, read_only = _volumes(services[name])["/models"]
    assert source == "./models"
    assert read_only


def test_cpu_override_drops_the_gpu_reservation() -> None:
    worker = _load(CPU_OVERRIDE)["services"]["worker"]
    assert isinstance(worker["deploy"], Reset)
    assert worker["command"] == ["worker", "--device", "cpu"]
    assert _defaults(worker["build"]["args"]["TORCH_INDEX_URL"]).endswith("/whl/cpu")


def test_dockerfile_installs_torch_first_within_the_project_range() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ml"]
    (torch_spec,) = [d for d in deps if re.match(r"torch\b", d)]
    assert f'ARG TORCH_REQUIREMENT="{torch_spec}"' in text
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cu\d+$", text, re.M)
    assert text.index('--index-url "${TORCH_INDEX_URL}"') < text.index('RUN pip install ".[ml,s3]"')
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and not user[-1].startswith(("root", "0"))
    assert re.search(r'^ENTRYPOINT \["patchreg"\]$', text, re.M)


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for source in " ".join(copied).split():
        assert source not in ignored
    assert "models" in ignored and ".venv" in ignored


def test_the_image_copies_every_package_that_pyproject_installs() -> None:
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    packages = {pattern.rstrip("*") for pattern in include["include"]}
    copied = re.findall(r"^COPY (\S+) \./\1$", (ROOT / "Dockerfile").read_text(), re.M)
    assert packages <= set(copied), f"the Dockerfile does not COPY {sorted(packages - set(copied))}"
