"""The S3 store on the shared test server (`tests/s3_server.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.store.s3 import S3Store


@pytest.fixture
def s3_store(s3_env: str, tmp_path: Path) -> S3Store:
    return S3Store(s3_env, "team/patches", tmp_path / "s3-cache")
