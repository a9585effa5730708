"""Land-use training tiles: folder-per-class datasets and imagery with an aligned label raster.

Two real layouts:

* **folder per class** (AID, EuroSAT, UC Merced Land Use): ``<root>/<class>/*.tif|png|jpg``.
  :func:`read_class_folders` lists the images with their class, optionally
  through a mapping from the dataset's folder names to ours (EuroSAT's
  ``Residential`` -> ``developed``, ``Forest`` -> ``forest``, ...; a folder
  mapped to ``None`` is skipped); :func:`load_class_folder_tiles` reads them
  as RGB tiles of one size.
* **imagery + label raster** (NAIP + NLCD, as in the land-use seed): an RGB
  raster and a single-band raster of integer class codes on the same grid.
  :func:`cut_labelled_tiles` cuts square tiles (224 px by default) on the
  grid that :func:`geodetect.detect` uses for a zero-overlap classifier and
  labels each by its majority class; tiles whose majority class covers less
  than ``min_purity`` of the tile, or whose majority is unmapped (water,
  wetlands, nodata), are skipped and counted in the returned stats.

NLCD -> six classes (:data:`NLCD_TO_LAND_USE`), as in the seed: 21-24
developed, 81-82 cultivated, 41-43 forest, 51-52 shrub (52 scrub, 51 Alaska
dwarf scrub), 31 barren, 71-74 herbaceous (grassland, sedge, lichens, moss).
Open water (11), perennial ice/snow (12) and the wetlands (90, 95) are not
among the seed's six classes: they map to ``None`` and their tiles are
skipped (counted as ``unmapped``). Nodata (0) is treated the same way.

AID (the real set in ``../shared/data/landuse-aid``: 15 of AID's 30 scene classes,
200 images of 150 x 150 px each) is read by :func:`read_aid`: every image with its
AID class, the seed class it maps to (:data:`AID_TO_LAND_USE`, ``None`` for the
classes with no seed counterpart: water and mountains) and its split, fixed by
the number in its file name (:func:`aid_split`). :func:`resample_like_host`
resamples an image exactly as :func:`geodetect.detect` reads a placed scene
(GDAL bilinear), so training sees what detection sees.

Examples
--------
>>> from geodetect.train.landuse import cut_labelled_tiles        # doctest: +SKIP
>>> tiles, labels, stats = cut_labelled_tiles("naip.tif", "nlcd.tif")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, GeodetectError, RasterReadError

__all__ = [
    "LAND_USE_CLASSES",
    "NLCD_TO_LAND_USE",
    "EUROSAT_TO_LAND_USE",
    "AID_TO_LAND_USE",
    "AID_SPLITS",
    "AidImage",
    "LandUseDataError",
    "TileStats",
    "read_class_folders",
    "load_class_folder_tiles",
    "cut_labelled_tiles",
    "file_number",
    "aid_split",
    "read_aid",
    "read_image",
    "resample_like_host",
]

LAND_USE_CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")

NLCD_TO_LAND_USE: dict[int, str | None] = {
    11: None, 12: None,                                   # open water, perennial ice/snow
    21: "developed", 22: "developed", 23: "developed", 24: "developed",
    31: "barren",
    41: "forest", 42: "forest", 43: "forest",
    51: "shrub", 52: "shrub",
    71: "herbaceous", 72: "herbaceous", 73: "herbaceous", 74: "herbaceous",
    81: "cultivated", 82: "cultivated",
    90: None, 95: None,                                   # woody / emergent herbaceous wetlands
}

#: EuroSAT's ten folders -> the six classes (water classes skipped)
EUROSAT_TO_LAND_USE: dict[str, str | None] = {
    "AnnualCrop": "cultivated", "PermanentCrop": "cultivated", "Pasture": "herbaceous",
    "HerbaceousVegetation": "herbaceous", "Forest": "forest", "Highway": "developed",
    "Industrial": "developed", "Residential": "developed", "River": None, "SeaLake": None,
}

#: AID's 15 folders here -> the seed's six classes (NLCD sense); ``None``: no seed class.
#: NLCD 31 "barren land (rock/sand/clay)" names beaches and sand dunes; water (NLCD 11) is not
#: among the six; AID's Mountain scenes are forested or bare rock (forest or barren in NLCD
#: terms, no single class). No AID class is shrub/scrub (NLCD 51-52).
AID_TO_LAND_USE: dict[str, str | None] = {
    "BareLand": "barren", "Beach": "barren", "Desert": "barren",
    "Commercial": "developed", "DenseResidential": "developed", "Industrial": "developed",
    "MediumResidential": "developed", "Parking": "developed", "SparseResidential": "developed",
    "Farmland": "cultivated", "Forest": "forest", "Meadow": "herbaceous",
    "Mountain": None, "Pond": None, "River": None,
}

#: the AID split, by file number n (1, 2, ...): in each block of 20 consecutive numbers the first
#: 14 train, the next 3 validate, the last 3 test (70 / 15 / 15 %)
AID_SPLITS = ("train", "val", "test")
_BLOCK, _N_TRAIN, _N_VAL = 20, 14, 3


def file_number(path) -> int:
    """The number at the end of an image file's stem (``forest_17.jpg`` -> 17)."""
    import re

    m = re.search(r"(\d+)$", Path(os.fspath(path)).stem)
    if m is None:
        raise LandUseDataError(f"{path}: no number at the end of the file name (AID names are <class>_<n>.jpg)")
    return int(m.group(1))


def aid_split(number: int) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for AID file number ``number`` (see :data:`AID_SPLITS`)."""
    k = (int(number) - 1) % _BLOCK
    return "train" if k < _N_TRAIN else "val" if k < _N_TRAIN + _N_VAL else "test"


@dataclass(frozen=True)
class AidImage:
    """One AID image: its file, AID class (folder), seed class (``None``: unmapped), number and split."""

    path: Path
    aid_class: str
    land_use: str | None
    number: int
    split: str


def read_aid(root, split: str | None = None, *, mapped_only: bool = False,
             mapping: dict | None = None) -> list[AidImage]:
    """The images of an AID-layout folder (one folder per AID class), by class and number.

    ``split`` keeps one of :data:`AID_SPLITS`; ``mapped_only`` drops images whose class maps to
    ``None``. A folder missing from ``mapping`` (default :data:`AID_TO_LAND_USE`) is an error.
    """
    mapping = AID_TO_LAND_USE if mapping is None else mapping
    if split is not None and split not in AID_SPLITS:
        raise ConfigError(f"split must be one of {', '.join(AID_SPLITS)}, got {split!r}")
    root = Path(os.fspath(root))
    if not root.is_dir():
        raise LandUseDataError(f"{root}: no such folder; give the AID root holding one folder per class")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name not in mapping:
            raise LandUseDataError(f"{d}: AID folder {d.name!r} has no entry in the mapping "
                                   f"({', '.join(sorted(mapping))}); add it (None to skip)")
        cls = mapping[d.name]
        if cls is not None and cls not in LAND_USE_CLASSES:
            raise ConfigError(f"mapping sends folder {d.name!r} to {cls!r}, which is not one of "
                              f"{', '.join(LAND_USE_CLASSES)}")
        if cls is None and mapped_only:
            continue
        files = [f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
        for f in sorted(files, key=file_number):
            n = file_number(f)
            s = aid_split(n)
            if split is None or s == split:
                out.append(AidImage(f, d.name, cls, n, s))
    if not out:
        raise LandUseDataError(f"{root}: no images (*{', *'.join(IMAGE_SUFFIXES)}) for split {split!r}")
    return out


def read_image(path) -> np.ndarray:
    """An image file (JPEG, PNG, GeoTIFF) as uint8 RGB (H, W, 3); one band is repeated three times."""
    return np.clip(np.rint(_read_rgb(Path(os.fspath(path)))), 0, 255).astype(np.uint8)


def resample_like_host(image: np.ndarray, size: int, window: tuple[float, float, float, float] | None = None
                       ) -> np.ndarray:
    """``image`` (H, W, C) uint8, or the ``window`` (col_off, row_off, width, height) of it, resampled to
    ``size`` x ``size`` as float32 on 0..1 by GDAL bilinear: the read :func:`geodetect.detect` makes of a
    placed scene whose extent is one tile."""
    import rasterio
    from rasterio.enums import Resampling
    from rasterio.io import MemoryFile
    from rasterio.windows import Window

    a = np.asarray(image)
    h, w, c = a.shape
    win = Window(0, 0, w, h) if window is None else Window(*window)
    from rasterio.transform import from_origin

    # a placed image (any metric grid: only the pixels count here), so GDAL has a geotransform
    with MemoryFile() as mem, mem.open(driver="GTiff", width=w, height=h, count=c, dtype=a.dtype,
                                       transform=from_origin(0.0, float(h), 1.0, 1.0)) as ds:
        ds.write(np.moveaxis(a, -1, 0))
        out = ds.read(window=win, out_shape=(c, size, size), resampling=Resampling.bilinear)
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(str(a.dtype), 1.0)
    return np.moveaxis(out, 0, -1).astype(np.float32) / scale


class LandUseDataError(GeodetectError, ValueError):
    """A land-use dataset is unusable: unknown class folder, misaligned rasters, nothing to train on."""


@dataclass
class TileStats:
    """What :func:`cut_labelled_tiles` kept and skipped."""

    kept: int = 0
    impure: int = 0
    unmapped: int = 0
    nodata: int = 0
    per_class: dict = field(default_factory=dict)


def read_class_folders(root, classes=LAND_USE_CLASSES, mapping: dict | None = None) -> list[tuple[Path, str]]:
    """``(image path, class name)`` for every image under ``root/<folder>/``, sorted.

    ``mapping`` maps folder names to class names (``None`` = skip the folder);
    without it, folder names must be class names themselves (case-insensitive).
    A folder that is neither a class nor in the mapping is an error, so a typo
    never silently drops a class.
    """
    root = Path(os.fspath(root))
    if not root.is_dir():
        raise LandUseDataError(f"{root}: no such folder; give the dataset root holding one folder per class")
    classes = tuple(classes)
    lower = {c.lower(): c for c in classes}
    out: list[tuple[Path, str]] = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if mapping is not None and d.name in mapping:
            cls = mapping[d.name]
            if cls is None:
                continue
            if cls not in classes:
                raise ConfigError(f"mapping sends folder {d.name!r} to {cls!r}, which is not one of {', '.join(classes)}")
        elif d.name.lower() in lower:
            cls = lower[d.name.lower()]
        else:
            raise LandUseDataError(
                f"{d}: folder {d.name!r} is not a class ({', '.join(classes)}); rename it or pass "
                "mapping={'" + d.name + "': <class or None>}")
        files = sorted(f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        out.extend((f, cls) for f in files)
    if not out:
        raise LandUseDataError(f"{root}: no images (*{', *'.join(IMAGE_SUFFIXES)}) in any class folder")
    return out


def _read_rgb(path: Path) -> np.ndarray:
    """An image file as uint8-scaled float32 (H, W, 3) on 0..255."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import rasterio

        try:
            with rasterio.open(path) as ds:
                a = ds.read()
                dt = ds.dtypes[0]
        except Exception as exc:  # noqa: BLE001
            raise RasterReadError(f"{path}: cannot read ({type(exc).__name__}: {exc}); is it a valid GeoTIFF?") from None
        a = np.moveaxis(a, 0, -1).astype(np.float32)
        if dt == "uint16":
            a = a / 257.0
    else:
        from PIL import Image

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("RGB"), np.float32)
        except Exception as exc:  # noqa: BLE001
            raise RasterReadError(f"{path}: cannot read ({type(exc).__name__}: {exc}); is it a valid image?") from None
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if a.shape[-1] < 3:
        raise LandUseDataError(f"{path}: has {a.shape[-1]} bands, need 3 (RGB)")
    return a[..., :3]


def load_class_folder_tiles(root, *, size: int = 224, classes=LAND_USE_CLASSES, mapping: dict | None = None):
    """Read a folder-per-class dataset as tiles: (float32 (N, size, size, 3) on 0..1, int class ids (N,)).

    Images of another size are resized (bilinear), e.g. EuroSAT's 64 px or UC Merced's 256 px.
    """
    from PIL import Image

    items = read_class_folders(root, classes, mapping)
    classes = tuple(classes)
    x = np.empty((len(items), size, size, 3), np.float32)
    y = np.empty(len(items), np.int64)
    for i, (p, c) in enumerate(items):
        a = _read_rgb(p)
        if a.shape[:2] != (size, size):
            a = np.asarray(Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).resize((size, size), Image.BILINEAR),
                           np.float32)
        x[i] = a / 255.0
        y[i] = classes.index(c)
    return x, y


def cut_labelled_tiles(image, labels, *, size: int = 224, min_purity: float = 0.75,
                       code_map: dict | None = None, classes=LAND_USE_CLASSES):
    """Tiles of ``image`` labelled by the majority class of the aligned ``labels`` raster.

    Returns (float32 tiles (N, size, size, 3) on 0..1 by dtype, int class ids (N,), :class:`TileStats`).
    ``code_map`` maps label codes to class names (default :data:`NLCD_TO_LAND_USE`); codes not in it count
    as unmapped. The two rasters must share CRS, transform and size; tiles start at pixel (0, 0), step
    ``size`` (partial tiles at the right and bottom edges are dropped).
    """
    import rasterio

    code_map = NLCD_TO_LAND_USE if code_map is None else code_map
    classes = tuple(classes)
    for name, v in code_map.items():
        if v is not None and v not in classes:
            raise ConfigError(f"code_map sends {name!r} to {v!r}, which is not one of {', '.join(classes)}")
    if not (0 < min_purity <= 1):
        raise ConfigError(f"min_purity must be in (0, 1], got {min_purity}")
    paths = []
    for p in (image, labels):
        p = Path(os.fspath(p))
        if not p.is_file():
            raise RasterReadError(f"{p}: no such file")
        paths.append(p)
    try:
        with rasterio.open(paths[0]) as im, rasterio.open(paths[1]) as lb:
            if (im.width, im.height) != (lb.width, lb.height) or im.crs != lb.crs or \
                    not im.transform.almost_equals(lb.transform, precision=1e-9 * max(1.0, abs(im.transform.a))):
                raise LandUseDataError(
                    f"{paths[1]}: label raster is not aligned with {paths[0].name} (size {lb.width}x{lb.height} vs "
                    f"{im.width}x{im.height}, CRS {lb.crs} vs {im.crs}, or another transform); "
                    "resample it onto the imagery grid first (nearest neighbour), e.g. gdalwarp -r near -te ... -tr ...")
            if im.count < 3:
                raise LandUseDataError(f"{paths[0]}: has {im.count} band(s), need 3 (RGB)")
            if lb.count != 1:
                raise LandUseDataError(f"{paths[1]}: label raster has {lb.count} bands, need 1 band of class codes")
            img = im.read((1, 2, 3))
            dt = im.dtypes[0]
            img_nodata = im.nodata
            lab = lb.read(1)
            lab_nodata = lb.nodata
    except GeodetectError:
        raise
    except rasterio.errors.RasterioIOError as exc:
        raise RasterReadError(f"cannot read {paths[0].name} / {paths[1].name}: {exc}") from None
    scale = {"uint8": 255.0, "uint16": 65535.0}.get(dt, 1.0)
    lut = np.full(int(max(lab.max(), max(code_map, default=0))) + 2, -1, np.int64)
    for code, c in code_map.items():
        if c is not None and 0 <= int(code) < len(lut):
            lut[int(code)] = classes.index(c)
    if lab_nodata is not None and 0 <= int(lab_nodata) < len(lut):
        lut[int(lab_nodata)] = -1
    ids = lut[np.clip(lab.astype(np.int64), 0, len(lut) - 1)]
    h, w = lab.shape
    stats = TileStats(per_class={c: 0 for c in classes})
    tiles, ys = [], []
    for r in range(0, h - size + 1, size):
        for c in range(0, w - size + 1, size):
            win = ids[r:r + size, c:c + size]
            px = img[:, r:r + size, c:c + size]
            if img_nodata is not None and np.all(px == img_nodata):
                stats.nodata += 1
                continue
            counts = np.bincount(win[win >= 0].ravel(), minlength=len(classes))
            n_unmapped = int((win < 0).sum())
            best = int(np.argmax(counts))
            if n_unmapped > counts[best]:
                stats.unmapped += 1
                continue
            if counts[best] < min_purity * win.size:
                stats.impure += 1
                continue
            tiles.append(np.moveaxis(px, 0, -1).astype(np.float32) / scale)
            ys.append(best)
            stats.per_class[classes[best]] += 1
    stats.kept = len(tiles)
    if not tiles:
        raise LandUseDataError(
            f"{paths[0]}: no {size}x{size} tile passed (impure {stats.impure}, unmapped {stats.unmapped}, "
            f"nodata {stats.nodata}); lower min_purity or check code_map against the label codes")
    return np.stack(tiles), np.array(ys, np.int64), stats
