"""Otsu's threshold, and the rule that keeps it stable on tiles that hold only one class.

Otsu (1979) picks the threshold that maximises the between-class variance of
a histogram. On a tile that is all land or all water the histogram has one
mode and Otsu still splits it in two, right through the middle: per-tile
Otsu alone would paint half of every open-water tile as land and half of
every field as water. :func:`robust_threshold` therefore accepts Otsu's
threshold only when the histogram is clearly two-moded, and otherwise falls
back to a fixed, physically meaningful threshold:

1. ``eta = between-class variance / total variance`` at Otsu's threshold
   (Otsu's own separability measure, 0..1) must be >= ``min_eta``. A single
   Gaussian split at its mean gives ``eta = 2/pi = 0.64``; two well separated
   modes give eta close to 1. Default 0.80.
2. The two class means must be at least ``min_gap`` apart (feature units):
   guards against high eta from tiny, tight histograms.
3. The smaller class must hold at least ``min_share`` of the pixels (default
   1 %): a few odd pixels are not a second class.
4. The upper class must look like water: its mean >= ``min_high_mean``. A
   tile of vegetation and bare soil is two-moded too (NDWI about -0.6 and
   -0.15), but neither mode is water; without this rule Otsu would split it.
5. Even then the threshold is clamped to ``clamp`` = (lo, hi), the range
   within which a water/land threshold is plausible for the feature.

If any of 1-4 fails, the threshold is ``fallback``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["otsu", "robust_threshold", "ThresholdRule"]


def otsu(values: np.ndarray, bins: int = 256, value_range: tuple[float, float] | None = None):
    """Otsu's threshold of ``values``: (threshold, eta, mean_low, mean_high, share_high).

    The threshold is the upper edge of the last bin of the lower class; pixels
    ``> threshold`` form the upper class. ``eta`` is the between-class variance
    over the total variance (0 when all values are equal).

    >>> v = np.r_[np.full(50, 0.1), np.full(50, 0.9)]
    >>> t, eta, lo, hi, share = otsu(v, value_range=(0, 1))
    >>> 0.1 < t < 0.9, round(eta, 3), share
    (True, 1.0, 0.5)
    """
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), 0.0, float("nan"), float("nan"), 0.0
    lo, hi = value_range if value_range is not None else (float(v.min()), float(v.max()))
    if not hi > lo:
        return float(lo), 0.0, float(v.mean()), float(v.mean()), 0.0
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    p = hist.astype(np.float64) / hist.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)                     # weight of the lower class for a cut after bin k
    m0 = np.cumsum(p * centres)           # its first moment
    mt = m0[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        sb = (mt * w0 - m0) ** 2 / (w0 * w1)
    sb[~np.isfinite(sb)] = 0.0
    sb[-1] = 0.0
    k = int(np.argmax(sb))
    total = float(np.sum(p * (centres - mt) ** 2))
    eta = float(sb[k] / total) if total > 0 else 0.0
    mean_low = float(m0[k] / w0[k]) if w0[k] > 0 else float("nan")
    mean_high = float((mt - m0[k]) / w1[k]) if w1[k] > 0 else float("nan")
    return float(edges[k + 1]), eta, mean_low, mean_high, float(w1[k])


@dataclass(frozen=True)
class ThresholdRule:
    """When to trust a tile's Otsu threshold (see the module docstring)."""

    fallback: float
    clamp: tuple[float, float]
    value_range: tuple[float, float]
    min_eta: float = 0.80
    min_gap: float = 0.15
    min_share: float = 0.01
    min_high_mean: float = -np.inf
    bins: int = 256


def robust_threshold(values: np.ndarray, rule: ThresholdRule) -> tuple[float, bool]:
    """(threshold, used_otsu) for one tile's feature values under ``rule``.

    >>> rule = ThresholdRule(fallback=0.0, clamp=(-0.3, 0.3), value_range=(-1, 1))
    >>> rng = np.random.default_rng(0)
    >>> robust_threshold(rng.normal(-0.4, 0.05, 10_000), rule)       # all land: fixed threshold
    (0.0, False)
    >>> t, used = robust_threshold(np.r_[rng.normal(-0.4, 0.05, 5000), rng.normal(0.5, 0.05, 5000)], rule)
    >>> used, -0.3 <= t <= 0.3
    (True, True)
    """
    t, eta, m_lo, m_hi, share = otsu(values, rule.bins, rule.value_range)
    ok = (np.isfinite(t) and eta >= rule.min_eta and (m_hi - m_lo) >= rule.min_gap
          and rule.min_share <= share <= 1 - rule.min_share and m_hi >= rule.min_high_mean)
    if not ok:
        return float(rule.fallback), False
    return float(np.clip(t, *rule.clamp)), True
