"""Inria Aerial Image Labeling dataset (0.3 m RGB orthophotos, building masks).

The dataset's layout: ``<root>/images/<name>.tif`` (3-band uint8 GeoTIFFs,
5000 x 5000 px per city tile, e.g. ``austin1.tif``) and
``<root>/gt/<name>.tif`` (one band, 255 = building, 0 = not building).

* :func:`pair_inria` pairs images and masks by file name.
* :func:`cut_tiles` cuts each pair into ``tile`` x ``tile`` windows (128 by
  default, as in the U-Net thesis) on the same grid as :func:`geodetect.detect`'s
  tiles: windows advance by ``tile - overlap`` and the last window of a row
  or column is shifted back inside the image (the thesis' edge handling,
  its "Algorithm 1" when ``overlap=0``). Windows are read one at a time.
* :func:`load_tiles` stacks all of them into two arrays.

Every problem with the files is a one-line error naming the file and what to
do: no images, an image without its mask, sizes that differ, a mask that is
not 0/255.

Examples
--------
>>> from geodetect.train.inria import pair_inria, cut_tiles          # doctest: +SKIP
>>> pairs = pair_inria("AerialImageDataset/train")                   # doctest: +SKIP
>>> for image, mask, name, (x0, y0) in cut_tiles(pairs):             # doctest: +SKIP
...     ...                                  # uint8 (128, 128, 3), uint8 (128, 128) in {0, 1}
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, GeodetectError, RasterReadError

__all__ = ["InriaPair", "InriaDataError", "InriaFileMissingError", "pair_inria", "cut_tiles", "load_tiles"]

log = logging.getLogger("geodetect")

_SUFFIXES = (".tif", ".tiff")


class InriaDataError(GeodetectError, ValueError):
    """An Inria image or mask has the wrong content (size mismatch, non-binary mask, wrong bands)."""


class InriaFileMissingError(RasterReadError, FileNotFoundError):
    """A folder, image or mask of the Inria layout is missing."""


@dataclass(frozen=True)
class InriaPair:
    """One image and its building mask."""

    name: str
    image: Path
    gt: Path


def _tifs(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in _SUFFIXES}


def pair_inria(root) -> list[InriaPair]:
    """Pair ``<root>/images/*.tif`` with ``<root>/gt/*.tif`` by name (sorted by name).

    Raises :class:`InriaFileMissingError` when ``root``, ``images/`` or ``gt/``
    is missing, when ``images/`` holds no .tif, or when an image has no mask
    of the same name. Masks without an image are ignored (logged).
    """
    r = Path(os.fspath(root))
    if not r.is_dir():
        raise InriaFileMissingError(f"Inria folder {r} not found; point to the folder that holds images/ and gt/")
    img_dir, gt_dir = r / "images", r / "gt"
    for d in (img_dir, gt_dir):
        if not d.is_dir():
            raise InriaFileMissingError(
                f"{d} not found; the Inria layout is <root>/images/<name>.tif with masks in <root>/gt/<name>.tif "
                "(the test split has no gt/: it cannot be used for training)"
            )
    images, masks = _tifs(img_dir), _tifs(gt_dir)
    if not images:
        raise InriaFileMissingError(f"{img_dir} holds no .tif images; expected the Inria layout images/<name>.tif")
    pairs = []
    for name, ip in images.items():
        gp = masks.get(name)
        if gp is None:
            raise InriaFileMissingError(
                f"{gt_dir / (name + '.tif')} missing: the image {ip} needs a mask of the same name in gt/ "
                "(remove the image or add its mask)"
            )
        pairs.append(InriaPair(name, ip, gp))
    extra = sorted(set(masks) - set(images))
    if extra:
        log.info("%s: %d mask(s) without an image ignored: %s", gt_dir, len(extra), ", ".join(extra[:5]))
    return pairs


def _open(path: Path):
    import rasterio

    try:
        return rasterio.open(path)
    except Exception as exc:  # noqa: BLE001 - rasterio raises several kinds
        raise RasterReadError(f"{path}: not a readable GeoTIFF ({exc})") from exc


def _check_mask(values: np.ndarray, path: Path) -> np.ndarray:
    bad = values[(values != 0) & (values != 255)]
    if bad.size:
        found = np.unique(values)
        shown = ", ".join(map(str, found[:8])) + (", ..." if len(found) > 8 else "")
        raise InriaDataError(
            f"{path}: mask values must be 0 (not building) or 255 (building), found {shown}; "
            "binarise the mask (e.g. 255 where > 127) or check that gt/ holds the masks"
        )
    return (values == 255).astype(np.uint8)


def cut_tiles(pairs, tile: int = 128, overlap: int = 0, *, skip_empty: bool = False):
    """Yield ``(image, mask, name, (col_off, row_off))`` for every window of every pair.

    Parameters
    ----------
    pairs : a root folder (passed to :func:`pair_inria`) or a list of :class:`InriaPair`.
    tile, overlap : window edge and the pixels shared by neighbouring windows
        (default 128 and 0: the thesis' windows).
    skip_empty : leave out windows without building pixels.

    Yields
    ------
    image : uint8 (tile, tile, 3); images smaller than ``tile`` are padded with zeros.
    mask : uint8 (tile, tile), 1 = building, 0 = not.
    name : the pair's name; (col_off, row_off): the window's offset in the image.
    """
    from rasterio.windows import Window

    from geodetect.io.tiling import Tiling

    if not (int(tile) > int(overlap) >= 0):
        raise ConfigError(f"need tile > overlap >= 0, got tile={tile}, overlap={overlap}")
    if isinstance(pairs, (str, os.PathLike)):
        pairs = pair_inria(pairs)
    for pr in pairs:
        with _open(pr.image) as im, _open(pr.gt) as gt:
            if (im.width, im.height) != (gt.width, gt.height):
                raise InriaDataError(
                    f"{pr.gt}: mask is {gt.width} x {gt.height} px but its image {pr.image} is "
                    f"{im.width} x {im.height}; a mask must cover its image pixel for pixel"
                )
            if im.count < 3:
                raise InriaDataError(f"{pr.image}: Inria images have 3 bands (RGB), this one has {im.count}")
            if im.dtypes[0] != "uint8":
                raise InriaDataError(f"{pr.image}: Inria images are uint8, this one is {im.dtypes[0]}; "
                                     "rescale it to 0..255 first")
            if gt.count != 1:
                raise InriaDataError(f"{pr.gt}: Inria masks have one band, this one has {gt.count}")
            tiling = Tiling(im.width, im.height, int(tile), int(overlap))
            for i in range(len(tiling)):
                x0, y0, w, h = tiling.tile(i)
                win = Window(x0, y0, w, h)
                m = np.zeros((tile, tile), np.uint8)
                m[:h, :w] = _check_mask(gt.read(1, window=win), pr.gt)
                if skip_empty and not m.any():
                    continue
                img = np.zeros((tile, tile, 3), np.uint8)
                img[:h, :w] = np.moveaxis(im.read((1, 2, 3), window=win), 0, -1)
                yield img, m, pr.name, (x0, y0)


def load_tiles(pairs, tile: int = 128, overlap: int = 0, *, skip_empty: bool = False):
    """All windows of :func:`cut_tiles` as arrays: images uint8 (N, tile, tile, 3), masks uint8 (N, tile, tile)."""
    imgs, masks = [], []
    for img, m, _, _ in cut_tiles(pairs, tile, overlap, skip_empty=skip_empty):
        imgs.append(img)
        masks.append(m)
    if not imgs:
        return np.zeros((0, tile, tile, 3), np.uint8), np.zeros((0, tile, tile), np.uint8)
    return np.stack(imgs), np.stack(masks)
