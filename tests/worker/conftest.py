"""What the worker tests share: one tiny model family per test session (built once, ~10 s)."""

from __future__ import annotations

import pytest

from trainer.family import Family, build_family


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    return build_family(tmp_path_factory.getbasetemp() / "worker-family")
