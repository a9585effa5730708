"""tree-crowns: tree crowns as boxes in 10 cm RGB airborne imagery (a third-party geodetect plugin).

A small single-stage detector in Keras (CenterNet / TTFNet style, see
MODEL_CARD.md in examples/tree-crowns): at stride 4 the network outputs a
tree-centre logit and the distances from the cell to the crown's four box
edges; boxes are decoded by 3 x 3 max-pool peak picking and a score
threshold. Trained on NEON tree-crown boxes shipped with DeepForest (MIT).
TensorFlow is imported in :meth:`TreeCrowns.load` only, so that listing
detectors stays fast.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Boxes, Detector, DetectorSpec, Task

__all__ = ["TreeCrowns", "WEIGHTS", "STRIDE", "decode_peaks", "decode_boxes", "nms"]

__version__ = "0.1.0"

WEIGHTS = Path(__file__).with_name("tree_crowns.keras")
WEIGHTS_SHA256 = "f2999fd4c34a56755831fa9e27ecebbeb53a6c2093a81478feb88a1e553d5d6d"
STRIDE = 4  # output cell = 4 x 4 input pixels


class TreeCrowns(Detector):
    """One box per tree crown, in tile pixel coordinates."""

    spec = DetectorSpec(
        name="tree-crowns",
        version=__version__,
        task=Task.BOXES,
        classes=("tree",),
        bands=("red", "green", "blue"),
        tile_size=256,
        overlap=64,  # > the largest crowns (~60 px): every tree lies whole in some tile
        gsd_m=0.1,
        nms_iou=0.5,
        description="tree crowns as boxes in 10 cm RGB; a CenterNet-style CNN trained on NEON boxes (OSBS, YELL)",
        licence="MIT (weights and code); training data from DeepForest 2.1.0 (MIT)",
        weights_sha256=WEIGHTS_SHA256,
    )

    #: detections below this centre score are dropped
    score_threshold = 0.2
    #: within a tile, a box overlapping a better one by more than this IoU is dropped
    tile_nms_iou = 0.5
    #: most peaks considered per tile
    max_peaks = 200

    def load(self) -> None:
        from geodetect.plugins.weights import import_tensorflow, load_keras_model

        tf = import_tensorflow()
        self._model = load_keras_model(WEIGHTS, self.spec.weights_sha256, detector=self.spec.name)
        model, k = self._model, self.max_peaks

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], reduce_retracing=True)
        def run(x):
            return decode_peaks(tf, model(x, training=False), k)

        self._run = run

    def input_channels(self) -> int:
        return int(self._model.input_shape[-1])

    def predict(self, tiles: np.ndarray) -> list[Boxes]:
        tiles = np.asarray(tiles, dtype=np.float32)
        if not len(tiles):
            return []
        h, w = tiles.shape[1:3]
        if h % 32 or w % 32:  # the network halves the tile five times: pad other tile sizes
            tiles = np.pad(tiles, ((0, 0), (0, -h % 32), (0, -w % 32), (0, 0)), mode="edge")
        scores, cells, regs = (t.numpy() for t in self._run(np.ascontiguousarray(tiles)))
        out = []
        for s, c, r in zip(scores, cells, regs):
            keep = s >= self.score_threshold
            xyxy = decode_boxes(c[keep], r[keep], w, h)
            sc = s[keep]
            if len(sc):
                k = nms(xyxy, sc, self.tile_nms_iou)
                xyxy, sc = xyxy[k], sc[k]
            out.append(Boxes(xyxy, np.zeros(len(sc), np.int64), sc.astype(np.float32)))
        return out

    # a loaded instance travels to Spark workers without its TensorFlow objects:
    # the worker imports this module and calls load() again
    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_model", "_run", "_geodetect_loaded")}


def decode_peaks(tf, out, k: int):
    """Top-``k`` local maxima of the centre heatmap (3 x 3 max-pool) and their regressions.

    ``out`` is the model output (N, H/4, W/4, 5): centre logit, then log(d / 4) of the
    distances d from the cell centre to the left, top, right and bottom box edges.
    Returns scores (N, k), cells (N, k, 2) as [col, row] of the output grid, and the
    regressions (N, k, 4) there.
    """
    heat = tf.sigmoid(out[..., 0])
    peak = tf.nn.max_pool2d(heat[..., None], 3, 1, "SAME")[..., 0]
    heat = tf.where(tf.equal(heat, peak), heat, tf.zeros_like(heat))
    n, gw = tf.shape(heat)[0], tf.shape(heat)[2]
    flat = tf.reshape(heat, [n, -1])
    k = tf.minimum(k, tf.shape(flat)[1])
    scores, idx = tf.math.top_k(flat, k=k)
    cells = tf.stack([idx % gw, idx // gw], axis=-1)
    regs = tf.gather(tf.reshape(out[..., 1:], [n, -1, 4]), idx, batch_dims=1)
    return scores, cells, regs


def decode_boxes(cells: np.ndarray, regs: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes (K, 4) xyxy in tile pixels from output cells (K, 2) and regressions (K, 4)."""
    centre = STRIDE * (np.asarray(cells, np.float64).reshape(-1, 2) + 0.5)  # cell centres, pixels
    d = STRIDE * np.exp(np.clip(np.asarray(regs, np.float64).reshape(-1, 4), -4.0, 5.0))  # l, t, r, b
    xyxy = np.concatenate([centre - d[:, :2], centre + d[:, 2:]], axis=1)
    return np.clip(xyxy, 0.0, [width, height, width, height])


def nms(xyxy: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indexes of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    b = np.asarray(xyxy, np.float64)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        ih = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = iw * ih
        order = rest[inter / np.maximum(area[i] + area[rest] - inter, 1e-12) <= iou]
    return np.array(keep, np.int64)
