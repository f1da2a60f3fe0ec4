"""Statistics for result tables: mean ± sd with a t-based confidence interval, and the paired
Wilcoxon signed-rank test between two variants across folds (or folds × seeds).

Library code for `experiments.report` and any other table (the benchmark's): plain numbers
in, dataclasses out, no file or model access.

- `mean_sd_ci(values)`: mean, sample sd (ddof=1) and the 95% CI `mean ± t_{0.975, n-1} · sd/√n`.
  One value has no spread: sd and the interval are NaN and `n == 1` says why (tables print
  "n=1", never "± 0.0").
- `wilcoxon(x, y)`: two-sided paired signed-rank test on `x - y`, zero differences dropped
  (Wilcoxon's convention, scipy's default). scipy computes an exact p-value only when no
  difference is zero and no two |differences| tie; otherwise it uses the normal approximation,
  which is poor for the 3-10 pairs a fold table has. For up to `EXACT_MAX_N` non-zero
  differences with ties (or when scipy cannot answer) this module enumerates all 2^n sign
  assignments of the mid-ranks instead: an exact permutation p-value, which equals scipy's
  exact one when there are no ties. With n pairs the smallest two-sided p is 2/2^n
  (n=3: 0.25; n=5: 0.0625), so a few folds can never reach p < 0.05; `min_p` says so.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_MAX_N = 16  # 2^16 sign assignments: instant


@dataclass(frozen=True)
class Summary:
    """Mean, sample sd and a t-based confidence interval of `n` values (NaN spread if n < 2)."""

    mean: float
    sd: float
    n: int
    ci_low: float
    ci_high: float
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def mean_sd_ci(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sd (ddof=1) and the `confidence` CI from Student's t with n-1 degrees of freedom."""
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_sd_ci needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return Summary(mean, math.nan, 1, math.nan, math.nan, confidence)
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1)) * sd / math.sqrt(x.size)
    return Summary(mean, sd, int(x.size), mean - half, mean + half, confidence)


@dataclass(frozen=True)
class WilcoxonResult:
    """A paired two-sided signed-rank test: statistic min(W+, W-), p-value and how it was got."""

    statistic: float
    pvalue: float
    n: int  # pairs given
    n_nonzero: int  # pairs with a non-zero difference (the test's n)
    method: str  # "scipy-exact", "scipy-approx", "permutation" or "all-equal"
    mean_diff: float  # mean of x - y

    @property
    def min_p(self) -> float:
        """The smallest p-value this many non-zero pairs can give (two-sided)."""
        return min(1.0, 2.0 / 2**self.n_nonzero) if self.n_nonzero else 1.0


DIFF_DECIMALS = 12  # paired differences are compared after rounding to this many decimals


def _ranks(a: np.ndarray) -> np.ndarray:
    """Mid-ranks (1-based) of `a`, ties sharing their mean rank."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(a), dtype=np.float64)


def permutation_wilcoxon(d: Sequence[float]) -> tuple[float, float]:
    """(min(W+, W-), exact two-sided p) over all sign assignments of the non-zero `d`'s ranks."""
    x = np.asarray(d, dtype=np.float64)
    x = x[x != 0]
    n = x.size
    if n == 0:
        return 0.0, 1.0
    if n > EXACT_MAX_N:
        raise ValueError(f"permutation_wilcoxon enumerates 2^n; n={n} > {EXACT_MAX_N}")
    r = _ranks(np.abs(x))
    w_plus = float(r[x > 0].sum())
    total = float(r.sum())
    centre = total / 2
    observed = abs(w_plus - centre)
    signs = np.array(list(itertools.product((0.0, 1.0), repeat=n)))  # (2^n, n)
    null = signs @ r  # W+ under every assignment
    # Two-sided: assignments at least as far from the centre as observed (float tolerance).
    p = float(np.mean(np.abs(null - centre) >= observed - 1e-9))
    return min(w_plus, total - w_plus), min(1.0, p)


def wilcoxon(x: Sequence[float], y: Sequence[float]) -> WilcoxonResult:
    """Paired two-sided Wilcoxon signed-rank test of x against y (see the module docstring)."""
    from scipy import stats

    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"wilcoxon needs two equal-length 1-d samples, got {a.shape}, {b.shape}")
    # per-fold means of the same clips' scores reached in another order differ by float noise
    # (0.90625 against 0.9062499999999999): that is a tie, not a win
    d = np.round(a - b, DIFF_DECIMALS)
    n = int(d.size)
    mean_diff = float(d.mean()) if n else math.nan
    nonzero = d[d != 0]
    k = int(nonzero.size)
    if k == 0:
        return WilcoxonResult(0.0, 1.0, n, 0, "all-equal", mean_diff)
    ties = np.unique(np.abs(nonzero)).size < k
    zeros = k < n
    if (ties or zeros) and k <= EXACT_MAX_N:
        statistic, p = permutation_wilcoxon(nonzero)
        return WilcoxonResult(statistic, p, n, k, "permutation", mean_diff)
    try:
        res = stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided", method="auto")
    except ValueError:  # e.g. scipy refusing a degenerate sample
        statistic, p = permutation_wilcoxon(nonzero[:EXACT_MAX_N])
        return WilcoxonResult(statistic, p, n, k, "permutation", mean_diff)
    exact = k <= 50 and not ties and not zeros
    method = "scipy-exact" if exact else "scipy-approx"
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n, k, method, mean_diff)
