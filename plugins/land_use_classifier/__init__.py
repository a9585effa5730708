"""land-use-classifier: one of six land-use classes per 1.2 x 1.2 km tile of RGB imagery.

The six NLCD-derived classes of the land-use seed (``developed, cultivated,
forest, shrub, barren, herbaceous``) or, with ``LandUseClassifier(grouping="three-class")``,
the seed's three groups (``developed, cultivated, undeveloped``; probabilities
summed per group). Transfer learning: an EfficientNet-Lite0 backbone carrying
the real ImageNet weights (converted by ``scripts/convert_efficientnet_lite0.py``)
and a softmax head trained on the real AID aerial scenes (``train.py``; see MODEL_CARD.md).
No AID class is shrub: the model never learnt it.

Scale: an AID image (150 px) is one tile. Unreferenced AID-like images are placed
at :data:`PLACEMENT_GSD_M` (8 m: 150 px = 1,200 m); the model works at
``spec.gsd_m`` = 1,200 m / 224 px (5.36 m), so a 224 px tile covers 1,200 m of
any scene, which the host resamples to that GSD. Scenes of 0.5-10 m pixels are accepted.

Tiles do not overlap, so two runs over the same grid give footprints that
line up exactly (what :func:`geodetect.change` compares).

TensorFlow is imported in :meth:`LandUseClassifier.load`, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError
from geodetect.plugins import Detector, DetectorSpec, Labels, Task

__all__ = ["LandUseClassifier", "CLASSES", "GROUPS", "THREE_CLASS", "WEIGHTS", "PLACEMENT_GSD_M", "TILE_M"]

CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
GROUPS = ("developed", "cultivated", "undeveloped")
#: the seed's three-class grouping: fine class -> group (also ``geodetect evaluate --grouping three-class``)
THREE_CLASS = {
    "developed": "developed",
    "cultivated": "cultivated",
    "forest": "undeveloped",
    "shrub": "undeveloped",
    "barren": "undeveloped",
    "herbaceous": "undeveloped",
}
#: the GSD at which an unreferenced 150 px AID image is placed (the middle, geometrically, of AID's 2-32 m)
PLACEMENT_GSD_M = 8.0
#: ground covered by one tile: one placed AID image
TILE_M = PLACEMENT_GSD_M * 150
WEIGHTS = Path(__file__).resolve().parent / "land_use_classifier.keras"
WEIGHTS_SHA256 = "b0fe956ab157a31b983b049933b0193b6eb5789508a0d8999fe9e00d4b24e096"

_SPEC = dict(
    name="land-use-classifier",
    version="0.2.0",
    task=Task.CLASSIFICATION,
    bands=(1, 2, 3),
    tile_size=224,
    overlap=0,
    gsd_m=TILE_M / 224,
    gsd_range=(0.5, 10.0),
    licence="Apache-2.0",
    weights_sha256=WEIGHTS_SHA256,
)


class LandUseClassifier(Detector):
    """Land use per 1.2 km tile: EfficientNet-Lite0 (ImageNet) + a head trained on real AID scenes.

    Parameters
    ----------
    grouping : ``None`` for the six classes, ``"three-class"`` for developed / cultivated / undeveloped.
    weights, sha256 : another weights file and its hash (default: the committed ones).
    """

    spec = DetectorSpec(
        classes=CLASSES,
        description="six NLCD-derived land-use classes per 1.2 km tile of 0.5-10 m RGB (224 px at 5.36 m): "
                    "EfficientNet-Lite0 (ImageNet) with a head trained on real AID scenes (no shrub example)",
        extra={"groupings": {"three-class": THREE_CLASS}},
        **_SPEC,
    )

    #: named groupings of the classes (``geodetect evaluate ... --grouping three-class``)
    groupings = {"three-class": THREE_CLASS}

    def __init__(self, grouping: str | None = None, weights: str | Path | None = None, sha256: str | None = None):
        if grouping not in (None, "three-class"):
            raise ConfigError(f"land-use-classifier: grouping must be None or 'three-class', got {grouping!r}")
        self.grouping = grouping
        if grouping == "three-class":
            self.spec = DetectorSpec(
                classes=GROUPS,
                description="land use in three groups (developed, cultivated, undeveloped) per 1.2 km tile of "
                            "0.5-10 m RGB: the six-class model's probabilities summed per group",
                extra={"grouping": THREE_CLASS},
                **_SPEC,
            )
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else _SPEC["weights_sha256"]
        self._model = None
        self._run = None
        # (6, 3) matrix summing fine probabilities into groups
        self._group = np.array([[THREE_CLASS[c] == g for g in GROUPS] for c in CLASSES], np.float32)

    def load(self) -> None:
        from geodetect.plugins.weights import compiled_keras_model

        self._model, self._run = compiled_keras_model(self.weights, self.sha256, detector=self.spec.name)

    def input_channels(self) -> int | None:
        return None if self._model is None else int(self._model.input_shape[-1])

    def predict_fine(self, tiles: np.ndarray) -> np.ndarray:
        """Six-class probabilities (N, 6) of float32 tiles (N, 224, 224, 3) on 0..1."""
        if self._run is None:
            self.ensure_loaded()
        x = np.asarray(tiles, np.float32)
        if x.shape[1:3] != (224, 224):
            raise ConfigError(f"land-use-classifier takes 224 x 224 tiles, got {x.shape[1]} x {x.shape[2]}; "
                              "keep the spec's tile_size")
        return np.asarray(self._run(x), np.float32)

    def predict(self, tiles: np.ndarray) -> list[Labels]:
        p = self.predict_fine(tiles)
        if self.grouping == "three-class":
            p = p @ self._group
        return [Labels(row) for row in p]

    def __getstate__(self):  # picklable for Spark: the model is loaded again on the worker
        state = dict(self.__dict__)
        state.update(_model=None, _run=None, _geodetect_loaded=False)
        return state
