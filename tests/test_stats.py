"""experiments.stats: the CI against a hand computation, Wilcoxon against scipy and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from experiments import stats


def test_mean_sd_ci_matches_t_interval() -> None:
    x = [0.61, 0.64, 0.58, 0.66, 0.63]
    s = stats.mean_sd_ci(x)
    sd = np.std(x, ddof=1)
    half = sps.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert (s.n, s.mean, s.sd) == (5, pytest.approx(np.mean(x)), pytest.approx(sd))
    assert (s.ci_low, s.ci_high) == (
        pytest.approx(np.mean(x) - half),
        pytest.approx(np.mean(x) + half),
    )
    assert s.half_width == pytest.approx(half)


def test_single_value_has_no_spread() -> None:
    s = stats.mean_sd_ci([0.5])
    assert s.n == 1 and s.mean == 0.5
    assert math.isnan(s.sd) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_wilcoxon_matches_scipy_on_a_fixed_example() -> None:
    x = [0.62, 0.71, 0.55, 0.68, 0.60, 0.74, 0.66, 0.59]
    y = [0.60, 0.65, 0.56, 0.61, 0.52, 0.70, 0.63, 0.50]
    got = stats.wilcoxon(x, y)
    want = sps.wilcoxon(x, y)
    assert got.method == "scipy-exact"
    assert got.statistic == pytest.approx(want.statistic)
    assert got.pvalue == pytest.approx(want.pvalue)
    # the permutation path gives scipy's exact answer when nothing ties
    stat, p = stats.permutation_wilcoxon(np.subtract(x, y))
    assert (stat, p) == (pytest.approx(want.statistic), pytest.approx(want.pvalue))


def test_wilcoxon_tiny_n_with_ties_is_exact_permutation() -> None:
    # differences 0.1, 0.1, 0.2: all positive -> the most extreme of 2^3 assignments, p = 2/8
    r = stats.wilcoxon([0.6, 0.7, 0.9], [0.5, 0.6, 0.7])
    assert r.method == "permutation" and r.n_nonzero == 3
    assert r.pvalue == pytest.approx(0.25) and r.min_p == pytest.approx(0.25)
    assert r.statistic == 0.0 and r.mean_diff == pytest.approx(4 / 30)


def test_wilcoxon_all_equal_and_zero_dropped() -> None:
    assert stats.wilcoxon([0.5, 0.6], [0.5, 0.6]).pvalue == 1.0
    r = stats.wilcoxon([0.5, 0.7, 0.9, 0.4], [0.5, 0.6, 0.7, 0.1])  # one zero difference
    assert r.n == 4 and r.n_nonzero == 3 and r.method == "permutation"
    assert r.pvalue == pytest.approx(0.25)


def test_wilcoxon_rejects_unpaired() -> None:
    with pytest.raises(ValueError, match="equal-length"):
        stats.wilcoxon([1.0, 2.0], [1.0])


def test_a_difference_of_float_noise_is_a_tie() -> None:
    x = [0.90, 0.95, 0.88, 0.93, 0.91, 0.90625]
    y = [0.84, 0.86, 0.87, 0.83, 0.85, 0.90625]
    noisy = [*y[:5], float(np.nextafter(0.90625, 0.0))]  # 0.9062499999999999
    exact, rounded = stats.wilcoxon(x, y), stats.wilcoxon(x, noisy)
    assert exact.n_nonzero == 5 and rounded.n_nonzero == 5
    assert rounded.pvalue == exact.pvalue == pytest.approx(0.0625)
