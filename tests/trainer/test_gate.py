"""The gate: one decide() for trained and ported patches, with a validated config."""

from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.plans import Measurement
from trainer.gate import GateConfig, decide

CHANGES = {"max_abs_change": 0.5, "mean_abs_change": 0.1, "num_probes": 4, "reason": None}
NO_CHANGE = {**CHANGES, "max_abs_change": 0.0, "mean_abs_change": 0.0}


def _row(base: float, ported: float, source_base: float, source: float) -> dict:
    values = {"base": base, "ported": ported, "source_base": source_base, "source": source}
    return {"dataset": "docs/eval", **{k: {"loss": 1.0, "accuracy": v} for k, v in values.items()}}


def _port(row: dict, noop: dict = CHANGES, gate: GateConfig | None = None) -> tuple[str, str]:
    decision = decide(
        Measurement(rows=[row], noop=noop), gate or GateConfig(), patched="ported", source="source"
    )
    return decision.status, decision.why


def test_a_port_must_beat_the_base_and_keep_its_source_gain() -> None:
    assert _port(_row(0.5, 0.71, 0.5, 0.75)) == (
        "validated",
        "beats the base alone by +0.2100, 84% of its source gain",
    )
    assert _port(_row(0.5, 0.6, 0.5, 0.75))[1] == "keeps 40% of its source gain, under 80%"
    assert _port(_row(0.5, 0.5, 0.5, 0.75))[1].startswith("does not beat the base alone (gain +0.0000")
    assert _port(_row(0.5, 0.9, 0.5, 0.75), noop=NO_CHANGE)[1].startswith("no-op (max output change 0 <=")
    assert _port(_row(0.5, 0.9, 0.5, 0.75), noop={**CHANGES, "reason": "zero delta"})[0] == "degraded"
    assert _port(_row(0.5, 0.6, 0.5, 0.75), gate=GateConfig(keep_fraction=0.3))[0] == "validated"


def test_a_trained_patch_is_judged_against_its_base_alone_and_keeps_the_numbers() -> None:
    rows = [
        {"dataset": "d", "base": {"loss": 2.0, "accuracy": None}, "patch": {"loss": 1.5, "accuracy": None}}
    ]
    decision = decide(Measurement(rows=rows, noop=CHANGES), GateConfig(), patched="patch")
    assert (decision.status, decision.why) == ("validated", "beats the base alone by +0.5000")
    assert decision.metrics == {"loss": 1.5, "gain": 0.5, "gate": decision.why}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"keep_fraction": 1.5}, "keep_fraction=1.5 must be in"),
        ({"margin": float("nan")}, "margin=nan must be a finite number"),
        ({"noop_tolerance": -1}, "noop_tolerance=-1 must be a number"),
    ],
)
def test_gate_settings_are_validated(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GateConfig(**settings)
