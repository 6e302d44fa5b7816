"""Hostile input over HTTP: every malformed file, config, body, name, path or header is a 4xx with
nothing written (no row, no blob), on SQLite and PostgreSQL; nothing a user sends can make the server
run a regular expression of theirs; the same adapter uploaded again is the same blob."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors.torch import save

from tests.factories import raw_patch
from tests.helpers import NothingWritten
from tests.properties import bounded, deep, dumps, json_values
from tests.registry.api.conftest import Api, jsonl

Q = "model.layers.0.self_attn.q_proj"
DOWN = "model.layers.0.mlp.down_proj"
OP = "model.layers.1.self_attn.o_proj"
H = 64  # tiny:v1's hidden size
TARGET = {"domain": "medical", "base": "tiny:v1"}
JSON = {"content-type": "application/json"}


def _f32(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


def _lowrank(a: np.ndarray, b: np.ndarray) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    return {f"{Q}.A": ("F32", a.shape, _f32(a)), f"{Q}.B": ("F32", b.shape, _f32(b))}


LOWRANK = {Q: {"kind": "lowrank", "scale": 1.0}}
SCALE = {DOWN: {"kind": "scale"}}
ONES = {f"{DOWN}.s": ("F32", (H,), _f32(np.ones(H)))}
NAN_A = np.ones((2, H))
NAN_A[1, 5] = np.nan
INF_S = np.ones(H)
INF_S[H - 1] = -np.inf


def _header_file(header: str) -> bytes:
    return struct.pack("<Q", len(header)) + header.encode()


PATCH_CASES: dict[str, tuple[Any, ...]] = {
    # name: (modules, tensors, extra metadata) for raw_patch, or raw bytes
    "NaN in a lowrank factor": (LOWRANK, _lowrank(NAN_A, np.ones((H, 2))), {}),
    "-Inf in a scale": (SCALE, {f"{DOWN}.s": ("F32", (H,), _f32(INF_S))}, {}),
    "index past the weight": (
        {OP: {"kind": "columns"}},
        {
            f"{OP}.idx": ("I64", (1,), np.array([10**6], dtype="<i8").tobytes()),
            f"{OP}.values": ("F32", (H, 1), _f32(np.ones((H, 1)))),
        },
        {},
    ),
    "0-d scale": (SCALE, {f"{DOWN}.s": ("F32", (), _f32(np.ones(1)))}, {}),
    "3-D dense": ({DOWN: {"kind": "dense"}}, {f"{DOWN}.delta": ("F32", (1, 1, 1), _f32(np.ones(1)))}, {}),
    "0-d lowrank B": (
        LOWRANK,
        {**_lowrank(np.ones((1, H)), np.ones((H, 1))), f"{Q}.B": ("F32", (), bytes(4))},
        {},
    ),
    "method_config a list": (SCALE, ONES, {"method_config": "[]"}),
    "method_config null": (SCALE, ONES, {"method_config": "null"}),
    "method_config 100k deep": (SCALE, ONES, {"method_config": deep(100_000)}),
    "method_config huge int": (SCALE, ONES, {"method_config": '{"r": ' + "7" * 5000 + "}"}),
    "NUL in metadata": (SCALE, ONES, {"note": "a\x00b"}),
    "method too long": (SCALE, ONES, {"method": "m" * 33}),
    "header 100k deep": _header_file(deep(100_000)),
    "header huge int": _header_file(
        '{"t": {"dtype": "F32", "shape": [' + "9" * 5000 + '], "data_offsets": [0, 4]}}'
    ),
    "header NaN": _header_file('{"t": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 4]}}'),
}


def test_hostile_patch_files_are_refused_with_nothing_written(seeded: Api, tmp_path: Path) -> None:
    for name, case in PATCH_CASES.items():
        path = tmp_path / "p.safetensors"
        if isinstance(case, bytes):
            path.write_bytes(case)
        else:
            modules, tensors, meta = case
            raw_patch(path, modules, tensors, **meta)
        with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
            response = seeded.upload_patch(path)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["code"] in ("malformed_file", "invalid_input"), name
        assert "\n" not in response.json()["error"]["message"], name
    assert seeded.get("/v1/resolve", params={**TARGET}).status_code == 404  # nothing to serve


def _adapter(config: dict[str, Any], module: str = Q) -> dict[str, tuple[str, bytes]]:
    g = torch.Generator().manual_seed(0)
    tensors = {
        f"base_model.model.{module}.lora_A.weight": torch.randn(2, H, generator=g),
        f"base_model.model.{module}.lora_B.weight": torch.randn(H, 2, generator=g),
    }
    body = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"], **config}
    return {
        "adapter_model": ("adapter_model.safetensors", save(tensors)),
        "adapter_config": ("adapter_config.json", json.dumps(body, allow_nan=True).encode()),
    }


def test_a_catastrophic_pattern_is_refused_at_once(seeded: Api) -> None:
    """`(a+)+` against a 28-character run took 53 s and froze the server; now it is never run."""
    files = _adapter({"rank_pattern": {"(a+)+": 2}}, module="a" * 28 + "!")
    started = time.perf_counter()
    with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
        response = seeded.post("/v1/patches", data=TARGET, files=files)
    elapsed = time.perf_counter() - started
    assert response.status_code == 422, response.text
    assert "regular expression patchreg does not run" in response.json()["error"]["message"]
    assert elapsed < 5, f"answered in {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"rank_pattern": {"(": 2}}, "regular expression"),
        ({"rank_pattern": ["q_proj"]}, "rank_pattern must be an object"),
        ({"rank_pattern": {"q_proj": "2"}}, "expected an integer"),
        ({"alpha_pattern": {"q_proj": [4]}}, "expected a number"),
        ({"r": float("nan")}, "NaN is not a number"),
        ({"r": 2.5}, "r=2.5"),
        ({"target_modules": {"q": 1}}, "target_modules must be"),
    ],
)
def test_bad_peft_configs_are_refused(seeded: Api, config: dict[str, Any], message: str) -> None:
    with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
        response = seeded.post("/v1/patches", data=TARGET, files=_adapter(config))
    assert response.status_code == 422, response.text
    assert message in response.json()["error"]["message"]


def test_the_same_adapter_uploaded_again_is_the_same_patch(seeded: Api) -> None:
    """The conversion is deterministic, so the second and third uploads find the first patch (200)."""
    files = _adapter({"rank_pattern": {"q_proj": 2}, "alpha_pattern": {Q: 4}, "revision": "abc"})
    first = seeded.ok("POST", "/v1/patches", 201, data=TARGET, files=files)
    again = [seeded.ok("POST", "/v1/patches", 200, data=TARGET, files=files) for _ in range(2)]
    assert {(p["id"], p["digest"]) for p in again} == {(first["id"], first["digest"])}


def test_hostile_json_bodies_are_refused(seeded: Api) -> None:
    seeded.ok("POST", "/v1/datasets", 201, data={"domain": "medical", "name": "d", "role": "train"},
              files={"file": ("d.jsonl", jsonl({"text": "hello"}))})  # fmt: skip
    train = {"domain": "medical", "base": "tiny:v1", "method": "lora"}
    cases = [
        ("/v1/domains", deep(100_000), "nested more than 32 levels"),
        ("/v1/domains", '{"name": "x", "description": ' + "9" * 5000 + "}", "5,000 digits"),
        ("/v1/domains", '{"name": "a\\u0000b"}', "NUL"),
        ("/v1/domains", '{"name": "a\\ud800"}', "unpaired surrogate"),
        (
            "/v1/jobs/train",
            json.dumps({**train, "args": {"steps": float("nan")}}),
            "NaN is not a number",
        ),
        (
            "/v1/jobs/train",
            json.dumps({**train, "args": {"lr": float("inf")}}),
            "Infinity is not a number",
        ),
        (
            "/v1/jobs/train",
            json.dumps({**train, "args": {"steps": 1e300}}),
            "steps=1e+300: expected an integer",
        ),
        ("/v1/jobs/train", json.dumps({**train, "args": {"lr": 1e300}}), "lr=1e+300: expected a number"),
        ("/v1/jobs/train", json.dumps({**train, "args": {"seed": 2**70}}), "22 digits"),
        ("/v1/bases", json.dumps({"ref": "tiny:v9", "source": "/models/\x00x"}), "NUL"),
    ]
    for path, body, message in cases:
        with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
            response = seeded.post(path, content=body, headers=JSON)
        assert response.status_code == 422, (path, body[:80], response.text)
        assert message in response.json()["error"]["message"], (body[:80], response.text)


def test_nul_in_paths_queries_and_form_fields_is_refused(seeded: Api) -> None:
    for path, params in (
        ("/v1/patches/a%00b", None),
        ("/v1/patches", {"domain": "a\x00"}),
        ("/v1/domains/%00", None),
    ):
        response = seeded.get(path, params=params)
        assert response.status_code == 422, (path, response.text)
        assert "NUL" in response.json()["error"]["message"]
    with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
        response = seeded.post("/v1/datasets", data={"domain": "medical", "name": "a\x00b", "role": "train"},
                               files={"file": ("d.jsonl", jsonl({"text": "hello"}))})  # fmt: skip
    assert response.status_code == 422 and "form field 'name' holds a NUL" in response.text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (deep(100_000).encode(), "nested more than 32"),
        (b'{"text": "a", "n": ' + b"9" * 5000 + b"}", "5,000 digits"),
        (b'{"text": NaN}', "NaN is not a number"),
    ],
)
def test_hostile_jsonl_is_refused(seeded: Api, line: bytes, message: str) -> None:
    with NothingWritten(seeded.registry.engine, seeded.registry.store.root):
        response = seeded.post("/v1/datasets", data={"domain": "medical", "name": "d", "role": "train"},
                               files={"file": ("d.jsonl", jsonl({"text": "ok"}) + line + b"\n")})  # fmt: skip
    assert response.status_code == 422 and message in response.json()["error"]["message"], response.text


def test_ranges_with_huge_numbers(seeded: Api, patch_file: Path) -> None:
    patch = seeded.upload_patch(patch_file).json()
    url, size = f"/v1/patches/{patch['id']}/download", patch["size"]
    huge = "9" * 5000
    assert seeded.get(url, headers={"Range": f"bytes={huge}-"}).status_code == 416
    assert seeded.get(url, headers={"Range": f"bytes={huge}-{huge}"}).status_code == 416
    whole = seeded.get(url, headers={"Range": f"bytes=-{huge}"})
    assert whole.status_code == 206 and len(whole.content) == size
    tail = seeded.get(url, headers={"Range": f"bytes=10-{huge}"})
    assert tail.status_code == 206 and tail.headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    assert (
        seeded.get(url, headers={"Range": "bytes=\u0663-".encode()}).status_code == 200
    )  # not ASCII digits: ignored


@bounded(100)
@given(body=json_values, field=st.sampled_from(["name", "description", "x"]))
def test_any_json_body_is_a_4xx_or_a_success(api: Api, body: Any, field: str) -> None:
    for path, content in (
        ("/v1/domains", {field: body, "name": body} if field == "x" else {field: body}),
        ("/v1/jobs/train", {"domain": "m", "base": "tiny:v1", "method": "lora", "args": {"steps": body}}),
        ("/v1/tokens", body),
    ):
        response = api.post(path, content=dumps(content), headers=JSON, as_="admin")
        assert response.status_code < 500, (path, content, response.text)
