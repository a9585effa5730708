"""water-segmenter: a small Keras U-Net trained to reproduce the expert's NDWI + Otsu water labels.

As in the seed talk (CRIM, ApacheCon 2018), the domain-expert method
(``water-expert-optical``) labels imagery and a fully-convolutional network
learns to replicate it: here on the real Landsat San Francisco Bay scene
(held-out southern third for evaluation) and simulated water scenes. See
MODEL_CARD.md. Bands by name: green, red, nir (``--bands nir=1,red=2,green=3``
for the Landsat file, which tags its bands RGB).

TensorFlow is imported in :meth:`WaterSegmenter.load`, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Detector, DetectorSpec, Mask, Task

__all__ = ["WaterSegmenter", "WEIGHTS", "WEIGHTS_SHA256"]

WEIGHTS = Path(__file__).resolve().parent / "water_segmenter.keras"
WEIGHTS_SHA256 = "768ee843ebfdd57765b58959347b204956e0724e548e4daf26a090ce9cdc1728"


class WaterSegmenter(Detector):
    """Water as polygons from green, red and NIR: a compact U-Net (94 k parameters)."""

    spec = DetectorSpec(
        name="water-segmenter",
        version="1.0.0",
        task=Task.SEGMENTATION,
        classes=("water",),
        bands=("green", "red", "nir"),
        tile_size=256,
        overlap=32,
        gsd_m=None,  # trained on 30 m Landsat (23.7 m ground) and 30 m simulated scenes; not resampled
        threshold=0.5,
        description="water from green/red/NIR: compact Keras U-Net trained to reproduce water-expert-optical "
                    "on real Landsat (SF Bay) and simulated scenes",
        licence="Apache-2.0",
        weights_sha256=WEIGHTS_SHA256,
    )

    def __init__(self, weights: str | Path | None = None, sha256: str | None = None):
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else self.spec.weights_sha256
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
        n, h, w = x.shape[:3]
        ph, pw = -h % 4, -w % 4  # two 2x2 poolings
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        p = self._run(x).numpy()[:, :h, :w]
        return [Mask(p[i]) for i in range(n)]

    def __getstate__(self):  # picklable for Spark: the model is loaded again on the worker
        state = dict(self.__dict__)
        state.update(_model=None, _run=None, _geodetect_loaded=False)
        return state
