"""core.evidence: the bootstrap interval of a mean of paired differences, and its three answers."""

from __future__ import annotations

import random

import pytest

from core.evidence import brief_rows, clears, paired_effect


def test_the_interval_brackets_the_mean_and_narrows_with_more_rows() -> None:
    rng = random.Random(0)
    few = [rng.gauss(0.1, 1.0) for _ in range(50)]
    many = [rng.gauss(0.1, 1.0) for _ in range(5000)]
    small, large = paired_effect(few), paired_effect(many)
    assert small.mean == pytest.approx(sum(few) / 50)
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    # the half-width shrinks as 1/sqrt(n): 10x for 100x the rows, within bootstrap noise
    ratio = (small.high - small.low) / (large.high - large.low)
    assert 7 < ratio < 13
    assert large.low > 0  # 5000 rows show a 0.1 shift that 50 cannot
    assert clears(small, 0.0).answer == "undecided" and clears(large, 0.0).answer == "yes"


def test_rows_needed_is_the_n_at_which_the_interval_would_clear() -> None:
    rng = random.Random(1)
    effect = paired_effect([rng.gauss(0.05, 1.0) for _ in range(200)], seed=3)
    verdict = clears(effect, 0.0)
    assert verdict.answer == "undecided"
    half = (effect.high - effect.low) / 2
    assert verdict.needed == pytest.approx(200 * (half / abs(effect.mean)) ** 2, abs=1)
    assert clears(paired_effect([1.0, 1.0]), 0.0).answer == "yes"
    assert clears(paired_effect([-1.0, -1.0]), 0.0).answer == "no"
    assert clears(paired_effect([0.0, 0.0]), 0.0).answer == "no"  # no effect at all: not above the line


def test_same_seed_same_interval_and_bad_input_is_refused() -> None:
    values = [0.3, -0.1, 0.2, 0.05, 0.4, -0.2]
    assert paired_effect(values, seed=5) == paired_effect(values, seed=5)
    assert paired_effect(values, seed=5) != paired_effect(values, seed=6)
    for bad in ([], [float("nan")], [float("inf"), 1.0]):
        with pytest.raises(ValueError):
            paired_effect(bad)


def test_job_results_carry_the_means_not_the_rows() -> None:
    rows = [{"dataset": "d", "base": {"loss": 1.0, "per_row": {"scores": [0.1]}}, "patch": {"loss": 0.9}}]
    assert brief_rows(rows) == [{"dataset": "d", "base": {"loss": 1.0}, "patch": {"loss": 0.9}}]


def test_a_ratio_of_paired_means_with_its_interval() -> None:
    from core.evidence import paired_ratio

    rng = random.Random(2)
    retrained = [1.0 + rng.gauss(0, 0.3) for _ in range(400)]
    ported = [0.6 * r + rng.gauss(0, 0.05) for r in retrained]
    ratio = paired_ratio(ported, retrained, seed=1)
    assert ratio.mean == pytest.approx(sum(ported) / sum(retrained))
    assert ratio.low < 0.6 < ratio.high and ratio.high - ratio.low < 0.05
    with pytest.raises(ValueError, match="positive mean denominator"):
        paired_ratio([1.0, 2.0], [-1.0, -2.0])
