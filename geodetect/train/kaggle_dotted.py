"""Kaggle sea-lion photographs that exist only as the dotted copy: dots found alone, then painted out.

Most of the competition's ``TrainDotted`` images here have no plain twin in
``Train/`` (ids 41, 43, 45, 49 of ``../shared/data/sealions-noaa``). Their dots
cannot come from a difference image, and a patch cut around an animal in such
a photograph contains the dot itself, so a network trained on it learns the
dot. So, for a dotted-only photograph:

1. :func:`find_dots_alone` finds the dots by their colour: the pixels within
   ``colour_tolerance`` of each reference dot colour
   (:data:`~geodetect.train.kaggle_sealions.DOT_RGB`) form a mask per class,
   and, as :func:`~geodetect.train.kaggle_sealions.find_dots` does with the
   difference mask, dots are the Laplacian-of-Gaussian blobs of that mask at
   the dots' radius: a compact disc of dot size answers, a large area of
   dot-like colour (brown rock, a brown animal) does not; and a drawn dot is
   one flat colour, so the median colour of its core must lie within
   :data:`MAX_DOT_DISTANCE` of the class colour (natural brown spots that pass
   the mask do not), and the ring just outside it must not be of that colour
   (median distance at least ``min_ring_distance``: a dot is drawn on
   something else; a spot of brown inside brown is not a dot). On the photographs that have both copies (42, 50) this
   finds the same dots as the pair; on the others its counts are checked
   against ``train.csv``;
2. :func:`paint_dots` paints every dot out: the disc of each dot, ``margin``
   pixels wider than the dot (JPEG spreads its colour), is filled from the
   pixels around it, first with their median, then by diffusion (the
   disc's pixels repeatedly replaced by the mean of their four neighbours,
   the pixels outside fixed: a harmonic fill). Nothing of the dot's colour
   is left, and the fill is as smooth as the surroundings allow;
3. :func:`iter_kaggle_photographs` yields every photograph of the layout
   ready for patches: the plain copy where there is one (dots from the
   pair, :func:`~geodetect.train.kaggle_sealions.find_dots`), else the
   painted dotted copy (dots from :func:`find_dots_alone`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError
from geodetect.train.kaggle_sealions import DOT_RGB, KAGGLE_CLASSES, UNKNOWN, find_dots, read_rgb

__all__ = ["find_dots_alone", "paint_dots", "dot_colour_left", "iter_kaggle_photographs"]

#: per-class tolerance of the colour mask (RGB distance): brown is near many natural colours, so tighter
MASK_TOLERANCE = {"adult_males": 70.0, "subadult_males": 70.0, "adult_females": 32.0, "juveniles": 60.0,
                  "pups": 60.0}
#: a dot is kept when the median colour of its core is this close to the class colour: drawn dots are one
#: flat colour (measured on the pairs 42 and 50: within 3-17), natural brown spots only near it (23-31)
MAX_DOT_DISTANCE = {"adult_males": 35.0, "subadult_males": 35.0, "adult_females": 15.0, "juveniles": 35.0,
                    "pups": 35.0}


def _empty_dots():
    import pandas as pd

    cols = ["x", "y", "class_name", "r", "g", "b", "colour_distance"]
    return pd.DataFrame({c: pd.Series(dtype=float if c != "class_name" else object) for c in cols})


def find_dots_alone(dotted: np.ndarray, *, dot_radius: float = 4.0, tolerance: dict | None = None,
                    max_distance: dict | None = None, min_ring_distance: float = 60.0, min_response: float = 0.25):
    """Dots of a dotted photograph (uint8 (H, W, 3)) without its plain copy.

    Returns the DataFrame of :func:`~geodetect.train.kaggle_sealions.find_dots`:
    ``x, y`` (continuous [col, row] of the dot centre), ``class_name``, the dot's
    median colour ``r, g, b`` and its ``colour_distance`` to the class colour.
    """
    import pandas as pd
    from scipy import ndimage

    if dotted.ndim != 3 or dotted.shape[2] < 3:
        raise ConfigError(f"find_dots_alone: expected (H, W, 3), got {dotted.shape}")
    tol = {**MASK_TOLERANCE, **(tolerance or {})}
    far = {**MAX_DOT_DISTANCE, **(max_distance or {})}
    img = dotted[..., :3]
    sigma = max(dot_radius / np.sqrt(2.0), 0.8)
    nms = max(int(round(dot_radius)), 1)
    r_i = int(np.ceil(dot_radius))
    yy, xx = np.mgrid[-r_i : r_i + 1, -r_i : r_i + 1]
    core = (yy * yy + xx * xx) <= max(dot_radius * 0.6, 1.0) ** 2
    r_o = int(np.ceil(dot_radius + 3.5))
    oy, ox = np.mgrid[-r_o : r_o + 1, -r_o : r_o + 1]
    rd = np.hypot(oy, ox)
    ring = (rd >= dot_radius + 1.5) & (rd <= dot_radius + 3.5)
    frames = []
    h, w = img.shape[:2]
    for name in KAGGLE_CLASSES:
        ref = np.asarray(DOT_RGB[name], np.int32)
        d2 = np.zeros((h, w), np.int32)
        for ch in range(3):
            d2 += (img[..., ch].astype(np.int32) - ref[ch]) ** 2
        mask = d2 <= int(tol[name] ** 2)
        if not mask.any():
            continue
        # only where the mask is: LoG of the mask in windows around its components (fast on 16 Mpx)
        lab, n = ndimage.label(mask)
        slices = ndimage.find_objects(lab)
        for k, sl in enumerate(slices):
            hh, ww = sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
            if hh > 8 * dot_radius or ww > 8 * dot_radius or hh * ww < 4:
                continue  # an area of that colour, not a dot; or JPEG speckle
            pad = int(3 * dot_radius)
            r0, c0 = max(sl[0].start - pad, 0), max(sl[1].start - pad, 0)
            r1, c1 = min(sl[0].stop + pad, h), min(sl[1].stop + pad, w)
            m = mask[r0:r1, c0:c1].astype(np.float32)
            resp = -(sigma * sigma) * ndimage.gaussian_laplace(m, sigma, mode="constant")
            peak = ndimage.maximum_filter(resp, size=2 * nms + 1, mode="constant")
            cand = (resp == peak) & (resp > min_response) & (lab[r0:r1, c0:c1] == k + 1)
            pl, npk = ndimage.label(cand, structure=np.ones((3, 3)))
            if npk == 0:
                continue
            cy, cx = np.array(ndimage.center_of_mass(cand, pl, np.arange(1, npk + 1))).reshape(-1, 2).T
            for y, x in zip(cy + r0, cx + c0):
                ri, ci = int(round(y)), int(round(x))
                rr, cc = ri + yy[core], ci + xx[core]
                ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                px = img[rr[ok], cc[ok]].astype(float)
                sel = mask[rr[ok], cc[ok]]
                rgb = np.median(px[sel] if sel.any() else px, axis=0)
                dist = float(np.sqrt(((rgb - ref) ** 2).sum()))
                rr, cc = ri + oy[ring], ci + ox[ring]
                ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
                around = np.median(np.sqrt(((img[rr[ok], cc[ok]].astype(float) - ref) ** 2).sum(axis=1)))
                if dist <= far[name] and around >= min_ring_distance:
                    frames.append((x + 0.5, y + 0.5, name, *rgb, dist))
    if not frames:
        return _empty_dots()
    df = pd.DataFrame(frames, columns=["x", "y", "class_name", "r", "g", "b", "colour_distance"])
    return df.sort_values(["y", "x"], kind="stable").reset_index(drop=True)


def paint_dots(img: np.ndarray, xy, *, radius: float = 4.0, margin: float = 3.0, iterations: int = 80) -> np.ndarray:
    """A copy of ``img`` (H, W, C) with a disc of ``radius + margin`` px around each point ``xy``
    [col, row] filled from its surroundings (median, then diffusion; see the module docstring)."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    out = np.array(img, copy=True)
    if len(xy) == 0:
        return out
    h, w = img.shape[:2]
    rad = radius + margin
    # the union of every disc, so that a neighbouring dot is never used as a boundary value
    hole = np.zeros((h, w), bool)
    ri = int(np.ceil(rad))
    yy, xx = np.mgrid[-ri : ri + 1, -ri : ri + 1]
    for x, y in xy:
        rr = np.floor(y).astype(int) + yy
        cc = np.floor(x).astype(int) + xx
        inside = ((cc + 0.5 - x) ** 2 + (rr + 0.5 - y) ** 2 <= rad * rad) & (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        hole[rr[inside], cc[inside]] = True
    from scipy import ndimage

    # one window per connected group of discs, with a 2-px ring of known pixels
    lab, n = ndimage.label(hole)
    for sl in ndimage.find_objects(lab):
        r0, r1 = max(sl[0].start - 2, 0), min(sl[0].stop + 2, h)
        c0, c1 = max(sl[1].start - 2, 0), min(sl[1].stop + 2, w)
        m = hole[r0:r1, c0:c1]
        win = out[r0:r1, c0:c1].astype(np.float32)
        known = ~m
        if not known.any():
            continue
        win[m] = np.median(win[known], axis=0)
        pad_m = np.pad(m, 1)
        for _ in range(iterations):
            p = np.pad(win, ((1, 1), (1, 1), (0, 0)), mode="edge")
            avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4.0
            win[m] = avg[m]
        del pad_m
        if np.issubdtype(out.dtype, np.integer):
            win = np.clip(np.rint(win), np.iinfo(out.dtype).min, np.iinfo(out.dtype).max)
        out[r0:r1, c0:c1][m] = win[m].astype(out.dtype)
    return out


def dot_colour_left(img: np.ndarray, dots, *, dot_radius: float = 4.0) -> np.ndarray:
    """Per dot: the RGB distance of the median colour of its core in ``img`` to its class's dot colour
    (large: nothing of the dot is left)."""
    h, w = img.shape[:2]
    r_i = int(np.ceil(dot_radius))
    yy, xx = np.mgrid[-r_i : r_i + 1, -r_i : r_i + 1]
    core = (yy * yy + xx * xx) <= max(dot_radius * 0.6, 1.0) ** 2
    out = np.zeros(len(dots))
    for k, (x, y, name) in enumerate(zip(dots["x"], dots["y"], dots["class_name"])):
        ref = np.asarray(DOT_RGB.get(name, (0, 0, 0)), float)
        rr = int(np.floor(y)) + yy[core]
        cc = int(np.floor(x)) + xx[core]
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        px = img[rr[ok], cc[ok], :3].astype(float)
        # the pixel nearest to the dot colour, not the median: any remnant counts
        out[k] = float(np.sqrt(((px - ref) ** 2).sum(axis=1)).min())
    return out


def iter_kaggle_photographs(root, ids, *, dot_radius: float = 4.0, margin: float = 3.0):
    """Yield ``(train_id, image uint8 (H, W, 3), dots DataFrame, painted: bool)`` for each id of ``ids``.

    The plain photograph where ``Train/<id>.jpg`` exists (dots from the pair),
    else the dotted copy with its dots painted out (dots from the dotted copy
    alone). Dots of no known colour are dropped (the pair loader reports them).
    """
    root = Path(os.fspath(root))
    if not (root / "TrainDotted").is_dir():
        raise ConfigError(f"{root}: no TrainDotted/ folder; give the folder holding Train/ and TrainDotted/")
    for tid in ids:
        tid = str(tid)
        dotted_path = root / "TrainDotted" / f"{tid}.jpg"
        if not dotted_path.is_file():
            raise ConfigError(f"{dotted_path}: missing")
        dotted = read_rgb(dotted_path)
        plain_path = root / "Train" / f"{tid}.jpg"
        if plain_path.is_file():
            plain = read_rgb(plain_path)
            dots = find_dots(plain, dotted, dot_radius=dot_radius)
            dots = dots[dots["class_name"] != UNKNOWN].reset_index(drop=True)
            yield tid, plain, dots, False
        else:
            dots = find_dots_alone(dotted, dot_radius=dot_radius)
            yield tid, paint_dots(dotted, dots[["x", "y"]].to_numpy(), radius=dot_radius, margin=margin), dots, True
