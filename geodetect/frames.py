"""The detections table: its fixed schema, and writers in the formats GIS people use.

Schema (public API, see DESIGN.md): ``detector``, ``detector_version``,
``scene_id``, ``class_name``, ``score`` (float32), ``geometry``, ``area_m2``
(float64). Extra columns follow the fixed ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, GeodetectError, OutputError, VectorReadError

__all__ = ["COLUMNS", "FORMATS", "check_output_path", "empty_detections", "make_detections", "unplaceable", "write",
           "read"]

COLUMNS = ("detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2")

FORMATS = {
    ".parquet": "parquet",
    ".geoparquet": "parquet",
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".fgb": "FlatGeobuf",
    ".gpkg": "GPKG",
    ".csv": "csv",
}


def make_detections(detector: str, version: str, scene_id: str, class_names, scores, geometry, area, crs, extra=None):
    """Build a detections GeoDataFrame with the fixed schema (plus ``extra`` columns)."""
    import geopandas as gpd
    import pandas as pd
    from geopandas.array import from_shapely

    from geodetect.georef import pyproj_crs

    n = len(geometry)
    crs = pyproj_crs(crs) if crs is not None else None

    def same(value):
        a = np.empty(n, dtype=object)
        a.fill(value)
        return pd.Series(a, dtype=object, copy=False)

    # built in schema order, in one constructor: reordering and re-validating the CRS afterwards
    # cost several ms a scene
    data = {
        "detector": same(detector),
        "detector_version": same(version),
        "scene_id": same(scene_id),
        "class_name": pd.Series(np.asarray(class_names, dtype=object), dtype=object, copy=False),
        "score": np.asarray(scores, dtype=np.float32),
        "geometry": from_shapely(np.asarray(geometry, dtype=object), crs=crs),
        "area_m2": np.asarray(area, dtype=np.float64),
    }
    for k, v in (extra or {}).items():
        data[k] = np.asarray(v)
    return gpd.GeoDataFrame(data, geometry="geometry", crs=crs, copy=False)


def unplaceable(geoms) -> np.ndarray:
    """Mask of geometries that cannot be placed on a map: missing, empty, or with a NaN/infinite coordinate.

    Every consumer of detections (aggregate, heatmap, map, quicklook) leaves these out *and counts
    them*, so that a broken row is reported, never dropped silently.
    """
    import shapely

    g = np.asarray(geoms, dtype=object)
    if not len(g):
        return np.zeros(0, bool)
    bad = shapely.is_missing(g) | shapely.is_empty(g)
    idx = np.flatnonzero(~bad)
    if len(idx):
        coords, which = shapely.get_coordinates(g[idx], return_index=True)
        finite = np.all(np.isfinite(coords), axis=1)
        if not finite.all():
            bad[idx[np.unique(which[~finite])]] = True
    return bad


def empty_detections(crs="EPSG:4326"):
    """An empty detections table with the schema and a CRS."""
    return make_detections("", "", "", [], [], [], [], crs)


def check_output_path(path) -> str:
    """The format for ``path`` (by extension), or ConfigError: call before long work."""
    return _format_for(Path(os.fspath(path)))


def _format_for(path: Path) -> str:
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"{path}: unknown output format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}"
        )
    return fmt


#: GeoPackage rows written per append: GDAL is given WKB for this many rows at a time (a few million polygons of a
#: 900 Mpx scene converted at once held gigabytes beside the table)
WRITE_CHUNK = 1 << 18


def write(dets, path, *, overwrite: bool = True) -> Path:
    """Write detections; the format follows the extension.

    GeoParquet (``.parquet``), GeoJSON (``.geojson``), FlatGeobuf (``.fgb``),
    GeoPackage (``.gpkg``) or CSV with WKT geometry (``.csv``). The file is
    written under a temporary name beside the target and renamed into place, so
    a failed write never leaves a truncated file where a good one was.
    """
    path = Path(os.fspath(path))
    fmt = _format_for(path)
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    if path.exists() and path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'detections.parquet'}")
    from geodetect._atomic import atomic_output

    try:
        with atomic_output(path, what=fmt, keep_temp=False) as tmp:  # drivers create the file themselves
            if fmt == "parquet":
                dets.to_parquet(tmp, index=False)
            elif fmt == "csv":
                df = dets.drop(columns=dets.geometry.name).assign(wkt=dets.geometry.to_wkt(rounding_precision=-1))
                df.to_csv(tmp, index=False)
            elif fmt == "GPKG":  # appended in chunks: the WKB of a chunk at a time, not of every row at once
                for i in range(0, max(len(dets), 1), WRITE_CHUNK):
                    dets.iloc[i:i + WRITE_CHUNK].to_file(tmp, driver=fmt, engine="pyogrio", layer=path.stem, append=i > 0)
            else:
                dets.to_file(tmp, driver=fmt, engine="pyogrio")
    except GeodetectError:
        raise
    except Exception as exc:  # noqa: BLE001 - a driver's own error types
        raise OutputError(f"{path}: could not write {fmt} ({type(exc).__name__}: {exc})") from exc
    return path


def read(path):
    """Read a detections (or any vector) file into a GeoDataFrame."""
    import geopandas as gpd

    path = Path(os.fspath(path))
    if not path.exists():
        raise VectorReadError(f"{path}: no such file; check the path")
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet"):
            return gpd.read_parquet(path)
        return gpd.read_file(path, engine="pyogrio")
    except Exception as exc:  # noqa: BLE001
        raise VectorReadError(f"{path}: not a vector file geodetect can read ({type(exc).__name__}: {exc})") from exc
