"""The only pixel <-> map code in geodetect.

Pixel coordinates are continuous, the centre of pixel (col, row) being
(col + 0.5, row + 0.5), as in rasterio. Everything is vectorised: one affine
product and one pyproj call per batch, never a Python loop per detection
(the only loop is over the rare polygons that cross the antimeridian).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = [
    "pixel_to_crs",
    "crs_to_pixel",
    "transformer",
    "points_to_map",
    "polygons_to_map",
    "boxes_to_map",
    "area_m2",
    "EQUAL_AREA_CRS",
]

EQUAL_AREA_CRS = "EPSG:6933"  # WGS 84 / NSIDC EASE-Grid 2.0 Global, equal-area, worldwide


def pixel_to_crs(transform, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    """Apply an affine (rotation and shear included) to pixel coordinates."""
    c = np.asarray(cols, dtype=np.float64)
    r = np.asarray(rows, dtype=np.float64)
    t = transform
    return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def crs_to_pixel(transform, xs, ys) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pixel_to_crs`."""
    return pixel_to_crs(~transform, xs, ys)


@lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_wkt: str):
    from pyproj import Transformer

    return Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)


@lru_cache(maxsize=256)
def _cached_crs(crs):
    from pyproj import CRS

    return CRS.from_user_input(crs)


def _key(crs):
    """A cheap cache key: a rasterio CRS is keyed by its WKT string, as hashing or comparing one asks GDAL
    (OSRIsSame) every time, which costs more than the lookup saves."""
    if type(crs).__module__.startswith("rasterio"):
        return crs.to_wkt()
    return crs


def pyproj_crs(crs):
    """``pyproj.CRS.from_user_input(crs)``, cached for hashable inputs (strings, rasterio and pyproj CRSs).

    Parsing a CRS costs 0.5-1 ms, and every scene needs its CRS and the output CRS several times.
    """
    crs = _key(crs)
    try:
        return _cached_crs(crs)
    except TypeError:  # unhashable (a dict of PROJ parameters): not cached
        from pyproj import CRS

        return CRS.from_user_input(crs)


@lru_cache(maxsize=256)
def _cached_wkt(crs) -> str:
    return pyproj_crs(crs).to_wkt()


def _wkt(crs) -> str:
    crs = _key(crs)
    try:
        return _cached_wkt(crs)
    except TypeError:
        return pyproj_crs(crs).to_wkt()


def transformer(src_crs, dst_crs):
    """A cached pyproj Transformer (x/y order, i.e. lon/lat for geographic CRSs)."""
    return _transformer(_wkt(src_crs), _wkt(dst_crs))


def _is_geographic(crs) -> bool:
    return pyproj_crs(crs).is_geographic


def _map_xy(transform, src_crs, dst_crs, cols, rows):
    xs, ys = pixel_to_crs(transform, cols, rows)
    if _wkt(src_crs) != _wkt(dst_crs):
        xs, ys = transformer(src_crs, dst_crs).transform(xs, ys)
        xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    return xs, ys


def _wrap_lon(lon: np.ndarray) -> np.ndarray:
    return ((lon + 180.0) % 360.0) - 180.0


def points_to_map(xy_px: np.ndarray, transform, src_crs, dst_crs):
    """Pixel points (K, 2) [col, row] -> shapely Points in ``dst_crs``."""
    import shapely

    xy_px = np.asarray(xy_px, dtype=np.float64).reshape(-1, 2)
    xs, ys = _map_xy(transform, src_crs, dst_crs, xy_px[:, 0], xy_px[:, 1])
    if _is_geographic(dst_crs):
        xs = _wrap_lon(xs)
    return shapely.points(xs, ys)


def polygons_to_map(polys_px, transform, src_crs, dst_crs, *, copy: bool = True):
    """Shapely geometries in pixel coordinates -> ``dst_crs``.

    In a geographic output CRS, polygons crossing the antimeridian are split
    into a valid MultiPolygon with parts on each side of +/-180.

    ``copy=False`` (for an object array the caller owns and no longer needs in pixels) puts the placed
    geometries into ``polys_px`` itself, each pixel-space geometry freed as its placed one is made, so a
    scene's polygons are never held twice (at 900 Mpx of speckle, gigabytes).
    """
    import shapely

    polys_px = np.array(polys_px, dtype=object) if copy else np.asarray(polys_px, dtype=object)
    if len(polys_px) == 0:
        return polys_px
    for i in range(0, len(polys_px), CHUNK):
        part = polys_px[i:i + CHUNK]  # a view: set_coordinates replaces its geometries in polys_px
        coords = shapely.get_coordinates(part)
        xs, ys = _map_xy(transform, src_crs, dst_crs, coords[:, 0], coords[:, 1])
        del coords
        shapely.set_coordinates(part, np.column_stack([xs, ys]))
        del xs, ys
    if _is_geographic(dst_crs):
        polys_px = _fix_antimeridian(polys_px)
    return polys_px


def boxes_to_map(xyxy: np.ndarray, transform, src_crs, dst_crs):
    """Pixel boxes (K, 4) -> polygons in ``dst_crs`` (rotated grids give rotated boxes)."""
    import shapely

    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    polys = shapely.box(xyxy[:, 0], xyxy[:, 1], xyxy[:, 2], xyxy[:, 3])
    return polygons_to_map(polys, transform, src_crs, dst_crs)


def _fix_antimeridian(geoms: np.ndarray) -> np.ndarray:
    import shapely

    b = shapely.bounds(geoms)
    crossing = np.nonzero((b[:, 2] - b[:, 0]) > 180.0)[0]
    if len(crossing) == 0:
        return geoms
    geoms = geoms.copy()
    east = shapely.box(-180.0, -90.0, 180.0, 90.0)
    west = shapely.box(180.0, -90.0, 540.0, 90.0)
    for i in crossing:  # rare: only geometries that straddle +/-180
        shifted = shapely.transform(geoms[i], lambda c: np.column_stack([np.where(c[:, 0] < 0, c[:, 0] + 360.0, c[:, 0]), c[:, 1]]))
        a = shapely.intersection(shifted, east)
        w = shapely.intersection(shifted, west)
        w = shapely.transform(w, lambda c: np.column_stack([c[:, 0] - 360.0, c[:, 1]]))
        parts = [p for p in (a, w) if not p.is_empty]
        polys = []
        for p in parts:
            polys.extend(shapely.get_parts(p).tolist())
        polys = [p for p in polys if p.geom_type == "Polygon" and p.area > 0]
        geoms[i] = shapely.MultiPolygon(polys) if len(polys) > 1 else (polys[0] if polys else shapely.Polygon())
    return geoms


def area_m2(geoms, crs) -> np.ndarray:
    """Area in square metres in an equal-area projection (0 for points and lines)."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0, np.float64)
    out = np.zeros(len(geoms), np.float64)
    poly = np.isin(shapely.get_type_id(geoms), (3, 6, 7))  # Polygon, MultiPolygon, collection
    if poly.any():
        tr = transformer(crs, EQUAL_AREA_CRS)

        def fn(coords: np.ndarray) -> np.ndarray:
            xs, ys = tr.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([xs, ys])

        out[poly] = _in_chunks(geoms[poly], lambda part: shapely.area(shapely.transform(part, fn)), np.float64)
    return out


#: geometries transformed at once: the coordinates of a chunk (a few arrays of them) and its transformed copies are
#: what a transform holds beside its input; millions of polygons at once held gigabytes
CHUNK = 1 << 16


def _in_chunks(geoms: np.ndarray, fn, dtype) -> np.ndarray:
    """``fn`` (one value per geometry) over ``geoms`` in chunks of :data:`CHUNK`, results in order."""
    if len(geoms) <= CHUNK:
        return np.asarray(fn(geoms), dtype=dtype)
    out = np.empty(len(geoms), dtype=dtype)
    for i in range(0, len(geoms), CHUNK):
        out[i:i + CHUNK] = fn(geoms[i:i + CHUNK])
    return out
