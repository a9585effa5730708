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
    "Placement",
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
    place = Placement(transform, src_crs, dst_crs)
    for i in range(0, len(polys_px), CHUNK):
        part = polys_px[i:i + CHUNK]  # a view: set_coordinates replaces its geometries in polys_px
        coords = shapely.get_coordinates(part)
        place(coords)
        # shapely.set_coordinates would first copy them (astype): its checked core, with the count get_coordinates gave
        shapely.lib.set_coordinates(part, coords)
        del coords
    return place.finish(polys_px)


class Placement:
    """Pixel -> ``dst_crs`` placement of flat coordinates, for code that builds polygons itself from them
    (:mod:`geodetect.outlines`): its polygons are made in the map CRS, never held in pixels beside a placed copy
    (a region with millions of holes is the largest object of a scene). Gives what :func:`polygons_to_map` gives:
    call it on the (n, 2) pixel coordinates before the polygons are made, then :meth:`finish` on the polygons."""

    def __init__(self, transform, src_crs, dst_crs):
        self.transform, self.src_crs, self.dst_crs = transform, src_crs, dst_crs

    def __call__(self, coords: np.ndarray) -> None:
        """Place float64 (n, 2) [col, row] coordinates in place, a slice at a time (one array of coordinates)."""
        for a in range(0, len(coords), _VERTICES):
            xs, ys = _map_xy(self.transform, self.src_crs, self.dst_crs, coords[a:a + _VERTICES, 0],
                             coords[a:a + _VERTICES, 1])
            coords[a:a + _VERTICES, 0], coords[a:a + _VERTICES, 1] = xs, ys

    def finish(self, geoms: np.ndarray) -> np.ndarray:
        """The placed polygons, those crossing the antimeridian split (geographic ``dst_crs``)."""
        return _fix_antimeridian(geoms) if len(geoms) and _is_geographic(self.dst_crs) else geoms


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
    """Area in square metres in an equal-area projection (0 for points and lines).

    Polygons are measured from their coordinates, transformed a slice at a time, never from an equal-area copy of
    each polygon: a region with millions of holes was held twice (and its coordinates three times more) to be measured.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0, np.float64)
    out = np.zeros(len(geoms), np.float64)
    kind = shapely.get_type_id(geoms)
    if not np.isin(kind, (3, 6, 7)).any():  # Polygon, MultiPolygon, collection
        return out
    tr = transformer(crs, EQUAL_AREA_CRS)
    poly = np.flatnonzero(kind == 3)
    if len(poly):
        out[poly] = _polygon_areas(geoms[poly], tr)
    multi = np.flatnonzero(kind == 6)
    for i in range(0, len(multi), CHUNK):  # the parts of a chunk of MultiPolygons are copies: a chunk at a time
        parts, owner = shapely.get_parts(geoms[multi[i:i + CHUNK]], return_index=True)
        out[multi[i:i + CHUNK]] = np.bincount(owner, weights=_polygon_areas(parts, tr), minlength=len(multi[i:i + CHUNK]))
        del parts
    coll = np.flatnonzero(kind == 7)
    if len(coll):  # rare: measured on an equal-area copy

        def fn(coords: np.ndarray) -> np.ndarray:
            xs, ys = tr.transform(coords[:, 0], coords[:, 1])
            return np.column_stack([xs, ys])

        out[coll] = _in_chunks(geoms[coll], lambda part: shapely.area(shapely.transform(part, fn)), np.float64)
    return out


#: rings measured at once by area_m2 (those of a polygon with more holes are measured a block of holes at a time)
_RINGS = 1 << 16
#: vertices transformed and summed at once by area_m2 (a ring with more is held whole: 16 bytes a vertex)
_VERTICES = 1 << 20


def _polygon_areas(polys: np.ndarray, tr) -> np.ndarray:
    """Equal-area area of each Polygon, as GEOS measures it: |shell| - sum of |hole|, rings :data:`_RINGS` at a time."""
    import shapely

    n_holes = shapely.get_num_interior_rings(polys).astype(np.int64)
    first = np.zeros(len(polys) + 1, np.int64)  # each polygon's first ring (its shell) in the rings of all, then the end
    np.cumsum(n_holes + 1, out=first[1:])
    out = np.zeros(len(polys), np.float64)
    for k0 in range(0, int(first[-1]), _RINGS):
        k = np.arange(k0, min(k0 + _RINGS, int(first[-1])))
        p = np.searchsorted(first, k, "right") - 1
        j = k - first[p]
        rings = polys[p]  # a polygon without holes stands for its shell (no ring copied out of it)
        shell = (j == 0) & (n_holes[p] > 0)
        hole = j > 0
        rings[shell] = shapely.get_exterior_ring(rings[shell])
        rings[hole] = shapely.get_interior_ring(rings[hole], j[hole] - 1)
        counts = shapely.get_num_coordinates(rings).astype(np.int64)
        ends = np.cumsum(counts)
        area = np.empty(len(rings), np.float64)
        s = 0
        while s < len(rings):  # rings of at most _VERTICES vertices together (or one bigger ring)
            e = max(s + 1, int(np.searchsorted(ends, (ends[s - 1] if s else 0) + _VERTICES, "right")))
            area[s:e] = _ring_areas(shapely.get_coordinates(rings[s:e]), counts[s:e], tr)
            s = e
        del rings
        area[hole] = -area[hole]
        out[p[0]:p[-1] + 1] += np.bincount(p - p[0], weights=area)
    return out


def _ring_areas(coords: np.ndarray, counts: np.ndarray, tr) -> np.ndarray:
    """|area| of each ring of flat XY ``coords`` (ring r: the next ``counts[r]`` rows) after ``tr``, summed as GEOS
    does (shoelace with x taken from the ring's first vertex; 0 under 3 vertices). ``coords`` is overwritten."""
    n = len(coords)
    starts = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    ends = starts + counts
    for a in range(0, n, _VERTICES):  # contiguous copies of a slice, transformed in place
        x, y = coords[a:a + _VERTICES, 0].copy(), coords[a:a + _VERTICES, 1].copy()
        x, y = tr.transform(x, y, inplace=True)
        coords[a:a + _VERTICES, 0], coords[a:a + _VERTICES, 1] = x, y
        del x, y
    x, y = coords[:, 0], coords[:, 1]
    x0 = x[np.minimum(starts, max(n - 1, 0))] if n else np.zeros(len(counts))
    sums = np.zeros(len(counts), np.float64)
    for a in range(1, n - 1, _VERTICES):  # vertex i adds (x[i] - x0) * (y[i - 1] - y[i + 1]) but its ring's first and last
        b = min(a + _VERTICES, n - 1)
        i = np.arange(a, b)
        r = np.searchsorted(starts, i, "right") - 1  # the ring of each vertex (an empty ring shares the next one's start)
        t = (x[a:b] - x0[r]) * (y[a - 1:b - 1] - y[a + 1:b + 1])
        t[(i == starts[r]) | (i >= ends[r] - 1)] = 0.0
        first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
        sums[r[first]] += np.add.reduceat(t, first)
    return np.abs(sums) / 2.0


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
