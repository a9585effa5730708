"""The KIT AIS vehicle strips of Munich: class mapping, measured GSD and the fixed train/val/test split.

The 39 strips are frames of two aerial image SEQUENCES of one place each
(nearly the same ground, shifted by at most ~17 px between frames, parked cars
repeated): ``MOS74``-``MOS93`` (17 frames, 684 x 547 px, a crossroads with
trees) and ``MOS155``-``MOS179`` (22 frames, 1764 x 430 px, an avenue with a
bus stop). A split by frame alone would test on ground the model was trained
on. The split here is by frame AND by ground: every frame has one role
(:data:`ROLES`), and only that role's column band of it is used (:data:`BANDS`);
the bands of the three roles are separated by guard columns wider than the
frames' shift plus a car, so no part of the test ground is ever trained on.

Classes: KIT AIS ``car`` -> car, ``bus`` -> bus, ``minibus`` -> car (the two
minibus boxes are van-sized, 5 x 3 m, and the same vehicles are labelled car
in the next frame), ``truck`` (none in the data) -> truck, ``cyclist`` (none)
ignored.

GSD: measured per sequence from the cars (:func:`measured_gsd`): the median
long side of the car boxes that lie along a pixel axis (box at least 1.6 x
longer than wide), taken as 4.5 m.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SEQUENCES", "ROLES", "BANDS", "CLASS_MAP", "CAR_LENGTH_M", "CAR_WIDTH_M", "DEFAULT_DATA",
           "RealPart", "sequence_of", "measured_gsd", "load_parts"]

CLASSES = ("car", "truck", "bus")
#: KIT AIS class name -> model class (None: ignored)
CLASS_MAP = {"car": "car", "truck": "truck", "bus": "bus", "minibus": "car", "cyclist": None}
CAR_LENGTH_M, CAR_WIDTH_M = 4.5, 1.8
DEFAULT_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "vehicles-kit-ais"

SEQUENCES = {
    "crossroads": ("MOS74", "MOS75", "MOS77", "MOS78", "MOS79", "MOS80", "MOS81", "MOS82", "MOS83", "MOS85",
                   "MOS86", "MOS87", "MOS88", "MOS89", "MOS90", "MOS91", "MOS93"),
    "avenue": ("MOS155", "MOS156", "MOS157", "MOS159", "MOS160", "MOS161", "MOS162", "MOS163", "MOS164",
               "MOS165", "MOS167", "MOS168", "MOS169", "MOS170", "MOS171", "MOS172", "MOS173", "MOS175",
               "MOS176", "MOS177", "MOS178", "MOS179"),
}

#: the role of each frame: the last frames of each sequence are held out (val, then test)
ROLES = {
    **{n: "train" for n in SEQUENCES["crossroads"][:11] + SEQUENCES["avenue"][:14]},
    **{n: "val" for n in SEQUENCES["crossroads"][11:13] + SEQUENCES["avenue"][14:18]},
    **{n: "test" for n in SEQUENCES["crossroads"][13:] + SEQUENCES["avenue"][18:]},
}

#: the columns [start, stop) of a frame that each role may use, per sequence (40-50 px guards between)
BANDS = {
    "crossroads": {"train": (0, 380), "val": (420, 520), "test": (560, 684)},
    "avenue": {"train": (0, 900), "val": (950, 1250), "test": (1300, 1764)},
}

#: a fixed subset of the test parts for the quick quality test (one frame of each sequence)
QUICK_TEST = ("MOS89", "MOS176")


def sequence_of(name: str) -> str:
    for seq, names in SEQUENCES.items():
        if name in names:
            return seq
    raise KeyError(f"{name} is not a KIT AIS strip of the fixed split")


@dataclass
class RealPart:
    """One frame's band for one role, with its boxes in the band's pixels (model class ids)."""

    name: str
    sequence: str
    role: str
    gsd_m: float
    image: np.ndarray       # uint8 (H, W, 3)
    boxes: np.ndarray       # float64 (K, 4)
    class_ids: np.ndarray   # int64 (K,) indexes into CLASSES
    col0: int               # the band's first column in the frame


def _mapped(item):
    """Boxes and model class ids of a YoloImage (ignored classes dropped)."""
    names = [CLASS_MAP.get(item.class_names[c]) for c in item.class_ids]
    keep = np.array([n is not None for n in names], bool)
    ids = np.array([CLASSES.index(n) for n in names if n is not None], np.int64)
    return item.boxes[keep] if len(keep) else item.boxes, ids


def measured_gsd(items) -> dict:
    """Per sequence: :func:`geodetect.train.yolo.measure_gsd` over the car boxes of all its frames."""
    from geodetect.train.yolo import measure_gsd

    out = {}
    for seq, names in SEQUENCES.items():
        boxes = [_mapped(it) for it in items if it.name in names]
        cars = np.concatenate([b[i == 0] for b, i in boxes]).reshape(-1, 4)
        m = measure_gsd(cars, CAR_LENGTH_M, width_m=CAR_WIDTH_M)
        m["gsd_m"] = round(m["gsd_m"], 4)
        out[seq] = m
    return out


def load_parts(folder=None, roles=("train", "val", "test"), names=None) -> tuple[list[RealPart], dict]:
    """The bands of the frames with the given roles (read from the YOLO folder), and the GSD measurement.

    ``names`` restricts to those frames. Boxes cut by a band's edge are kept
    (clipped) when at least half of their area is inside.
    """
    from geodetect.train.yolo import crop_boxes, load_yolo_folder

    folder = Path(os.fspath(folder)) if folder is not None else DEFAULT_DATA
    items = load_yolo_folder(folder)
    have = {it.name for it in items}
    missing = sorted(set(ROLES) - have)
    if missing:
        raise FileNotFoundError(f"{folder}: KIT AIS strips missing: {', '.join(missing)}")
    gsd = measured_gsd(items)
    parts = []
    for it in items:
        role = ROLES.get(it.name)
        if role not in roles or (names is not None and it.name not in names):
            continue
        seq = sequence_of(it.name)
        c0, c1 = BANDS[seq][role]
        boxes, ids = _mapped(it)
        b, keep = crop_boxes(boxes, c0, 0, c1, it.height)
        img = it.read()[:, c0:c1]
        parts.append(RealPart(it.name, seq, role, gsd[seq]["gsd_m"], np.ascontiguousarray(img), b, ids[keep], c0))
    return parts, gsd
