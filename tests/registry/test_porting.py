"""Patch records, compatibility verdicts, training-free ports and lineage, on both databases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.errors import AlreadyExists, InvalidInput, MalformedFile
from registry.db import transaction
from registry.models import CompatVerdict, Patch
from registry.services import bases, compat, datasets, lineage, patches, ports
from tests.conftest import Registry
from tests.factories import register_family, write_patch
from tests.helpers import NothingWritten


@pytest.fixture
def family(registry: Registry, make_tiny_model, tmp_path: Path) -> Registry:
    """v1; v2 = same shapes, other weights; v3 = wider; vtok = v1 with a changed tokenizer."""
    vtok = tmp_path / "vtok"
    shutil.copytree(make_tiny_model(seed=0), vtok)
    tok = json.loads((vtok / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    a, b = sorted(vocab)[100:102]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (vtok / "tokenizer.json").write_text(json.dumps(tok))
    register_family(registry.factory, make_tiny_model, "medical")
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:vtok", str(vtok), parent="tiny:v1")
    return registry


def test_register_a_patch_file(family: Registry, tmp_path: Path) -> None:
    file = write_patch(tmp_path / "p.safetensors")
    with transaction(family.factory) as s:
        row = patches.register_patch(s, family.store, "medical", "tiny:v1", file, "imported")
    assert (row.method, row.origin, row.status, row.base) == ("lora", "imported", "candidate", "tiny:v1")
    assert row.trainable_params == (4 * 64 + 64 * 4) + 64 * 3 + 64
    with transaction(family.factory) as s:
        assert [p.id for p in patches.list_patches(s, domain="medical", base="tiny:v1")] == [row.id]
        assert patches.list_patches(s, status="validated") == []
        assert patches.show_patch(s, row.id[:6]).digest == row.digest


def test_refused_patch_files_write_nothing(family: Registry, tmp_path: Path, tiny_model_dir: Path) -> None:
    wide = write_patch(tmp_path / "wide.safetensors", hidden=96)
    for file, message, error in [
        (
            wide,
            r"does not fit tiny:v1: module model.layers.0.mlp.down_proj: patch \(scale\) expects weight "
            r"\[96, \?\], tiny:v1 has \[64, 128\] \(\+2 more\)",
            InvalidInput,
        ),
        (tiny_model_dir / "model.safetensors", "not a patchreg patch", MalformedFile),
    ]:
        with (
            NothingWritten(family.engine, family.store.root),
            pytest.raises(error, match=message),
            transaction(family.factory) as s,
        ):
            patches.register_patch(s, family.store, "medical", "tiny:v1", file, "imported")


def test_verdicts_with_reasons(family: Registry, tmp_path: Path) -> None:
    with transaction(family.factory) as s:
        pid = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "p.st"), "imported"
        ).id
        lm = patches.register_patch(
            s,
            family.store,
            "medical",
            "tiny:v1",
            write_patch(tmp_path / "lm.st", with_lm_head=True),
            "imported",
        ).id
    with transaction(family.factory) as s:
        ok = compat.check_compat(s, family.store, pid, "tiny:v2")
        wide = compat.check_compat(s, family.store, pid, "tiny:v3")
        tok_plain = compat.check_compat(s, family.store, pid, "tiny:vtok")
        tok_lm = compat.check_compat(s, family.store, lm, "tiny:vtok")
    # lowrank + columns + scale: no single PEFT adapter type, so no LoRA export rank (core.patchfile)
    assert (ok.verdict, ok.reasons, ok.export_rank) == ("compatible", [], None)
    assert wide.verdict == "incompatible"
    assert {(r.code, r.module) for r in wide.reasons} == {
        ("shape_mismatch", "model.layers.0.self_attn.q_proj"),
        ("shape_mismatch", "model.layers.1.self_attn.o_proj"),
        ("shape_mismatch", "model.layers.0.mlp.down_proj"),
    }
    q = next(r for r in wide.reasons if r.module == "model.layers.0.self_attn.q_proj")
    assert (q.expected, q.found) == ([64, 64], [96, 96]) and "[96, 96]" in q.message
    assert tok_plain.verdict == "compatible"  # a new tokenizer does not matter to inner layers
    assert tok_lm.verdict == "incompatible"
    assert [r.code for r in tok_lm.reasons] == ["tokenizer_changed"] and "lm_head" in tok_lm.reasons[
        0
    ].message


def test_port_is_training_free_idempotent_and_refuses_misfits(family: Registry, tmp_path: Path) -> None:
    with transaction(family.factory) as s:
        source = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "p.st"), "imported"
        )
    blobs_before = sorted(p.name for p in (family.store.root / "sha256").rglob("*") if p.is_file())
    with transaction(family.factory) as s:
        first = ports.port_patch(s, family.store, source.id, "tiny:v2")
    with transaction(family.factory) as s:
        again = ports.port_patch(s, family.store, source.id[:8], "tiny:v2")
        refused = ports.port_patch(s, family.store, source.id, "tiny:v3")
    assert first.created and first.patch is not None and not again.created
    assert again.patch is not None and again.patch.id == first.patch.id
    assert (first.patch.origin, first.patch.parent_id, first.patch.base) == ("ported", source.id, "tiny:v2")
    assert first.patch.digest == source.digest  # no new bytes
    assert sorted(p.name for p in (family.store.root / "sha256").rglob("*") if p.is_file()) == blobs_before
    assert refused.patch is None and refused.verdict.verdict == "incompatible"
    with transaction(family.factory) as s:
        assert s.scalar(select(func.count()).select_from(Patch)) == 2
        assert s.scalar(select(func.count()).select_from(CompatVerdict)) == 2  # the refusal is recorded
    with pytest.raises(InvalidInput, match="already belongs to tiny:v1"), transaction(family.factory) as s:
        ports.port_patch(s, family.store, source.id, "tiny:v1")


def test_the_database_forbids_a_second_port_of_the_same_patch(family: Registry, tmp_path: Path) -> None:
    with transaction(family.factory) as s:
        source = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "p.st"), "imported"
        )
        ported = ports.port_patch(s, family.store, source.id, "tiny:v2").patch
    assert ported is not None
    with pytest.raises(AlreadyExists, match="a ported copy of this patch"), transaction(family.factory) as s:
        row = s.get(Patch, ported.id)
        s.add(
            Patch(
                domain_id=row.domain_id,
                base_version_id=row.base_version_id,
                method="lora",
                artifact_digest=row.artifact_digest,
                trainable_params=1,
                origin="ported",
                parent_id=source.id,
            )
        )


def test_lineage_shows_the_chain_with_dataset_digests(family: Registry, tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "clinical note"}\n')
    with transaction(family.factory) as s:
        ds = datasets.add_dataset(s, family.store, "medical", "notes", data, "train")
        from registry.services.lookup import get_dataset

        ds_id = get_dataset(s, "medical", "notes").id
        root = patches.register_patch(
            s,
            family.store,
            "medical",
            "tiny:v1",
            write_patch(tmp_path / "p.st"),
            "trained",
            train_dataset_id=ds_id,
        )
        v2 = ports.port_patch(s, family.store, root.id, "tiny:v2").patch
    assert v2 is not None
    with transaction(family.factory) as s:
        tree = lineage.lineage(s, v2.id)
    assert tree.focus == v2.id and tree.root.patch.id == root.id and tree.root.verdict is None
    (child,) = tree.root.children
    assert (child.patch.id, child.patch.base, child.verdict) == (v2.id, "tiny:v2", "compatible")
    assert child.patch.train_dataset == "medical/notes"
    assert child.patch.train_dataset_digest == ds.digest


def test_a_release_ports_the_best_patch_and_every_patch_an_alias_pins(
    family: Registry, tmp_path: Path
) -> None:
    from registry.services import aliases, port_sources

    with transaction(family.factory) as s:
        one = patches.register_patch(
            s, family.store, "medical", "tiny:v1", write_patch(tmp_path / "a.st"), "imported"
        )
        other = write_patch(tmp_path / "b.st", with_lm_head=True)
        two = patches.register_patch(s, family.store, "medical", "tiny:v1", other, "imported")
        best = {src.patch_id for src in port_sources.port_sources(s, "tiny:v2")}
        assert len(best) == 1 and best <= {one.id, two.id}  # one per domain and method
        unranked = ({one.id, two.id} - best).pop()
        aliases.set_alias(s, "medical", "tiny:v1", "production", unranked)
        assert {src.patch_id for src in port_sources.port_sources(s, "tiny:v2")} == {one.id, two.id}
