"""Which patch fetch serves: alias, best validated, newest candidate, or a NotFound that explains."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from core.errors import NotFound
from registry.db import transaction
from registry.services import aliases, bases, compat, patches, ports
from registry.services.resolve import resolve_patch
from tests.conftest import Registry
from tests.factories import register_family, write_patch


@pytest.fixture
def family(registry: Registry, make_tiny_model) -> Registry:
    register_family(registry.factory, make_tiny_model, "medical")
    return registry


SEEDS = itertools.count()


def _add(reg: Registry, tmp_path: Path, status: str = "candidate", base: str = "tiny:v1", **metrics) -> str:
    """A registered patch with these metrics, moved to `status` (its own bytes: the same bytes
    imported again would be the same patch)."""
    file = write_patch(tmp_path / "p.st", seed=next(SEEDS))
    with transaction(reg.factory) as s:
        row = patches.register_patch(s, reg.store, "medical", base, file, "imported", metrics=metrics)
        if status != "candidate":
            patches.set_status(s, row.id, status, "test")
    return row.id


def _resolve(reg: Registry, method: str | None = None, base: str = "tiny:v1"):
    with transaction(reg.factory) as s:
        return resolve_patch(s, "medical", base, method)


def test_the_production_alias_wins_over_a_better_validated_patch(family: Registry, tmp_path: Path) -> None:
    _add(family, tmp_path, "validated", accuracy=0.9)
    pinned = _add(family, tmp_path, "degraded", accuracy=0.5)  # an explicit pin serves even degraded
    with transaction(family.factory) as s:
        aliases.set_alias(s, "medical", "tiny:v1", "production", pinned)
    got = _resolve(family)
    assert (got.patch.id, got.why) == (pinned, "alias production")


def test_an_alias_on_another_method_or_a_withdrawn_patch_is_passed_over(
    family: Registry, tmp_path: Path
) -> None:
    best = _add(family, tmp_path, "validated", accuracy=0.7)
    pinned = _add(family, tmp_path, "validated", accuracy=0.6)
    with transaction(family.factory) as s:
        aliases.set_alias(s, "medical", "tiny:v1", "production", pinned)
    assert _resolve(family, method="lora").patch.id == pinned
    with pytest.raises(NotFound, match=rf"with method s2ft: {best} \(tiny:v1, method lora\)"):
        _resolve(family, method="s2ft")
    with transaction(family.factory) as s:
        patches.set_status(s, pinned, "rejected", "test")
    got = _resolve(family)
    assert (got.patch.id, got.why) == (best, "best validated by accuracy 0.7")


def test_best_validated_by_accuracy_then_loss(family: Registry, tmp_path: Path) -> None:
    _add(family, tmp_path, "validated", accuracy=0.7, loss=0.1)
    _add(family, tmp_path, "validated")  # no metrics: ranks last however new
    best = _add(family, tmp_path, "validated", accuracy=0.81)
    _add(family, tmp_path, "candidate", accuracy=0.99)  # not validated: never beats a validated one
    got = _resolve(family)
    assert (got.patch.id, got.why) == (best, "best validated by accuracy 0.81")
    tie = _add(family, tmp_path, "validated", accuracy=0.81, loss=0.2)
    worse_tie = _add(family, tmp_path, "validated", accuracy=0.81, loss=0.3)
    got = _resolve(family)
    assert got.patch.id == tie and got.why == "best validated by accuracy 0.81 (tie broken by loss 0.2)"
    assert worse_tie != got.patch.id


def test_validated_without_metrics_and_newest_candidate_fallbacks(family: Registry, tmp_path: Path) -> None:
    first = _add(family, tmp_path)
    newest = _add(family, tmp_path)
    _add(family, tmp_path, "degraded")  # newer still, but degraded is never served silently
    got = _resolve(family)
    assert (got.patch.id, got.why) == (newest, "newest candidate (no validated patch)")
    assert first != newest
    plain = _add(family, tmp_path, "validated")
    got = _resolve(family)
    assert got.patch.id == plain and got.why.startswith("newest validated (no validated patch reports")


def test_nothing_suitable_lists_each_patch_and_why(family: Registry, tmp_path: Path, make_tiny_model) -> None:
    source = _add(family, tmp_path)  # on v1; its copy on v2 is degraded
    with transaction(family.factory) as s:
        compat.check_compat(s, family.store, source, "tiny:v3")  # recorded: incompatible
        v1_copy = ports.port_patch(s, family.store, source, "tiny:v2").patch
        assert v1_copy is not None
        patches.set_status(s, v1_copy.id, "degraded", "test")
    rejected = _add(family, tmp_path, "rejected", base="tiny:v2")
    deprecated = _add(family, tmp_path, "deprecated", base="tiny:v2")
    with pytest.raises(NotFound) as err:
        _resolve(family, base="tiny:v2")
    message = err.value.message
    assert message.startswith("no patch for medical on tiny:v2: ")
    assert f"{source} (tiny:v1, ported as {v1_copy.id})" in message
    assert f"{v1_copy.id} (tiny:v2, degraded, served only when an alias pins it)" in message
    assert f"{rejected} (tiny:v2, rejected)" in message and f"{deprecated} (tiny:v2, deprecated)" in message
    assert "\n" not in message and message.count("; ") == 3
    assert [p["id"] for p in err.value.detail["patches"]] == [source, v1_copy.id, rejected, deprecated]

    with pytest.raises(NotFound, match=rf"{source} \(tiny:v1, incompatible with tiny:v3\)"):
        _resolve(family, base="tiny:v3")
    with transaction(family.factory) as s:
        bases.register_base(s, "tiny:v4", str(make_tiny_model(seed=2)), parent="tiny:v2")
    with pytest.raises(NotFound, match=rf"{source} \(tiny:v1, not ported to tiny:v4\)"):
        _resolve(family, base="tiny:v4")
    with pytest.raises(NotFound, match=rf"{rejected} \(tiny:v2, rejected\)"):
        _resolve(family, base="tiny:v2", method="lora")


def test_a_domain_without_patches_says_so(family: Registry) -> None:
    with pytest.raises(
        NotFound, match=r"^no patch for medical on tiny:v1: domain medical has no patches yet$"
    ):
        _resolve(family)
    with pytest.raises(NotFound, match="no base version tiny:v9"):
        _resolve(family, base="tiny:v9")
