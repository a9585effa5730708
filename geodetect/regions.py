"""Regions (counties, AOIs, ...) for the analytics: read, check, clean, reproject.

:func:`load_regions` is the one place where a region layer becomes something the
engines can join against. It

* reads any vector format GeoPandas reads (GeoParquet, GeoJSON, TopoJSON,
  GeoPackage, FlatGeobuf, Shapefile, ...) or takes a GeoDataFrame;
* checks that the id column ``by`` exists and is unique and not null (the
  error lists the columns there are);
* decides on a CRS: a layer without one is taken as lon/lat (EPSG:4326), with a
  warning, only when every coordinate fits in [-180, 180] x [-90, 90];
  otherwise it is an error. Lon/lat is what such files nearly always hold
  (GeoJSON is lon/lat by definition, TopoJSON and WKT-in-CSV usually are), and
  no real projected layer has all its coordinates within 180 units of its
  false origin, so this guess is safe; a layer that might be projected is
  never guessed, because a wrong guess would silently put every region in
  the wrong place. Pass ``src_crs=`` to state the CRS yourself;
* reprojects explicitly to ``crs`` (the detections' CRS) when it differs;
* repairs invalid polygons with ``shapely.make_valid`` (keeping the polygonal
  parts) and says how many in one warning; drops empty or null geometries
  with a warning naming them; refuses non-polygonal regions;
* in a geographic CRS, splits polygon parts that cross the antimeridian into
  parts on each side of +/-180 (a part whose longitudes span more than 180
  degrees is taken as crossing it, as is any part beyond +/-180), so that a
  point at lon 179.9 and one at lon -179.9 both fall in a region such as
  Aleutians West (FIPS 02016).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError

__all__ = ["load_regions", "split_antimeridian"]

_LONLAT = "EPSG:4326"


def load_regions(src, by: str, name_col: str | None = None, *, crs=None, src_crs=None):
    """Read and clean a region layer; returns a GeoDataFrame ``[by, (name_col), geometry]``.

    Parameters
    ----------
    src:
        a path to any vector file GeoPandas reads, or a GeoDataFrame (not modified).
    by:
        the id column; must exist, be unique and have no nulls.
    name_col:
        a column of region names to carry along; ``None`` takes ``"name"`` when the
        layer has such a column (and ``by`` is not it).
    crs:
        reproject to this CRS (normally the detections' CRS); ``None`` keeps the layer's.
    src_crs:
        the layer's CRS when the file declares none (see the module docstring for what
        happens without it); ignored when the layer has a CRS.

    The index of the result is a fresh RangeIndex. ``result.attrs["geodetect_regions"]``
    records what was repaired or dropped.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    gdf, label = _read(src)
    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    if by not in gdf.columns or by == gdf.geometry.name:
        raise ConfigError(f"{label}: no column {by!r} to use as the region id; columns are: {', '.join(map(str, cols))}")
    if name_col is None:
        name_col = "name" if ("name" in cols and by != "name") else None
    elif name_col not in cols:
        raise ConfigError(f"{label}: no column {name_col!r} for region names; columns are: {', '.join(map(str, cols))}")
    ids = gdf[by]
    bad = [v for v in ids.tolist() if not isinstance(v, (str, int, float, np.integer, np.floating)) and v is not None]
    if bad:
        raise ConfigError(
            f"{label}: the region id column {by!r} holds {len(bad)} value(s) that are not plain ids "
            f"(e.g. {bad[0]!r}); ids must be strings or numbers"
        )
    if ids.isna().any():
        raise ConfigError(f"{label}: the region id column {by!r} has {int(ids.isna().sum())} empty values; ids must be set on every row")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        shown = ", ".join(map(repr, list(dict.fromkeys(dup.tolist()))[:5]))
        raise ConfigError(
            f"{label}: the region id column {by!r} is not unique ({dup.nunique()} ids repeat, e.g. {shown}); "
            f"choose a unique column among: {', '.join(map(str, cols))}"
        )

    keep = [by] + ([name_col] if name_col else [])
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    out = gpd.GeoDataFrame(
        pd.DataFrame({c: gdf[c].to_numpy() for c in keep}), geometry=gpd.GeoSeries(geoms, crs=gdf.crs), crs=gdf.crs
    )
    out.attrs = {}

    # CRS: declared, given, guessed (lon/lat only), or refused.
    if out.crs is None:
        if src_crs is not None:
            out = out.set_crs(src_crs)
        else:
            ok = ~(out.geometry.isna() | out.geometry.is_empty)
            b = shapely.total_bounds(geoms[ok.to_numpy()]) if ok.any() else np.array([0.0, 0.0, 0.0, 0.0])
            if np.all(np.isfinite(b)) and b[0] >= -180 and b[2] <= 180 and b[1] >= -90 and b[3] <= 90:
                warnings.warn(
                    f"{label}: regions have no CRS; their coordinates are all within lon/lat range, so they are "
                    f"taken as {_LONLAT} (pass src_crs=, or set a CRS on the layer, to say otherwise)",
                    UserWarning,
                    stacklevel=2,
                )
                out = out.set_crs(_LONLAT)
            else:
                raise ConfigError(
                    f"{label}: regions have no CRS and their coordinates (bounds {tuple(round(float(v), 3) for v in b)}) "
                    "are not lon/lat; give the CRS with src_crs= (CLI: set it in the file), e.g. EPSG:5070"
                )

    geoms = np.asarray(out.geometry.values, dtype=object)
    # Empty and null geometries: dropped, named.
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    if empty.any():
        names = out.loc[empty, by].tolist()
        shown = ", ".join(map(str, names[:10])) + (" ..." if len(names) > 10 else "")
        warnings.warn(
            f"{label}: dropped {int(empty.sum())} region(s) with an empty geometry ({by}: {shown}); "
            "they cannot contain detections and have no area",
            UserWarning,
            stacklevel=2,
        )
        out = out.loc[~empty].reset_index(drop=True)
        geoms = geoms[~empty]

    types = shapely.get_type_id(geoms)
    bad = ~np.isin(types, (3, 6, 7))  # Polygon, MultiPolygon, GeometryCollection (checked below)
    if bad.any():
        kinds = sorted(set(shapely.get_type_id(geoms[bad]).tolist()))
        raise ConfigError(
            f"{label}: regions must be polygons; {int(bad.sum())} row(s) are "
            f"{', '.join(_TYPE_NAMES.get(k, str(k)) for k in kinds)} (e.g. {by}={out.loc[bad, by].iloc[0]!r})"
        )

    # Invalid polygons: repaired, counted in one warning.
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        fixed = np.array([_polygonal(g) for g in shapely.make_valid(geoms[invalid])], dtype=object)
        geoms = geoms.copy()
        geoms[invalid] = fixed
        shown = ", ".join(map(str, out.loc[invalid, by].tolist()[:10])) + (" ..." if invalid.sum() > 10 else "")
        warnings.warn(
            f"{label}: repaired {int(invalid.sum())} invalid region polygon(s) with make_valid ({by}: {shown})",
            UserWarning,
            stacklevel=2,
        )
    collections = shapely.get_type_id(geoms) == 7
    if collections.any():
        geoms = geoms.copy()
        geoms[collections] = [_polygonal(g) for g in geoms[collections]]
    out = out.set_geometry(gpd.GeoSeries(geoms, crs=out.crs, index=out.index))

    # Explicit reprojection to the detections' CRS.
    if crs is not None and not _same_crs(out.crs, crs):
        out = out.to_crs(crs)
    elif crs is not None:
        out = out.set_crs(crs, allow_override=True)  # equivalent CRS: use the caller's exact object

    if out.crs.is_geographic:
        out = out.set_geometry(gpd.GeoSeries(split_antimeridian(np.asarray(out.geometry.values, dtype=object)),
                                             crs=out.crs, index=out.index))

    # After reprojection a tiny region can collapse; drop those too.
    collapsed = np.asarray(out.geometry.is_empty)
    if collapsed.any():
        warnings.warn(
            f"{label}: dropped {int(collapsed.sum())} region(s) that became empty after repair or reprojection "
            f"({by}: {', '.join(map(str, out.loc[collapsed, by].tolist()[:10]))})",
            UserWarning,
            stacklevel=2,
        )
        out = out.loc[~collapsed].reset_index(drop=True)
    out.attrs["geodetect_regions"] = {
        "source": label,
        "by": by,
        "name_col": name_col,
        "repaired": int(invalid.sum()),
        "dropped_empty": int(empty.sum()) + int(collapsed.sum()),
    }
    return out


_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint", 5: "MultiLineString",
               6: "MultiPolygon", 7: "GeometryCollection"}


def _read(src):
    import geopandas as gpd

    if isinstance(src, gpd.GeoDataFrame):
        return src, "regions"
    if isinstance(src, (str, os.PathLike)):
        from geodetect.frames import read

        return read(src), str(Path(os.fspath(src)))
    raise ConfigError(f"regions must be a path or a GeoDataFrame, not {type(src).__name__}")


def _same_crs(a, b) -> bool:
    from pyproj import CRS

    if a is None or b is None:
        return a is None and b is None
    return CRS.from_user_input(a).equals(CRS.from_user_input(b), ignore_axis_order=True)


def _polygonal(g):
    """The polygonal part of a geometry (collections of polygons and lines -> MultiPolygon)."""
    import shapely

    if g is None:
        return shapely.Polygon()
    t = g.geom_type
    if t in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
    polys = []
    for p in parts:
        polys.extend(shapely.get_parts(p).tolist())
    polys = [p for p in polys if not p.is_empty]
    if not polys:
        return shapely.Polygon()
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def split_antimeridian(geoms: np.ndarray) -> np.ndarray:
    """Lon/lat polygons -> the same polygons with every part inside [-180, 180].

    A polygon part whose longitudes span more than 180 degrees is taken as one
    that crosses the antimeridian the short way (its negative longitudes are
    shifted by +360 first); parts beyond +/-180 are cut at the line and the
    pieces shifted back by 360. Geometries that need nothing are returned as
    they are (the same objects), so this is cheap on ordinary layers.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return geoms
    parts, owner = shapely.get_parts(geoms, return_index=True)
    if len(parts) == 0:
        return geoms
    b = shapely.bounds(parts)
    wrapped = (b[:, 2] - b[:, 0]) > 180.0
    outside = (b[:, 0] < -180.0) | (b[:, 2] > 180.0)
    todo = np.unique(owner[wrapped | outside])
    if len(todo) == 0:
        return geoms
    geoms = geoms.copy()
    world = shapely.box(-180.0, -90.0, 180.0, 90.0)
    for i in todo:  # rare: only regions that touch the antimeridian
        polys = []
        for p, w in zip(parts[owner == i], wrapped[owner == i]):
            if w:
                p = shapely.transform(p, lambda c: np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360.0, c[:, 0]), c[:, 1]]))
            for shift in (-360.0, 0.0, 360.0):
                piece = shapely.intersection(shapely.transform(p, lambda c, s=shift: c + np.array([s, 0.0])), world)
                polys.extend(q for q in shapely.get_parts(_polygonal(piece)).tolist() if not q.is_empty and q.area > 0)
        geoms[i] = shapely.MultiPolygon(polys) if len(polys) > 1 else (polys[0] if polys else shapely.Polygon())
    return geoms
