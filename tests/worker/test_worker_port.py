"""Porting end to end on the tiny family, on SQLite and PostgreSQL: verdict, statistics,
evaluations, no-op check and gate, with a patch really trained on v1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from sqlalchemy import func, select

from registry.db import transaction
from registry.models import Evaluation, Patch
from registry.services import aliases, bases, datasets, domains, evaluations, lineage, patches
from registry.services.lookup import get_dataset
from tests.conftest import Registry
from trainer.family import Family, domain_rows, write_jsonl
from trainer.loop import TrainArgs, train_to_patch
from trainer.methods.lora import LoraConfig
from trainer.patch.io import load_patch, save_patch
from trainer.patch.types import LowRank
from trainer.patch.types import Patch as PatchFile
from worker.porting import port_and_check


@pytest.fixture(scope="session")
def domain_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("domain")
    train, evals = domain_rows()
    return write_jsonl(train, root / "train.jsonl"), write_jsonl(evals, root / "eval.jsonl")


@pytest.fixture(scope="session")
def trained_patch(
    family: Family, domain_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("patch") / "lora.safetensors"
    config = LoraConfig(r=8)
    train_to_patch(family.v1, domain_files[0], "lora", config, out, args=TrainArgs(steps=30, lr=3e-3, seed=0))
    return out


@pytest.fixture
def registered(
    registry: Registry, family: Family, domain_files: tuple[Path, Path], trained_patch: Path
) -> str:
    with transaction(registry.factory) as s:
        bases.register_base(s, "tiny:v1", str(family.v1))
        bases.register_base(s, "tiny:v2", str(family.v2), parent="tiny:v1")
        bases.register_base(s, "tiny:v3", str(family.v3), parent="tiny:v2")
        domains.create_domain(s, "docs")
        datasets.add_dataset(s, registry.store, "docs", "notes", domain_files[0], "train")
        datasets.add_dataset(s, registry.store, "docs", "quiz", domain_files[1], "eval")
        ds_id = get_dataset(s, "docs", "notes").id
        return patches.register_patch(
            s, registry.store, "docs", "tiny:v1", trained_patch, "trained", train_dataset_id=ds_id
        ).id


def test_port_evaluates_gates_and_records(registry: Registry, registered: str) -> None:
    report = port_and_check(registry.factory, registry.store, registered, "tiny:v2")
    assert report.verdict.verdict == "compatible" and report.created and report.patch is not None
    assert report.portability is not None and 0.0 <= report.portability["score"] <= 1.0
    assert {m["module"] for m in report.portability["modules"]} == set(
        load_patch_modules(registry, registered)
    )
    (row,) = report.rows
    assert set(row) >= {"base", "ported", "source", "source_base"}
    # the trained patch helps on its own base, and the ported copy helps on v2
    assert row["source"]["loss"] < row["source_base"]["loss"]
    assert row["ported"]["loss"] < row["base"]["loss"]
    assert report.status in ("validated", "degraded") and report.why
    with transaction(registry.factory) as s:
        stored = patches.show_patch(s, report.patch.id)
        assert stored.status == report.status and stored.metrics["loss"] == pytest.approx(
            row["ported"]["loss"]
        )
        assert len(evaluations.list_for(s)) == 4  # v2 alone, v2 + patch, v1 alone, v1 + source
        tree = lineage.lineage(s, report.patch.id)
    assert tree.root.children[0].patch.id == report.patch.id
    assert tree.root.children[0].patch.train_dataset == "docs/notes"

    again = port_and_check(registry.factory, registry.store, registered, "tiny:v2")
    assert again.patch is not None and again.patch.id == report.patch.id and not again.created
    with transaction(registry.factory) as s:
        assert s.scalar(select(func.count()).select_from(Patch)) == 2
        assert s.scalar(select(func.count()).select_from(Evaluation)) == 5  # only the ported one re-measured


def test_port_to_a_wider_base_is_refused_with_reasons(registry: Registry, registered: str) -> None:
    report = port_and_check(registry.factory, registry.store, registered, "tiny:v3")
    assert report.patch is None and report.verdict.verdict == "incompatible"
    assert {r.code for r in report.verdict.reasons} == {"shape_mismatch"}
    with transaction(registry.factory) as s:
        assert s.scalar(select(func.count()).select_from(Patch)) == 1


def test_a_zero_patch_is_never_validated(registry: Registry, registered: str, tmp_path: Path) -> None:
    zero = PatchFile(
        "lora", {}, {"model.layers.0.self_attn.q_proj": LowRank(torch.zeros(2, 64), torch.zeros(64, 2), 1.0)}
    )
    path = save_patch(zero, tmp_path / "zero.safetensors")
    with transaction(registry.factory) as s:
        pid = patches.register_patch(s, registry.store, "docs", "tiny:v1", path, "imported").id
    report = port_and_check(registry.factory, registry.store, pid, "tiny:v2")
    assert report.status == "degraded" and "no-op" in report.why and "zero delta" in report.why


def test_no_eval_ports_without_gating(registry: Registry, registered: str) -> None:
    report = port_and_check(registry.factory, registry.store, registered, "tiny:v2", evaluate=False)
    assert report.patch is not None and report.patch.status == "candidate" and report.rows == []
    assert report.portability is not None and "--no-eval" in report.why


def load_patch_modules(registry: Registry, patch_id: str) -> list[str]:
    with transaction(registry.factory) as s:
        digest = patches.show_patch(s, patch_id).digest
    return load_patch(registry.store.local_path(digest)).modules


def test_fetched_peft_adapter_of_the_ported_patch_matches_our_apply(
    registry: Registry, registered: str, family: Family, tmp_path: Path
) -> None:
    from click.testing import CliRunner
    from peft import PeftModel

    from cli.main import cli
    from trainer.hf import load_causal_lm
    from trainer.patch.apply import apply_patch

    report = port_and_check(registry.factory, registry.store, registered, "tiny:v2")
    assert report.patch is not None
    with transaction(registry.factory) as s:  # served whatever the gate said, as an alias pins it
        aliases.set_alias(s, "docs", "tiny:v2", "production", report.patch.id)
    out = tmp_path / "adapter"
    args = ["--home", str(registry.home), "--db", registry.url, "fetch", "docs", "--base", "tiny:v2"]
    result = CliRunner().invoke(cli, [*args, "--format", "peft", "-o", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert report.patch.id in result.stdout

    ids = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 46]])
    ours = load_causal_lm(family.v2, dtype=torch.float32)
    with apply_patch(ours, load_patch(registry.store.local_path(report.patch.digest))), torch.no_grad():
        expected = ours(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(load_causal_lm(family.v2, dtype=torch.float32), out).eval()
    with torch.no_grad():
        got = peft_model(input_ids=ids).logits
    assert (got - expected).abs().max().item() <= 1e-5
