"""A schemathesis run over every operation of the OpenAPI schema, in-process, on both databases.

Each operation gets `EXAMPLES` positive and `EXAMPLES` negative (schema-violating) cases from a fixed
seed (hypothesis `derandomize`, no example database, no shrinking), sent with an admin token to a
registry seeded with real bases, a domain, a dataset, a patch, an alias and a queued job. Half of the
positive cases have their path and query values swapped for those real names, so the fuzz reaches
past "not found" into the services (bodies get real values too: a real patch file, a real dataset).
The checks: no 5xx (`not_a_server_error`), every status listed for the operation
(`status_code_conformance`), and bodies, content types and headers as documented. Failures are
collected, not raised, so one run reports them all, each with a curl line to reproduce it.

What the run may not do, so that it stays meaningful (see `spare`):
- revoke the token it runs with: `DELETE /v1/tokens/{name}` is sent only for other names (a spare
  token, or generated names, which answer 404);
- create an admin token: `POST /v1/tokens` bodies asking for `admin` are dropped (a new admin token
  would be a privilege grant no run needs; read/write tokens are created freely);
- reach the network: `hf://` base sources resolve with the hub offline (`HF_HUB_OFFLINE`).

Run it alone with `pytest -q tests/registry/api/test_schemathesis.py -s` to see the figures.
"""

from __future__ import annotations

import hashlib
import os
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from registry.db import transaction
from registry.services import tokens
from tests.registry.api.conftest import Api, jsonl

# Per operation and mode; PATCHREG_FUZZ_EXAMPLES raises it for a longer exploratory run.
EXAMPLES = int(os.environ.get("PATCHREG_FUZZ_EXAMPLES", "15"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Real values that differ by operation: a patch ports and uploads to the base it is not on yet.
REAL_PER_PATH: dict[str, dict[str, Any]] = {
    "/v1/patches/{patch_id}/port": {"base": "tiny:v2"},
    "/v1/patches": {"base": "tiny:v2"},
    "/v1/patches/{patch_id}/status": {"status": "validated"},
    "/v1/tokens": {"scopes": ["read"]},
}
FUZZ_TOKEN = "schemathesis-admin"
SPARE_TOKEN = "schemathesis-spare"


@dataclass
class Figures:
    operations: int = 0
    examples: int = 0
    statuses: Counter[str] = field(default_factory=Counter)  # "METHOD /path status" -> count
    unnegatable: int = 0  # operations that have no input a negative case could break
    failures: Counter[str] = field(default_factory=Counter)  # one key per (operation, kind), counted
    samples: dict[str, str] = field(default_factory=dict)  # the first reproduction of each key

    def add(self, key: str, text: str) -> None:
        self.failures[key] += 1
        self.samples.setdefault(key, text)

    def report(self) -> str:
        lines = [
            f"schemathesis: {self.operations} operations ({self.unnegatable} without negative cases), "
            f"{self.examples} examples, "
            f"{sum(self.failures.values())} failing examples in {len(self.failures)} distinct failures"
        ]
        lines += [f"  {n:4d}× {key}\n{self.samples[key]}" for key, n in sorted(self.failures.items())]
        return "\n".join(lines)

    def status_table(self) -> str:
        """How often each operation answered each status: shows how far past 4xx the cases got."""
        by_operation: dict[str, list[str]] = {}
        for key, n in sorted(self.statuses.items()):
            label, status = key.rsplit(" ", 1)
            label = label.replace(" [", "[")
            by_operation.setdefault(label, []).append(f"{status}×{n}")
        return "\n".join(f"  {label}: {' '.join(counts)}" for label, counts in by_operation.items())


@pytest.fixture
def fuzzed(seeded: Api, patch_file: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Api, dict[str, Any]]:
    """The seeded registry plus one of every record, and the real values cases may use."""
    from huggingface_hub import constants as hub_constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    api = seeded
    with transaction(api.registry.factory) as s:
        s.info["actor"] = "test"
        api.secrets[FUZZ_TOKEN] = tokens.create(s, FUZZ_TOKEN, "admin")[1]
        tokens.create(s, SPARE_TOKEN, "read")
    data = jsonl({"prompt": "fever and cough:", "completion": " influenza"}, {"text": "aspirin thins blood"})
    api.ok(
        "POST",
        "/v1/datasets",
        201,
        data={"domain": "medical", "name": "notes", "role": "train"},
        files={"file": ("notes.jsonl", data)},
    )
    patch_id = api.upload_patch(patch_file).json()["id"]
    api.ok("PUT", "/v1/aliases/medical/tiny:v1/production", json={"patch_id": patch_id})
    job = {"domain": "medical", "base": "tiny:v1", "method": "lora", "args": {"steps": 1}}
    job_id = api.ok("POST", "/v1/jobs/train", 201, json=job)["id"]
    real = {
        "patch_id": patch_id,
        "job_id": job_id,
        "ref": "tiny:v1",
        "base": "tiny:v1",
        "family": "tiny",
        "domain": "medical",
        "name": "production",
        "subject": patch_id,
        "method": "lora",
        "role": "train",
        "reason": "schemathesis",
        "patch": patch_file.read_bytes(),  # upload bodies: a real patch and a real dataset
        "file": data,
    }
    return api, real


def body_properties(case: Case) -> list[str]:
    """The fields the operation's request body documents (for the media type of this case)."""
    for body in case.operation.body:
        if body.media_type == case.media_type:
            return list(body.resolved_schema.get("properties", {}))
    return []


def spare(case: Case, real: dict[str, Any], use_real: bool) -> bool:
    """Point a case at real records when asked; False for a case the run must not send."""
    path, query = case.path_parameters or {}, case.query or {}
    body = case.body if isinstance(case.body, dict) else {}
    if use_real:
        values = real | REAL_PER_PATH.get(case.operation.path, {})
        for params in (path, query):
            for name in params:
                if name in values:
                    params[name] = values[name]
        for name in body_properties(case) if isinstance(case.body, dict) else ():
            if name in values:
                body[name] = values[name]
        if case.operation.path == "/v1/tokens/{name}":
            path["name"] = SPARE_TOKEN
    if case.operation.path == "/v1/tokens/{name}" and path.get("name") == FUZZ_TOKEN:
        return False
    scopes = body.get("scopes") if case.operation.path == "/v1/tokens" else None
    return not (isinstance(scopes, list) and "admin" in scopes)


def exercise(case: Case, mode: GenerationMode, secret: str, figures: Figures) -> None:
    """Send one case; any failure becomes a counted, keyed entry instead of an exception."""
    label = f"{case.operation.label} [{mode.value}]"
    figures.examples += 1
    try:
        response = case.call(headers={"Authorization": f"Bearer {secret}"})
        figures.statuses[f"{label} {response.status_code}"] += 1
        case.validate_response(response, checks=CHECKS)
    except FailureGroup as group:
        for failure in group.exceptions:
            figures.add(f"{label}: {failure.title}", str(group)[:1500])
    except Exception as exc:  # the app raised: the client got a 500
        where = traceback.extract_tb(exc.__traceback__)[-1]
        key = f"{label}: unhandled {type(exc).__name__} at {Path(where.filename).name}:{where.lineno}"
        figures.add(key, f"{exc!s:.300}\n{case.as_curl_command()[:600]}")


def fuzz_operation(
    operation: APIOperation, mode: GenerationMode, real: dict[str, Any], secret: str, figures: Figures
) -> None:
    """`EXAMPLES` cases of one operation in one mode, from a seed of its own (stable when others change)."""
    number = int(hashlib.sha256(f"{operation.label} {mode.value}".encode()).hexdigest()[:8], 16)

    @seed(number)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), use_real=st.booleans())
    def run(case: Case, use_real: bool) -> None:
        if spare(case, real, use_real and mode is GenerationMode.POSITIVE):
            exercise(case, mode, secret, figures)

    try:
        run()
    except Unsatisfiable:  # nothing to negate (no parameters, no body): positive cases only
        figures.unnegatable += 1


def fuzz(api: Api, real: dict[str, Any]) -> Figures:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    figures = Figures()
    for result in schema.get_all_operations():
        operation = result.ok()
        figures.operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz_operation(operation, mode, real, api.secrets[FUZZ_TOKEN], figures)
    return figures


def test_schemathesis_finds_no_server_error_and_no_undocumented_status(
    fuzzed: tuple[Api, dict[str, Any]],
) -> None:
    api, real = fuzzed
    figures = fuzz(api, real)
    print("\n" + figures.report() + "\n" + figures.status_table())
    assert figures.operations > 25
    assert not figures.failures, figures.report()
