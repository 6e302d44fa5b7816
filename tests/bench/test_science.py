"""bench/science.py end to end on the quick testbed, one training: it trains on every release, ports
each release's patch to every later one through the product's measure and gate, and writes its
tables, JSON, plots and the fitted forecast when one can be fitted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest


def test_the_science_bench_runs_on_the_quick_testbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import science

    monkeypatch.setenv("PATCHREG_TESTBED_CACHE", str(tmp_path / "testbed"))
    out, tables = tmp_path / "science.json", tmp_path / "science.md"
    argv = ["science", "--quick", "--only", "lora", "--steps", "4", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, "--markdown", str(tables), "--plots", str(tmp_path / "plots")])
    science.main()
    report = json.loads(out.read_text())
    (run,) = report["seeds"]
    lora = run["lora"]
    assert lora["params"] > 0
    pairs = [(h["source"], h["release"], h["hop"]) for h in lora["hops"]]
    assert pairs == [
        ("v1", "v2", 1),
        ("v1", "v3", 2),
        ("v1", "v4", 3),
        ("v2", "v3", 1),
        ("v2", "v4", 2),
        ("v3", "v4", 1),
    ]
    for hop in lora["hops"]:
        assert set(hop["gates"].values()) <= {"validated", "degraded", "inconclusive"}
        assert hop["gate"] == hop["gates"]["default"] and hop["portability"]["modules"]
        gain = hop["port_gain"]
        assert gain["n"] == 16 and gain["low"] <= gain["mean"] <= gain["high"]
    assert lora["v1"]["forgetting"]["n"] == 10  # the held-out half of the general rows
    assert report["forecast"]["ports"] == 6 and not report["partial"]
    assert len(lora["rows"]["gain"]) == 16 and len(lora["rows"]["forgetting"]) == 10
    text = tables.read_text()
    assert text.startswith("**--quick") and "| 0 | lora | v2 → v4 |" in text and "| lora | " in text
    assert (tmp_path / "plots" / "params.svg").exists() and (tmp_path / "plots" / "methods.svg").exists()
    assert (tmp_path / "plots" / "recovery.svg").exists() or all(h["recovery"] is None for h in lora["hops"])

    # a report again from the JSON alone (no measuring): what a run stopped part-way is reported by
    again = tmp_path / "again.md"
    argv = ["science", "--from-json", str(out), "--markdown", str(again), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    science.main()
    assert again.read_text() == text
    cut = {**report, "seeds": [run, {}], "partial": True}  # stopped before its second seed trained
    out.write_text(json.dumps(cut))
    science.main()
    assert json.loads(out.read_text())["seeds"] == [run] and again.read_text() == text
    whole = {**report, "seeds": [run, run], "partial": True}  # stopped after its last training
    out.write_text(json.dumps(whole))
    science.main()
    assert json.loads(out.read_text())["seeds"] == [run, run]
