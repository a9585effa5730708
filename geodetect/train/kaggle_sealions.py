"""The NOAA Fisheries Steller sea-lion Kaggle competition's training data.

Layout (as distributed)::

    root/
      Train/<train_id>.jpg            plain aerial photographs
      TrainDotted/<train_id>.jpg      the same photographs with one coloured dot per animal
      train.csv                       train_id,adult_males,subadult_males,adult_females,juveniles,pups
      MismatchedTrainImages.txt       train_id per line (header "train_id"): pairs that do not line up

(``train.csv`` is also looked for in ``Train/``.) Animals are not listed
anywhere: they are dots drawn on the second copy of each photograph, so, as
in the sea-lion blog (seed 002):

1. the absolute difference of the dotted and plain images (largest over the
   three channels) is thresholded; regions blacked out in the dotted copy are
   ignored;
2. dots are found as Laplacian-of-Gaussian blobs of that mask at the dots'
   radius (touching dots stay apart), each one's position the blob centre;
3. the class is the dot colour's nearest reference colour: red adult males,
   magenta subadult males, brown adult females, blue juveniles, green pups.
   The reference RGB values are the mean dot colours measured in the
   competition's ``TrainDotted`` images (brown is about (87, 46, 10)); a dot
   farther than ``colour_tolerance`` from all of them is counted as
   ``"unknown"`` and reported, never guessed.

:func:`load_kaggle_train` runs this over the images, skips (and counts) the
mismatched ones, cross-checks each image's counts with ``train.csv`` and
reports the differences, and cuts 64x64 patches around the dots (optionally
rescaled: the photographs are finer than the 0.1 m the sea-lion counter
works at; the competition gives no GSD, animals suggest about 3-4 cm), plus
optional ``not_sea_lion`` patches away from any dot.

Both JPEG copies carry compression noise, so differences below the threshold
(default 30 grey levels) are noise; dots drawn on a similar colour (brown on
a brown animal) can fall below it, which the ``train.csv`` check shows.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, GeodetectError, RasterReadError

__all__ = ["KAGGLE_CLASSES", "DOT_RGB", "KaggleFormatError", "KaggleTrainReport", "read_train_csv",
           "read_mismatched", "read_rgb", "find_dots", "cut_patches", "background_patches", "iter_kaggle_train",
           "load_kaggle_train"]

log = logging.getLogger("geodetect")

KAGGLE_CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups")
#: mean dot colours measured in the competition's TrainDotted images
DOT_RGB = {
    "adult_males": (243, 8, 5),  # red
    "subadult_males": (244, 8, 242),  # magenta
    "adult_females": (87, 46, 10),  # brown
    "juveniles": (25, 56, 176),  # blue
    "pups": (38, 174, 21),  # green
}
UNKNOWN = "unknown"


class KaggleFormatError(GeodetectError, ValueError):
    """A file of the competition layout is malformed (train.csv header, ids...)."""


# ----------------------------------------------------------------------------- files


def _find(root: Path, *names) -> Path | None:
    for n in names:
        if (root / n).is_file():
            return root / n
    return None


def read_train_csv(path):
    """``train.csv`` -> DataFrame indexed by ``train_id`` (str), the five class counts (int64)."""
    import pandas as pd

    path = Path(os.fspath(path))
    try:
        df = pd.read_csv(path, dtype={"train_id": str})
    except Exception as exc:  # noqa: BLE001
        raise KaggleFormatError(f"{path}: not a readable CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    if "train_id" not in df.columns and "test_id" in df.columns:  # some copies use test_id
        df = df.rename(columns={"test_id": "train_id"})
    need = ["train_id", *KAGGLE_CLASSES]
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise KaggleFormatError(f"{path}: columns {missing} missing; expected {','.join(need)}")
    df["train_id"] = df["train_id"].astype(str).str.strip()
    if df["train_id"].duplicated().any():
        raise KaggleFormatError(f"{path}: duplicate train_id(s) {sorted(df.train_id[df.train_id.duplicated()])[:5]}")
    try:
        out = df.set_index("train_id")[list(KAGGLE_CLASSES)].astype("int64")
    except (ValueError, TypeError) as exc:
        raise KaggleFormatError(f"{path}: counts must be integers ({exc})") from exc
    return out


def read_mismatched(path) -> set[str]:
    """Train ids listed in ``MismatchedTrainImages.txt`` (one per line; a header line is skipped)."""
    ids = set()
    for k, line in enumerate(Path(os.fspath(path)).read_text().splitlines()):
        tok = line.strip().split(",")[0].strip()
        if not tok:
            continue
        if re.fullmatch(r"\d+", tok):
            ids.add(str(int(tok)))
        elif k == 0:
            continue  # header ("train_id")
        else:
            raise KaggleFormatError(f"{path}: line {k + 1}: {line!r} is not a train id")
    return ids


def read_rgb(path) -> np.ndarray:
    """An image file (JPEG...) as uint8 (H, W, 3), through GDAL; no georeferencing needed."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = os.fspath(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.count < 3:
                    raise RasterReadError(f"{path}: {ds.count} band(s); an RGB photograph has 3")
                arr = ds.read((1, 2, 3))
    except RasterReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise RasterReadError(f"{path}: could not read the image ({type(exc).__name__}: {exc})") from exc
    if arr.dtype != np.uint8:
        raise RasterReadError(f"{path}: expected 8-bit RGB, got {arr.dtype}")
    return np.moveaxis(arr, 0, -1)


# ----------------------------------------------------------------------------- dots


def find_dots(plain: np.ndarray, dotted: np.ndarray, *, diff_threshold: float = 30.0, dot_radius: float = 4.0,
              colour_tolerance: float = 60.0):
    """Dots of a (plain, dotted) pair of uint8 (H, W, 3) images.

    Returns a DataFrame with ``x, y`` (continuous pixel [col, row] of the dot
    centre, the centre of pixel (c, r) being (c + 0.5, r + 0.5)),
    ``class_name`` (or ``"unknown"``), the dot's median colour ``r, g, b`` and
    its ``colour_distance`` to the chosen reference.
    """
    import pandas as pd
    from scipy import ndimage

    if plain.shape != dotted.shape or plain.ndim != 3 or plain.shape[2] < 3:
        raise ConfigError(f"find_dots: plain {plain.shape} and dotted {dotted.shape} must be the same (H, W, 3)")
    a = plain[..., :3].astype(np.int16)
    b = dotted[..., :3].astype(np.int16)
    diff = np.abs(b - a).max(axis=2)
    diff[b.max(axis=2) < 16] = 0  # areas blacked out in the dotted copy
    mask = diff > diff_threshold
    cols = ["x", "y", "class_name", "r", "g", "b", "colour_distance"]
    if not mask.any():
        return pd.DataFrame({c: pd.Series(dtype=float if c != "class_name" else object) for c in cols})
    # LoG blobs of the difference mask at the dots' scale (as the blog: blob detection on the difference)
    sigma = max(dot_radius / np.sqrt(2.0), 0.8)
    m = mask.astype(np.float32)
    resp = -(sigma * sigma) * ndimage.gaussian_laplace(m, sigma, mode="constant")
    nms = max(int(round(dot_radius)), 1)
    peak = ndimage.maximum_filter(resp, size=2 * nms + 1, mode="constant")
    # a full dot gives ~0.5 here; JPEG speckle of a few pixels stays far below 0.2
    cand = (resp == peak) & (resp > 0.2) & mask
    # a flat-topped response (a binary disk) peaks on a plateau of equal pixels: one dot per plateau
    lab, n = ndimage.label(cand, structure=np.ones((3, 3)))
    if n == 0:
        return pd.DataFrame({c: pd.Series(dtype=float if c != "class_name" else object) for c in cols})
    cy, cx = np.array(ndimage.center_of_mass(cand, lab, np.arange(1, n + 1))).reshape(-1, 2).T
    size = ndimage.sum_labels(cand, lab, np.arange(1, n + 1))
    rows, cols_ = np.rint(cy).astype(np.int64), np.rint(cx).astype(np.int64)
    # quadratic sub-pixel refinement of single-pixel peaks; plateaus keep their centroid
    h, w = resp.shape
    rc, cc = np.clip(rows, 1, h - 2), np.clip(cols_, 1, w - 2)
    gx = (resp[rc, cc + 1] - resp[rc, cc - 1]) / 2
    gy = (resp[rc + 1, cc] - resp[rc - 1, cc]) / 2
    hxx = resp[rc, cc + 1] - 2 * resp[rc, cc] + resp[rc, cc - 1]
    hyy = resp[rc + 1, cc] - 2 * resp[rc, cc] + resp[rc - 1, cc]
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.clip(np.nan_to_num(np.where(hxx < 0, -gx / hxx, 0.0)), -0.5, 0.5)
        dy = np.clip(np.nan_to_num(np.where(hyy < 0, -gy / hyy, 0.0)), -0.5, 0.5)
    single = size == 1
    x = np.where(single, cols_ + dx, cx) + 0.5
    y = np.where(single, rows + dy, cy) + 0.5
    # colour: median of the dotted image over the dot's core (changed pixels only)
    ref = np.array([DOT_RGB[c] for c in KAGGLE_CLASSES], float)
    core = max(dot_radius * 0.6, 1.0)
    r_i = int(np.ceil(core))
    yy, xx = np.mgrid[-r_i : r_i + 1, -r_i : r_i + 1]
    disk = (yy * yy + xx * xx) <= core * core
    rgb = np.zeros((len(rows), 3))
    for k, (r0, c0) in enumerate(zip(rows, cols_)):
        rr, cc2 = r0 + yy[disk], c0 + xx[disk]
        ok = (rr >= 0) & (rr < h) & (cc2 >= 0) & (cc2 < w)
        rr, cc2 = rr[ok], cc2[ok]
        sel = mask[rr, cc2]
        px = b[rr[sel], cc2[sel]] if sel.any() else b[rr, cc2]
        rgb[k] = np.median(px, axis=0)
    dist = np.sqrt(((rgb[:, None, :] - ref[None]) ** 2).sum(-1))
    best = dist.argmin(axis=1) if len(rows) else np.zeros(0, int)
    bd = dist[np.arange(len(rows)), best] if len(rows) else np.zeros(0)
    names = np.where(bd <= colour_tolerance, np.asarray(KAGGLE_CLASSES, object)[best], UNKNOWN)
    return pd.DataFrame({"x": x, "y": y, "class_name": names.astype(object), "r": rgb[:, 0], "g": rgb[:, 1],
                         "b": rgb[:, 2], "colour_distance": bd})


# ----------------------------------------------------------------------------- patches


def cut_patches(img: np.ndarray, xy, size: int = 64, scale: float = 1.0) -> np.ndarray:
    """uint8 patches (K, size, size, C) centred on points ``xy`` [col, row].

    ``scale`` < 1 shrinks the image first (e.g. 0.035 / 0.1 to go from 3.5 cm
    photographs to the counter's 0.1 m): the patch then covers ``size / scale``
    source pixels, sampled bilinearly. At ``scale=1`` the patch is an exact
    crop whose centre pixel (size // 2) holds the point. Outside the image the
    edge pixels are repeated.
    """
    from scipy import ndimage

    xy = np.asarray(xy, float).reshape(-1, 2)
    out = np.zeros((len(xy), size, size, img.shape[2]), np.uint8)
    if len(xy) == 0:
        return out
    half = size // 2
    if scale == 1.0:
        padded = np.pad(img, ((half, half), (half, half), (0, 0)), mode="edge")
        c = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, img.shape[1] - 1)
        r = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, img.shape[0] - 1)
        off = np.arange(size)
        return padded[(r[:, None] + off)[:, :, None], (c[:, None] + off)[:, None, :]].astype(np.uint8)
    if not scale > 0:
        raise ConfigError(f"cut_patches: scale must be positive, got {scale}")
    grid = (np.arange(size) - half + 0.5) / scale
    for k, (x, y) in enumerate(xy):
        rows = (y + grid - 0.5)[:, None] * np.ones((1, size))
        cols = np.ones((size, 1)) * (x + grid - 0.5)[None, :]
        for ch in range(img.shape[2]):
            band = img[..., ch]
            if scale < 1:  # anti-alias before sampling
                r0, r1 = int(max(0, rows.min() - 4)), int(min(img.shape[0], rows.max() + 5))
                c0, c1 = int(max(0, cols.min() - 4)), int(min(img.shape[1], cols.max() + 5))
                band = ndimage.gaussian_filter(img[r0:r1, c0:c1, ch].astype(np.float32), 0.5 / scale * 0.6)
                rr, cc = rows - r0, cols - c0
            else:
                rr, cc = rows, cols
            v = ndimage.map_coordinates(band.astype(np.float32), [rr, cc], order=1, mode="nearest")
            out[k, :, :, ch] = np.clip(np.rint(v), 0, 255)
    return out


def background_patches(img: np.ndarray, dots_xy, n: int, rng, *, min_distance_px: float = 40.0, size: int = 64,
                       scale: float = 1.0, dotted: np.ndarray | None = None) -> np.ndarray:
    """``n`` patches at random places at least ``min_distance_px`` from every dot (the blog's 6th class).

    With ``dotted``, places blacked out in the dotted copy are avoided.
    """
    from scipy.spatial import cKDTree

    h, w = img.shape[:2]
    dots_xy = np.asarray(dots_xy, float).reshape(-1, 2)
    tree = cKDTree(dots_xy) if len(dots_xy) else None
    pts = []
    for _ in range(n * 50):
        if len(pts) == n:
            break
        p = rng.uniform([0, 0], [w, h])
        if tree is not None and tree.query(p)[0] < min_distance_px:
            continue
        if dotted is not None and dotted[int(p[1]), int(p[0])].max() < 16:
            continue
        pts.append(p)
    return cut_patches(img, np.array(pts).reshape(-1, 2), size, scale)


# ----------------------------------------------------------------------------- the whole set


@dataclass
class KaggleTrainReport:
    """What :func:`load_kaggle_train` did."""

    root: str
    images: list = field(default_factory=list)  # train ids processed
    skipped_mismatched: list = field(default_factory=list)
    missing: list = field(default_factory=list)  # in train.csv or Train/, but a file of the pair is absent
    unknown_colours: dict = field(default_factory=dict)  # train id -> number of dots of no known colour
    count_mismatches: object = None  # DataFrame: train_id x class, found - expected, rows with any difference
    counts_checked: bool = False
    dots: object = None  # DataFrame: train_id, x, y, class_name, r, g, b, colour_distance

    def summary(self) -> str:
        n_dots = 0 if self.dots is None else len(self.dots)
        lines = [f"{self.root}: {len(self.images)} image pairs, {n_dots} dots; "
                 f"{len(self.skipped_mismatched)} mismatched pairs skipped; {len(self.missing)} missing files"]
        unk = sum(self.unknown_colours.values())
        if unk:
            lines.append(f"{unk} dots of unknown colour in {len(self.unknown_colours)} image(s)")
        if self.counts_checked:
            n = 0 if self.count_mismatches is None else len(self.count_mismatches)
            lines.append(f"counts differ from train.csv in {n} of {len(self.images)} image(s)")
        else:
            lines.append("train.csv not found: counts not checked")
        return "\n".join(lines)


def _ids_in(folder: Path) -> dict:
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file()}


def iter_kaggle_train(root, *, ids=None, report: KaggleTrainReport | None = None, diff_threshold: float = 30.0,
                      dot_radius: float = 4.0, colour_tolerance: float = 60.0):
    """Yield ``(train_id, plain uint8 (H, W, 3), dotted, dots DataFrame)`` per usable image pair.

    Mismatched and incomplete pairs are skipped and recorded in ``report``.
    """
    root = Path(os.fspath(root))
    if not root.is_dir():
        raise ConfigError(f"{root}: not a directory; give the folder holding Train/ and TrainDotted/")
    plain_files, dotted_files = _ids_in(root / "Train"), _ids_in(root / "TrainDotted")
    if not plain_files:
        raise ConfigError(f"{root}: no Train/*.jpg found; is this the competition's folder?")
    rep = report if report is not None else KaggleTrainReport(str(root))
    mm = _find(root, "MismatchedTrainImages.txt", "Train/MismatchedTrainImages.txt")
    bad = read_mismatched(mm) if mm else set()
    csv = _find(root, "train.csv", "Train/train.csv")
    expected = set(read_train_csv(csv).index) if csv else set()
    wanted = [str(i) for i in ids] if ids is not None else sorted(set(plain_files) | expected,
                                                                   key=lambda s: (len(s), s))
    for tid in wanted:
        if tid in bad:
            rep.skipped_mismatched.append(tid)
            continue
        if tid not in plain_files or tid not in dotted_files:
            rep.missing.append(tid)
            continue
        plain, dotted = read_rgb(plain_files[tid]), read_rgb(dotted_files[tid])
        if plain.shape != dotted.shape:
            rep.missing.append(tid)
            log.warning("%s: Train and TrainDotted sizes differ (%s vs %s); skipped", tid, plain.shape, dotted.shape)
            continue
        dots = find_dots(plain, dotted, diff_threshold=diff_threshold, dot_radius=dot_radius,
                         colour_tolerance=colour_tolerance)
        rep.images.append(tid)
        n_unk = int((dots["class_name"] == UNKNOWN).sum())
        if n_unk:
            rep.unknown_colours[tid] = n_unk
        yield tid, plain, dotted, dots


def load_kaggle_train(root, *, ids=None, patches: bool = True, patch_size: int = 64, scale: float = 1.0,
                      negatives_per_image: int = 0, seed: int = 0, diff_threshold: float = 30.0,
                      dot_radius: float = 4.0, colour_tolerance: float = 60.0):
    """Dots, a report and (optionally) patches of the competition's training images.

    Returns ``(report, x, y)``: ``x`` uint8 patches (N, patch_size, patch_size, 3)
    around the dots of known colour (then ``negatives_per_image`` background
    patches per image), ``y`` their class names (``"not_sea_lion"`` for the
    background). With ``patches=False`` x and y are None. For the whole set
    (~80,000 animals) prefer :func:`iter_kaggle_train` and write patches out
    image by image.
    """
    import pandas as pd

    root = Path(os.fspath(root))
    rep = KaggleTrainReport(str(root))
    rng = np.random.default_rng(seed)
    all_dots, xs, ys = [], [], []
    for tid, plain, dotted, dots in iter_kaggle_train(root, ids=ids, report=rep, diff_threshold=diff_threshold,
                                                      dot_radius=dot_radius, colour_tolerance=colour_tolerance):
        all_dots.append(dots.assign(train_id=tid))
        if patches:
            known = dots[dots["class_name"] != UNKNOWN]
            xs.append(cut_patches(plain, known[["x", "y"]].to_numpy(), patch_size, scale))
            ys.extend(known["class_name"].tolist())
            if negatives_per_image:
                bg = background_patches(plain, dots[["x", "y"]].to_numpy(), negatives_per_image, rng,
                                        min_distance_px=patch_size / scale * 0.6, size=patch_size, scale=scale,
                                        dotted=dotted)
                xs.append(bg)
                ys.extend(["not_sea_lion"] * len(bg))
    cols = ["train_id", "x", "y", "class_name", "r", "g", "b", "colour_distance"]
    rep.dots = (pd.concat(all_dots, ignore_index=True)[cols] if all_dots
                else pd.DataFrame({c: pd.Series(dtype=object if c in ("train_id", "class_name") else float)
                                   for c in cols}))
    csv = _find(root, "train.csv", "Train/train.csv")
    if csv:
        rep.counts_checked = True
        expected = read_train_csv(csv)
        found = (pd.crosstab(rep.dots["train_id"], rep.dots["class_name"]) if len(rep.dots) else pd.DataFrame())
        found = found.reindex(index=rep.images, columns=list(KAGGLE_CLASSES)).fillna(0).astype("int64")
        exp = expected.reindex(index=rep.images)
        no_row = exp.index[exp.isna().any(axis=1)].tolist()
        if no_row:
            log.warning("%d image(s) have no row in train.csv: %s", len(no_row), no_row[:5])
        diff = found - exp.fillna(0).astype("int64")
        rep.count_mismatches = diff[(diff != 0).any(axis=1)]
        rep.count_mismatches.index.name = "train_id"
    if patches:
        x = np.concatenate(xs) if xs else np.zeros((0, patch_size, patch_size, 3), np.uint8)
        return rep, x, np.asarray(ys, dtype=object)
    return rep, None, None
