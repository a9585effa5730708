"""building-segmenter: buildings and built-up blocks in metre-class RGB satellite imagery, a U-Net on EfficientNet-Lite0.

A Keras U-Net whose encoder is EfficientNet-Lite0 with the real ImageNet weights, fine-tuned (see
:func:`.model.build_effnet_unet` and MODEL_CARD.md), gives each pixel of a 256 x 256 tile at 1.0 m
(256 m across) the probability that it is a building; the host blends
the tiles (each pixel from the tile that owns it, away from tile edges),
thresholds at the spec's threshold (chosen on the validation images) and
polygonises: one polygon per connected building area, with ``area_m2``.
Trained on the real Dubai building masks (``train.py``, split in ``dubai.py``).

TensorFlow is imported in :meth:`BuildingSegmenter.load`, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Detector, DetectorSpec, Mask, Task
# tta_model is re-exported: it was defined here until sea-lion-counter 4.1.0
from geodetect.plugins.weights import tta_model, tta_views

__all__ = ["BuildingSegmenter", "WEIGHTS", "WEIGHTS_SHA256", "tta_model"]

WEIGHTS = Path(__file__).resolve().parent / "building_segmenter.keras"
#: probability threshold of the 8-view mean, chosen on the validation images by tune_val.py (val_sweep.json)
THRESHOLD = 0.50
WEIGHTS_SHA256 = "f81640a9b7e1a35cb719aaf755d64db90abd06151c09e673c379b40e1e9d8a38"


class BuildingSegmenter(Detector):
    """Per-pixel building probability (one class, ``building``); footprints come out as polygons."""

    spec = DetectorSpec(
        name="building-segmenter",
        version="0.4.0",
        task=Task.SEGMENTATION,
        classes=("building",),
        bands=("red", "green", "blue"),
        # 256 m of context per tile at 1 m (multiples of 32: five stride-2 steps in the encoder)
        tile_size=256,
        # every pixel is taken from a tile where it lies >= 16 px from the tile edge
        overlap=32,
        # the Dubai images' own pixels (declared 1.0 m, estimated: see MODEL_CARD.md): the ImageNet encoder
        # sees a villa as 12-18 px instead of 6-9 px at 0.3.0's 2 m
        gsd_m=1.0,
        # trained at 1 m with scale augmentation 0.8-1.25; finer scenes are averaged down to 1 m by the host;
        # coarser than 1.25 m would be blown up to pixels the model never saw
        gsd_range=(0.25, 1.25),
        threshold=THRESHOLD,
        min_polygon_px=0,  # keep every polygon (min_area_m2 below, chosen on validation by tune_val.py)
        description="buildings / built-up blocks in metre-class RGB satellite imagery (run at 1 m): a U-Net on an "
                    "ImageNet EfficientNet-Lite0 encoder, fine-tuned on real Dubai masks",
        licence="Apache-2.0",
        weights_sha256=WEIGHTS_SHA256,
    )

    #: building polygons smaller than this (m² at the spec's 1 m) are dropped by the host, after the tiles
    #: are blended and polygons cut by tile and strip borders are joined (the spec's min_polygon_px); 0 keeps all
    min_area_m2 = 0.0

    #: test-time augmentation inside the compiled model: the mean probability over this many views of each tile
    #: (1: the tile as is; 4: the four flips; 8: the four flips of the tile and of its transpose, i.e. every
    #: flip/rotation by 90 degrees), each mapped back to the tile's pixels. 8 was chosen on the validation images
    #: by tune_val.py (val_sweep.json); ``-O tta=1`` runs each tile once, about 8 times faster
    tta = 8

    def __init__(self, weights: str | Path | None = None, sha256: str | None = None, *,
                 min_area_m2: float | None = None, tta: int | None = None):
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else self.spec.weights_sha256
        if tta is not None:
            self.tta = tta_views(tta, detector="building-segmenter")
        if min_area_m2 is not None:
            from dataclasses import replace

            from geodetect.errors import ConfigError

            if not float(min_area_m2) >= 0:
                raise ConfigError(f"building-segmenter: min_area_m2 must be >= 0, got {min_area_m2!r}")
            self.min_area_m2 = float(min_area_m2)
            self.spec = replace(type(self).spec, min_polygon_px=int(round(self.min_area_m2 / type(self).spec.gsd_m**2)))
        self._model = None  # the Keras model predict runs: the network, or its test-time augmentation (tta_model)
        self._net = None  # the network itself
        self._run = None

    def load(self) -> None:
        from geodetect.plugins.weights import compiled_keras_model, import_tensorflow

        self._net, _ = compiled_keras_model(self.weights, self.sha256, detector=self.spec.name)
        self._model = model = self._net if self.tta == 1 else tta_model(self._net, self.tta)
        # traced once per tile shape (the host sends tile_size tiles): not reduce_retracing, whose shape-relaxed trace
        # (height and width None) Keras's bilinear UpSampling2D cannot build
        self._run = import_tensorflow().function(lambda x: model(x, training=False))

    def input_channels(self) -> int | None:
        return None if self._model is None else int(self._model.input_shape[-1])

    def predict(self, tiles: np.ndarray) -> list[Mask]:
        if self._run is None:
            self.ensure_loaded()
        x = np.asarray(tiles, np.float32)
        if not len(x):
            return []
        n, h, w = x.shape[:3]
        ph, pw = -h % 32, -w % 32  # five stride-2 steps in the encoder: pad to multiples of 32
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        probs = self._run(np.ascontiguousarray(x)).numpy()[:, :h, :w, :]
        return [Mask(p) for p in probs]

    def __getstate__(self):  # picklable for Spark: the model is loaded again on the worker
        state = dict(self.__dict__)
        state.update(_model=None, _net=None, _run=None, _geodetect_loaded=False)
        return state
