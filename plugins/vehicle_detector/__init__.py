"""vehicle-detector: cars, trucks and buses as boxes in RGB aerial imagery of 0.09-0.3 m (worked at 0.15 m).

A single-stage CenterNet-style detector in Keras (see :mod:`.model` and
MODEL_CARD.md): per-class centre heatmaps, box size and sub-pixel offset on
a stride-4 grid, decoded by 3x3 max-pool peak picking inside one compiled
``tf.function``. Fine-tuned (``train.py``) on the real KIT AIS strips of
Munich (cars, buses) from weights trained on simulated scenes, with simulated
scenes mixed in for trucks, which KIT AIS does not have. The classes keep
xView's type ids (18, 23, 19) for reference.

TensorFlow is imported in :meth:`VehicleDetector.load`, never at import time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Boxes, Detector, DetectorSpec, Task

__all__ = ["VehicleDetector", "CLASSES", "XVIEW_TYPE_IDS", "WEIGHTS"]

CLASSES = ("car", "truck", "bus")
#: xView type ids of the classes (the seed talk's ``vehicle_classes``)
XVIEW_TYPE_IDS = (18, 23, 19)
WEIGHTS = Path(__file__).resolve().parent / "vehicle_detector.keras"
WEIGHTS_SHA256 = "7c2e1f55ef291f0e19a1560ba9f53fd3901d635bf1a437185e4e95e179394f40"


class VehicleDetector(Detector):
    """Cars, trucks and buses as axis-aligned boxes (CenterNet-style, stride 4)."""

    spec = DetectorSpec(
        name="vehicle-detector",
        version="0.2.0",
        task=Task.BOXES,
        classes=CLASSES,
        bands=(1, 2, 3),
        tile_size=384,
        overlap=96,  # > the longest vehicle (12.5 m bus = 83 px at 0.15 m)
        gsd_m=0.15,
        # real training frames at 0.116-0.132 m (scale-augmented by 0.8-1.25), simulated scenes drawn
        # at 0.15 and 0.3 m; the host resamples any scene in the range to 0.15 m
        gsd_range=(0.09, 0.3),
        nms_iou=0.5,
        merge_radius_px=4.0,
        description="cars, trucks, buses as boxes in 0.09-0.3 m RGB: CenterNet-style Keras detector fine-tuned on "
                    "real KIT AIS aerial strips of Munich (cars, buses) plus simulated scenes (trucks)",
        licence="Apache-2.0 (code); weights trained on KIT AIS (CC BY 3.0) and simulated scenes",
        weights_sha256=WEIGHTS_SHA256,
        extra={"xview_type_ids": dict(zip(CLASSES, XVIEW_TYPE_IDS))},
    )

    #: peaks below this score are dropped (chosen on the validation bands by evaluate.py)
    score_threshold = 0.35
    #: at most this many peaks per tile
    max_detections = 300

    def __init__(self, weights: str | Path | None = None, sha256: str | None = None):
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else self.spec.weights_sha256
        self._model = None
        self._run = None

    def load(self) -> None:
        from geodetect.plugins.weights import import_tensorflow, load_keras_model

        from .model import decode

        tf = import_tensorflow()
        model = load_keras_model(self.weights, self.sha256, detector=self.spec.name)
        k = int(self.max_detections)

        @tf.function(reduce_retracing=True)
        def run(x):
            return decode(tf, model(x, training=False), k)

        self._model, self._run = model, run

    def input_channels(self) -> int | None:
        return None if self._model is None else int(self._model.input_shape[-1])

    def predict(self, tiles: np.ndarray) -> list[Boxes]:
        if self._run is None:
            self.ensure_loaded()
        x = np.asarray(tiles, np.float32)
        n, h, w = x.shape[:3]
        ph, pw = -h % 16, -w % 16  # the network needs multiples of 16
        if ph or pw:
            x = np.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
        boxes, scores, classes = (t.numpy() for t in self._run(x))
        out = []
        thr = float(self.score_threshold)
        for b, s, c in zip(boxes, scores, classes):
            keep = s >= thr
            out.append(Boxes(b[keep].astype(np.float64), c[keep].astype(np.int64), s[keep].astype(np.float32)))
        return out

    def __getstate__(self):  # picklable for Spark: the model is loaded again on the worker
        state = dict(self.__dict__)
        state.update(_model=None, _run=None, _geodetect_loaded=False)
        return state
