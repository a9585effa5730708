"""The domain-expert water detectors: NDWI + Otsu (optical) and SFS texture + 7x7 mean + Otsu (SAR).

No learning and no weights: these are the "domain expert method" of the seed
talk (CRIM, ApacheCon 2018), usable on real imagery as they are, and the
teachers of the ``water-segmenter`` network.

Both threshold a per-pixel feature tile by tile with Otsu's method, under the
stability rule of :mod:`.otsu` (Otsu only on a clearly two-moded tile,
otherwise a fixed threshold; always clamped to a plausible range). The output
probability is a logistic function of the feature's distance to the tile's
threshold, 0.5 exactly at the threshold, so the host's threshold of 0.5 gives
the expert's decision and overlaps blend smoothly.

    geodetect detect scene.tif water-expert-optical --bands nir=1,red=2,green=3
"""

from __future__ import annotations

import numpy as np

from geodetect.plugins import Detector, DetectorSpec, Mask, Task

from .features import mean_filter, ndwi, sfs_homogeneity, to_linear
from .otsu import ThresholdRule, otsu, robust_threshold

__all__ = ["WaterExpertOptical", "WaterExpertSAR", "NDWI_RULE", "SFS_RULE", "otsu", "robust_threshold"]

#: NDWI: Otsu on [-1, 1] in 256 bins, trusted when the tile is clearly two-moded (eta >= 0.8, class
#: means >= 0.2 apart, each class >= 1 % of the pixels) and the upper class is water-like (mean NDWI
#: >= 0.05); otherwise the fixed threshold 0 (green brighter than NIR: the textbook NDWI water line).
#: Otsu's threshold is clamped to [-0.05, 0.35].
NDWI_RULE = ThresholdRule(fallback=0.0, clamp=(-0.05, 0.35), value_range=(-1.0, 1.0), min_gap=0.2,
                          min_high_mean=0.05)
#: SFS homogeneity (0..1): the same test with an upper-class mean >= 0.4; fixed threshold 0.5
#: otherwise; Otsu clamped to [0.2, 0.8]
SFS_RULE = ThresholdRule(fallback=0.5, clamp=(0.2, 0.8), value_range=(0.0, 1.0), min_gap=0.2, min_high_mean=0.4)


def _logistic(d: np.ndarray, softness: float) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-np.clip(d / softness, -50, 50)))).astype(np.float32)


class WaterExpertOptical(Detector):
    """Water from NDWI = (green - nir) / (green + nir) with a per-tile robust Otsu threshold.

    Bands by name: ``green`` and ``nir``. Files that do not name their bands
    need a map: ``--bands nir=1,red=2,green=3`` (CLI) or ``bands={"nir": 1, "green": 3}``.
    """

    spec = DetectorSpec(
        name="water-expert-optical",
        version="1.0.0",
        task=Task.SEGMENTATION,
        classes=("water",),
        bands=("green", "nir"),
        tile_size=256,
        overlap=32,
        gsd_m=None,  # per-pixel index: any resolution
        threshold=0.5,
        description="water from NDWI (green, nir) and a per-tile Otsu threshold with a stability rule; no learning",
        licence="Apache-2.0",
        extra={"feature": "NDWI", "fallback": 0.0, "otsu_clamp": (-0.05, 0.35), "softness": 0.05},
    )

    #: NDWI distance to the threshold at which the probability is 0.73 (logistic scale)
    softness = 0.05

    def __init__(self, rule: ThresholdRule = NDWI_RULE, fixed: float | None = None):
        """``fixed``: one NDWI threshold for every tile instead of Otsu (CLI: ``-O fixed=0``)."""
        self.rule, self.fixed = rule, (None if fixed is None else float(fixed))
        self.last_thresholds: list[tuple[float, bool]] = []

    def threshold_of(self, feature: np.ndarray) -> tuple[float, bool]:
        """(threshold, used_otsu) of one tile's NDWI."""
        if self.fixed is not None:
            return self.fixed, False
        return robust_threshold(feature, self.rule)

    def predict(self, tiles: np.ndarray) -> list[Mask]:
        out, self.last_thresholds = [], []
        for t in np.asarray(tiles, np.float32):
            v = ndwi(t[..., 0], t[..., 1])
            thr = self.threshold_of(v)
            self.last_thresholds.append(thr)
            out.append(Mask(_logistic(v - thr[0], self.softness)[..., None]))
        return out


class WaterExpertSAR(Detector):
    """Water from SAR VV backscatter: SFS homogeneity -> 7x7 mean filter -> per-tile robust Otsu.

    The input is VV sigma0, linear power (float); tiles whose median is
    negative are taken to be in dB and converted. Parameters of the SFS
    direction lines: ``t1`` (absolute sigma0 difference that ends a line,
    default 0.01 = -20 dB) and ``t2`` (longest line, 15 px); ``mean_size`` the mean filter
    (7); ``fixed`` one threshold for every tile instead of Otsu. On the CLI: ``-O t1=0.005``.
    """

    spec = DetectorSpec(
        name="water-expert-sar",
        version="1.0.0",
        task=Task.SEGMENTATION,
        classes=("water",),
        bands=("vv",),
        tile_size=256,
        overlap=48,  # > 2 x (t2 + 3): the owned part of a tile never sees the tile edge
        gsd_m=None,
        scaling="none",  # sigma0 as stored (linear power or dB), never rescaled
        threshold=0.5,
        description="water from SAR VV: SFS direction-lines homogeneity, 7x7 mean filter, per-tile Otsu; no learning",
        licence="Apache-2.0",
        extra={"t1": 0.01, "t2": 15, "mean_filter": 7},
    )

    softness = 0.05

    def __init__(self, t1: float = 0.01, t2: int = 15, mean_size: int = 7, rule: ThresholdRule = SFS_RULE,
                 fixed: float | None = None):
        if not (t1 > 0 and int(t2) >= 1 and int(mean_size) >= 1):
            from geodetect.errors import ConfigError

            raise ConfigError(f"water-expert-sar: need t1 > 0, t2 >= 1, mean_size >= 1; got t1={t1}, t2={t2}, "
                              f"mean_size={mean_size}")
        self.t1, self.t2, self.mean_size, self.rule = float(t1), int(t2), int(mean_size), rule
        self.fixed = None if fixed is None else float(fixed)
        self.last_thresholds: list[tuple[float, bool]] = []

    def feature(self, vv: np.ndarray) -> np.ndarray:
        """Mean-filtered SFS homogeneity (0..1) of one tile's VV band."""
        x = to_linear(vv)
        return mean_filter(sfs_homogeneity(x, self.t1, self.t2), self.mean_size)

    def predict(self, tiles: np.ndarray) -> list[Mask]:
        out, self.last_thresholds = [], []
        for t in np.asarray(tiles, np.float32):
            f = self.feature(t[..., 0])
            thr = (self.fixed, False) if self.fixed is not None else robust_threshold(f, self.rule)
            self.last_thresholds.append(thr)
            out.append(Mask(_logistic(f - thr[0], self.softness)[..., None]))
        return out
