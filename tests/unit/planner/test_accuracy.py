"""The calibration report's arithmetic: ranks, Spearman's correlation, errors and the table."""

from __future__ import annotations

import math

import pytest

from alignkit.planner.accuracy import Comparison, ranks, render_comparison, spearman


def test_ranks_average_ties():
    assert ranks([5, 6, 7, 8, 7]) == [1, 2, 3.5, 5, 3.5]
    assert ranks([3.0, 1.0, 2.0]) == [3, 1, 2]


def test_spearman_against_hand_worked_examples():
    # No ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)); d = (0, 1, -1, 0) -> 1 - 12/60.
    assert spearman([10, 20, 30, 40], [1, 3, 2, 4]) == pytest.approx(0.8)
    # Ties: ranks (1..5) against (1, 2, 3.5, 5, 3.5); deviations from 3 give
    # cov 8, variances 10 and 9.5 -> 8 / sqrt(95).
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    with pytest.raises(ValueError, match="equal length >= 2"):
        spearman([1.0], [2.0])


def test_error_and_table():
    rows = [Comparison("a", "grpo h64x2", 0.3, 0.2), Comparison("bb", "ppo h128x4", 0.5, 1.0)]
    assert rows[0].error == pytest.approx(0.5) and rows[1].error == pytest.approx(-0.5)
    assert render_comparison(rows) == (
        "run  shape       predicted s/step  measured s/step  error %\n"
        "---  ----------  ----------------  ---------------  -------\n"
        "a    grpo h64x2            0.3000           0.2000    +50.0\n"
        "bb   ppo h128x4            0.5000           1.0000    -50.0\n"
        "\n"
        "mean absolute error: 50.0%\n"
        "Spearman rank correlation (predicted vs measured, 2 runs): 1.000\n"
    )
