"""A family's compatibility matrix: source, ported status, incompatible, compatible, not checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import NotFound
from registry.db import transaction
from registry.services import bases, compat, patches, ports
from registry.services.matrix import compat_matrix
from tests.conftest import Registry
from tests.factories import register_family, write_patch


@pytest.fixture
def family(registry: Registry, make_tiny_model) -> Registry:
    """v1, v2 (other weights), v3 (wider: incompatible), v4 (same shapes, never checked)."""
    register_family(registry.factory, make_tiny_model, "medical", "legal")
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v4", str(make_tiny_model(seed=2)), parent="tiny:v3")
    return registry


def test_cells_show_source_port_verdict_and_unchecked(family: Registry, tmp_path: Path) -> None:
    with transaction(family.factory) as s:
        med = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "m.st"), "trained"
        )
        patches.set_status(s, med.id, "validated", "test")
        copy = ports.port_patch(s, family.store, med.id, "tiny:v2").patch
        assert copy is not None
        patches.set_status(s, copy.id, "degraded", "test")
        assert compat.check_compat(s, family.store, med.id, "tiny:v3").verdict == "incompatible"
        legal = patches.register_patch(
            s, family.store, "legal", "tiny:v2", write_patch(tmp_path / "l.st"), "imported"
        )
        compat.check_compat(s, family.store, legal.id, "tiny:v4")  # compatible, not ported
    with transaction(family.factory) as s:
        table = compat_matrix(s, "tiny")
        only_medical = compat_matrix(s, "tiny", domain="medical")

    assert table.versions == ["tiny:v1", "tiny:v2", "tiny:v3", "tiny:v4"]
    assert [r.patch_id for r in table.rows] == [legal.id, med.id]  # by domain; ported copies are no rows
    legal_row, med_row = table.rows
    assert [c.label for c in med_row.cells] == [
        "source (validated)",
        "degraded",
        "incompatible",
        "not checked",
    ]
    assert [c.state for c in med_row.cells] == ["source", "ported", "incompatible", "not checked"]
    assert [c.patch_id for c in med_row.cells] == [med.id, copy.id, None, None]
    assert any("tiny:v3" in r for r in med_row.cells[2].reasons)
    assert [c.label for c in legal_row.cells] == [
        "not checked",
        "source (candidate)",
        "not checked",
        "compatible, not ported",
    ]
    assert (med_row.method, med_row.origin, med_row.base) == ("lora", "trained", "tiny:v1")
    assert [r.patch_id for r in only_medical.rows] == [med.id] and only_medical.domain == "medical"


def test_a_copy_of_a_copy_fills_the_source_row(family: Registry, tmp_path: Path) -> None:
    with transaction(family.factory) as s:
        src = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "m.st"), "trained"
        )
        v2 = ports.port_patch(s, family.store, src.id, "tiny:v2").patch
        assert v2 is not None
        v4 = ports.port_patch(s, family.store, v2.id, "tiny:v4").patch
        assert v4 is not None
        patches.set_status(s, v4.id, "validated", "test")
        compat.check_compat(s, family.store, v2.id, "tiny:v3")  # the copy's verdict counts too
    with transaction(family.factory) as s:
        (row,) = compat_matrix(s, "tiny").rows
    assert [c.label for c in row.cells] == ["source (candidate)", "candidate", "incompatible", "validated"]
    assert row.cells[3].patch_id == v4.id


def test_empty_and_unknown(family: Registry) -> None:
    with transaction(family.factory) as s:
        assert compat_matrix(s, "tiny").rows == []
        with pytest.raises(NotFound, match="no base family named 'nope'"):
            compat_matrix(s, "nope")
        with pytest.raises(NotFound, match="no domain named 'nope'"):
            compat_matrix(s, "tiny", domain="nope")
