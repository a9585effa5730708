"""building-segmenter: building footprints in 0.3 m RGB imagery with the U-Net thesis' modified U-Net.

A Keras U-Net (see :mod:`.model` and MODEL_CARD.md) gives each pixel of a
128 x 128 tile the probability that it is a building; the host blends the
tiles (each pixel from the tile that owns it, away from tile edges),
thresholds at 0.5 and polygonises: one footprint polygon per building, with
``area_m2``. Trained on simulated urban scenes only (``train.py``); there is
no Inria imagery on the machines it was built on.

TensorFlow is imported in :meth:`BuildingSegmenter.load`, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Detector, DetectorSpec, Mask, Task

__all__ = ["BuildingSegmenter", "WEIGHTS", "WEIGHTS_SHA256"]

WEIGHTS = Path(__file__).resolve().parent / "building_segmenter.keras"
WEIGHTS_SHA256 = "b70590005555d1f4fc8120112c79ca05a6aeefc9dedf8b16b0c517769e13ba74"


class BuildingSegmenter(Detector):
    """Per-pixel building probability (one class, ``building``); footprints come out as polygons."""

    spec = DetectorSpec(
        name="building-segmenter",
        version="0.1.0",
        task=Task.SEGMENTATION,
        classes=("building",),
        bands=("red", "green", "blue"),
        tile_size=128,  # the thesis' windows
        # the thesis cut 128-px windows edge to edge and shifted the last one inside the image (as the host
        # does); 32 px of overlap more means every pixel is taken from a tile where it lies >= 16 px from
        # the tile edge, where the thesis found its errors
        overlap=32,
        gsd_m=0.3,
        threshold=0.5,
        min_polygon_px=89,  # 8 m² at 0.3 m, applied by the host on the whole scene (min_area_m2 below)
        description="building footprints in 0.3 m RGB: the U-Net thesis' modified U-Net, trained on simulated scenes",
        licence="Apache-2.0",
        weights_sha256=WEIGHTS_SHA256,
    )

    #: building polygons smaller than this (m² at the spec's 0.3 m) are dropped by the host, after the tiles
    #: are blended and polygons cut by tile and strip borders are joined (the spec's min_polygon_px); 0 keeps all
    min_area_m2 = 8.0

    def __init__(self, weights: str | Path | None = None, sha256: str | None = None, *,
                 min_area_m2: float | None = None):
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else self.spec.weights_sha256
        if min_area_m2 is not None:
            from dataclasses import replace

            from geodetect.errors import ConfigError

            if not float(min_area_m2) >= 0:
                raise ConfigError(f"building-segmenter: min_area_m2 must be >= 0, got {min_area_m2!r}")
            self.min_area_m2 = float(min_area_m2)
            self.spec = replace(type(self).spec, min_polygon_px=int(round(self.min_area_m2 / type(self).spec.gsd_m**2)))
        self._model = None
        self._run = None

    def load(self) -> None:
        from geodetect.plugins.weights import compiled_keras_model

        self._model, self._run = compiled_keras_model(self.weights, self.sha256, detector=self.spec.name)

    def input_channels(self) -> int | None:
        return None if self._model is None else int(self._model.input_shape[-1])

    def predict(self, tiles: np.ndarray) -> list[Mask]:
        if self._run is None:
            self.ensure_loaded()
        x = np.asarray(tiles, np.float32)
        if not len(x):
            return []
        n, h, w = x.shape[:3]
        ph, pw = -h % 16, -w % 16  # four 2x2 poolings: pad to multiples of 16
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        probs = self._run(np.ascontiguousarray(x)).numpy()[:, :h, :w, :]
        return [Mask(p) for p in probs]

    def __getstate__(self):  # picklable for Spark: the model is loaded again on the worker
        state = dict(self.__dict__)
        state.update(_model=None, _run=None, _geodetect_loaded=False)
        return state
