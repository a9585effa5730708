"""The tree-crown example's data: readers, the hold-out split and the IoU-0.5 scoring.

Shared by ``train.py``, ``evaluate.py`` and ``tests/test_tree_crowns.py`` so that
the three agree on which boxes are held out and how detections are scored.
Only numpy and rasterio: no TensorFlow here.
"""

from __future__ import annotations

import csv
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent / "data"
OSBS_TIF = DATA / "OSBS_029.tif"
OSBS_CSV = DATA / "OSBS_029.csv"
YELL = DATA / "2019_YELL_2_541000_4977000_image_crop"

#: Hold-out split of OSBS_029 (400 x 400 px): boxes whose centre lies in the
#: right-most 30 % of the image, i.e. centre column >= 280 px (easting >= 404239.9 m).
#: Training never sees a pixel at or right of this column.
HOLDOUT_COL = 280.0


def read_osbs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OSBS_029 as the host reads it: (uint8 RGB (H, W, 3), valid (H, W), boxes (K, 4) xyxy).

    The file declares nodata = 255 per band; geodetect treats a pixel as nodata when
    any band is nodata and fills it with the valid mean, so training does the same.
    Boxes are the csv's pixel-edge coordinates (xmin, ymin, xmax, ymax).
    """
    import rasterio

    with rasterio.open(OSBS_TIF) as ds:
        img = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
        valid = np.all(ds.read_masks([1, 2, 3]) > 0, axis=0)
    img = img.copy()
    img[~valid] = np.round(img[valid].mean(axis=0)).astype(np.uint8)
    with open(OSBS_CSV, newline="") as f:
        boxes = np.array([[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in csv.DictReader(f)])
    return img, valid, boxes


def read_voc(stem: Path) -> tuple[np.ndarray, np.ndarray]:
    """A Pascal VOC pair ``stem.png`` + ``stem.xml``: (uint8 RGB (H, W, 3), boxes (K, 4) xyxy)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(stem.with_suffix(".png")) as ds:
            img = np.moveaxis(ds.read([1, 2, 3]), 0, -1)
    boxes = []
    for obj in ET.parse(stem.with_suffix(".xml")).getroot().iter("object"):
        bb = obj.find("bndbox")
        boxes.append([float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")])
    return img, np.array(boxes, np.float64)


def centres(xyxy: np.ndarray) -> np.ndarray:
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2])


def in_holdout(xyxy: np.ndarray) -> np.ndarray:
    """Boolean: the box centre lies in the held-out strip of OSBS_029."""
    return centres(xyxy)[:, 0] >= HOLDOUT_COL


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def score_holdout(pred_xyxy, pred_scores, truth_xyxy, iou: float = 0.5, region=in_holdout) -> dict:
    """Precision, recall and F1 at ``iou`` on the held-out strip (or another ``region`` predicate).

    Greedy one-to-one matching by descending score over the WHOLE image (every
    prediction, every ground-truth box), then:

    - true positive: a match whose ground-truth box is held out;
    - false negative: a held-out ground-truth box left unmatched;
    - false positive: an unmatched prediction whose centre lies in the held-out strip.

    Predictions matched to a training-side box, and unmatched predictions centred
    outside the strip, are not counted: a tree straddling the boundary is scored
    once, on the side its ground-truth centre lies.
    """
    pred = np.asarray(pred_xyxy, np.float64).reshape(-1, 4)
    sc = np.asarray(pred_scores, np.float64).reshape(-1)
    truth = np.asarray(truth_xyxy, np.float64).reshape(-1, 4)
    m = iou_matrix(pred, truth)
    truth_used = np.zeros(len(truth), bool)
    pred_match = np.full(len(pred), -1)
    for i in np.argsort(-sc, kind="stable"):
        if not len(truth):
            break
        cand = np.where(truth_used, -1.0, m[i])
        j = int(np.argmax(cand))
        if cand[j] >= iou:
            truth_used[j] = True
            pred_match[i] = j
    held = region(truth)
    tp = int(np.sum(held[pred_match[pred_match >= 0]]))
    fn = int(np.sum(held & ~truth_used))
    fp = int(np.sum((pred_match < 0) & region(pred)))
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn, "n_truth": int(held.sum())}
