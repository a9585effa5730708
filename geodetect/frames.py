"""The detections table: its fixed schema, and writers in the formats GIS people use.

Schema (public API, see DESIGN.md): ``detector``, ``detector_version``,
``scene_id``, ``class_name``, ``score`` (float32), ``geometry``, ``area_m2``
(float64). Extra columns follow the fixed ones.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
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

#: a GeoPackage row with more vertices than this gets its geometry from SQLite, not OGR (:func:`_put_big_rows`)
BIG_ROW_VERTICES = 1 << 20


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
            elif fmt == "GPKG":
                _write_gpkg(dets, tmp, path.stem)
            else:
                dets.to_file(tmp, driver=fmt, engine="pyogrio")
    except GeodetectError:
        raise
    except Exception as exc:  # noqa: BLE001 - a driver's own error types
        raise OutputError(f"{path}: could not write {fmt} ({type(exc).__name__}: {exc})") from exc
    if fmt == "GPKG" and len(dets) and not _has_spatial_index(path):
        import logging

        logging.getLogger("geodetect").warning(
            "%s: written without a spatial index: GDAL's SQLite has no R-tree module here (TensorFlow imported "
            "before geodetect, pyogrio or rasterio binds them to its own SQLite); import geodetect first", path)
    return path


def _write_gpkg(dets, tmp, layer: str) -> None:
    """Append ``dets`` to a GeoPackage a chunk at a time (the WKB of a chunk, not of every row, at once); a row
    with more than :data:`BIG_ROW_VERTICES` vertices goes to OGR as the box of its envelope and its geometry is put
    in afterwards by SQLite, a slice of rings at a time (see :func:`_put_big_rows`; the table then has its geometry
    column last, :func:`_geometry_last`)."""
    import shapely
    from geopandas.array import from_shapely

    geoms = np.asarray(dets.geometry.array, dtype=object)
    big = np.flatnonzero(shapely.get_num_coordinates(geoms) > BIG_ROW_VERTICES) if len(geoms) else np.zeros(0, int)
    plans = {int(i): plan for i in big if (plan := _big_row_plan(geoms[i])) is not None}
    if plans:  # a blob SQLite cannot hold stays with OGR (and fails there as it did)
        import sqlite3

        con = sqlite3.connect(":memory:")
        most = con.getlimit(sqlite3.SQLITE_LIMIT_LENGTH) - 64 - 9
        if not _has_rtree(con):  # a SQLite without R-trees (TensorFlow's, loaded first) cannot keep the index
            most = -1
        con.close()
        plans = {k: plan for k, plan in plans.items() if plan[1] <= most}
    for i in range(0, max(len(dets), 1), WRITE_CHUNK):
        chunk = dets.iloc[i:i + WRITE_CHUNK]
        mine = [k for k in plans if i <= k < i + WRITE_CHUNK]
        if mine:  # the envelope's box stands in: OGR indexes it, and the layer's extent and types come out the same
            g = geoms[i:i + WRITE_CHUNK].copy()
            for k in mine:
                g[k - i] = plans[k][2]
            chunk = chunk.copy(deep=False)
            chunk[dets.geometry.name] = from_shapely(g, crs=dets.crs)
        chunk.to_file(tmp, driver="GPKG", engine="pyogrio", layer=layer, append=i > 0)
        del chunk
        if i == 0 and plans:
            _geometry_last(tmp, layer)
    if plans:
        _put_big_rows(tmp, layer, [(k + 1, geoms[k], plans[k]) for k in sorted(plans)])


#: rings cloned and converted to WKB at once while a big row is put into a GeoPackage
_RING_SLICE = 1 << 16


def _polys(geom):
    """The polygons of a polygon or multipolygon, one at a time (a multipolygon's parts are clones)."""
    import shapely

    if shapely.get_type_id(geom) != 6:
        yield geom
        return
    for i in range(shapely.get_num_geometries(geom)):
        yield shapely.get_geometry(geom, i)


def _rings(poly):
    """The rings of a polygon, shell first, in arrays of at most :data:`_RING_SLICE` (clones: a slice at a time)."""
    import shapely

    yield np.array([shapely.get_exterior_ring(poly)], dtype=object)
    n = shapely.get_num_interior_rings(poly)
    for a in range(0, n, _RING_SLICE):
        yield shapely.get_interior_ring(poly, np.arange(a, min(a + _RING_SLICE, n)))


def _big_row_plan(geom):
    """``(envelope, WKB size, stand-in)`` of a 2D polygon or multipolygon, or None (it goes through OGR).

    The envelope is over every ring's vertices, as OGR computes it for the GeoPackage header and R-tree (GEOS's
    ``bounds`` of a polygon looks at its shell only)."""
    import shapely

    if shapely.get_type_id(geom) not in (3, 6) or shapely.is_empty(geom) or shapely.has_z(geom):
        return None
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    size = 9 + 9 * (int(shapely.get_num_geometries(geom)) if shapely.get_type_id(geom) == 6 else 0)
    for p in _polys(geom):
        for rings in _rings(p):
            b = shapely.bounds(rings)
            lo, hi = np.minimum(lo, b[:, :2].min(axis=0)), np.maximum(hi, b[:, 2:].max(axis=0))
            size += 4 * len(rings) + 16 * int(shapely.get_num_coordinates(rings).sum())
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        return None
    stand_in = shapely.box(lo[0], lo[1], hi[0], hi[1])
    if shapely.get_type_id(geom) == 6:
        stand_in = shapely.multipolygons([stand_in])
    return (lo[0], hi[0], lo[1], hi[1]), size, stand_in


def _wkb_pieces(geom, as_multi: bool):
    """Little-endian ISO WKB of a 2D polygon or multipolygon, as OGR writes it, a slice of rings at a time."""
    import struct

    import shapely

    if shapely.get_type_id(geom) == 6 or as_multi:
        yield struct.pack("<BII", 1, 6, shapely.get_num_geometries(geom))
    for p in _polys(geom):
        yield struct.pack("<BII", 1, 3, 1 + shapely.get_num_interior_rings(p))
        for rings in _rings(p):
            yield _ring_bytes(rings)


def _ring_bytes(rings) -> bytes:
    """Rings as a polygon's WKB holds them: each one's vertex count (uint32), then its x, y (float64), little-endian;
    made as 4-byte words (every field is a whole number of them)."""
    import shapely

    xy, ring = shapely.get_coordinates(rings, return_index=True)
    n = np.bincount(ring, minlength=len(rings))
    words = np.empty(len(rings) + 4 * len(xy), "<u4")
    count_at = np.arange(len(rings)) + 4 * (np.cumsum(n) - n)
    words[count_at] = n
    vertex = np.ones(len(words), bool)
    vertex[count_at] = False
    words[vertex] = np.ascontiguousarray(xy, "<f8").view("<u4").ravel()
    return words.tobytes()


def _has_rtree(con) -> bool:
    """Whether this SQLite has the R-tree module (a GeoPackage's spatial index needs it)."""
    import sqlite3

    try:
        con.execute("CREATE VIRTUAL TABLE temp.geodetect_rtree_probe USING rtree(id, x0, x1)")
        con.execute("DROP TABLE temp.geodetect_rtree_probe")
        return True
    except sqlite3.OperationalError:
        return False


def _has_spatial_index(path) -> bool:
    """Whether a GeoPackage has an R-tree (its schema names one; read without the R-tree module)."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT count(*) FROM sqlite_master WHERE name LIKE 'rtree%'").fetchone()[0] > 0
    finally:
        con.close()


def _q(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


@contextmanager
def _immediate(con):
    """One write transaction on ``con`` (opened with ``isolation_level=None``): committed, or rolled back on any error."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _geometry_last(path, layer: str) -> None:
    """Move the layer's geometry column after its attributes (OGR puts it first), for a table that will hold a big
    row: SQLite then makes a row's geometry of any size without building it in memory (a zero-filled value is
    written lazily only when nothing follows it in the row; else the row, zeros and all, was made in memory
    twice: +1.9 GB for the 900 Mpx scene's region). Readers see the same layer: fields in the same order, the
    same geometry column. The few rows written so far are copied; triggers are made again unchanged."""
    import re
    import sqlite3

    con = sqlite3.connect(path, isolation_level=None)
    try:
        (col,) = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
        cols = [r[1] for r in con.execute(f"PRAGMA table_info({_q(layer)})")]
        (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (layer,)).fetchone()
        head = f"CREATE TABLE {_q(layer)} ("
        geom = re.search(r",\s*(" + re.escape(_q(col)) + r"\s+[A-Za-z]+(?:\s+NOT NULL)?)\s*(?=,)", sql)
        if cols[-1] == col or not sql.startswith(head) or not sql.rstrip().endswith(")") or geom is None:
            return  # already last, or not the table OGR makes: left as it is (a big row is then made in memory)
        tmp = layer + "_geodetect_reorder"
        body = sql[len(head):geom.start()] + sql[geom.end():].rstrip()[:-1] + ", " + geom.group(1) + ")"
        order = [c for c in cols if c != col] + [col]
        triggers = con.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? ORDER BY rowid",
                               (layer,)).fetchall()
        con.execute("PRAGMA legacy_alter_table = ON")  # the rename touches no other table's triggers
        with _immediate(con):
            con.execute(f"CREATE TABLE {_q(tmp)} (" + body)
            names = ", ".join(_q(c) for c in order)
            con.execute(f"INSERT INTO {_q(tmp)} ({names}) SELECT {names} FROM {_q(layer)}")
            con.execute(f"DROP TABLE {_q(layer)}")
            con.execute(f"ALTER TABLE {_q(tmp)} RENAME TO {_q(layer)}")
            for (t,) in triggers:
                con.execute(t)
    finally:
        con.close()


def _put_big_rows(path, layer: str, rows) -> None:
    """Put big geometries into a GeoPackage OGR has written with stand-ins: ``rows`` are ``(fid, geometry, plan)``.

    Through OGR a region with millions of holes was held as shapely's WKB, OGR's geometry and the GeoPackage blob
    at once (gigabytes at 900 Mpx); here the blob is made the right size and filled a slice of rings at a time.
    With the geometry column last (:func:`_geometry_last`) SQLite writes the zeros without making the row in memory:
    a polygon with 4 M holes (336 MB of WKB) took +115 MB to write, against +733 MB with the column first and
    +1,685 MB through OGR.
    The stand-in was the box of the geometry's envelope, so its header (flags, SRS id, envelope), its R-tree entry
    and the layer's extent are already the geometry's own. The table's triggers (R-tree upkeep, which call
    SpatiaLite-style SQL functions plain SQLite lacks) are dropped for the update and made again unchanged."""
    import sqlite3
    import struct

    con = sqlite3.connect(path, isolation_level=None)
    try:
        (col,) = con.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (layer,)).fetchone()
        (fid_col,) = [r[1] for r in con.execute(f"PRAGMA table_info({_q(layer)})") if r[5] == 1]
        triggers = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? "
                               "ORDER BY rowid", (layer,)).fetchall()
        with _immediate(con):
            for name, _ in triggers:
                con.execute(f"DROP TRIGGER {_q(name)}")
            for fid, geom, (env, size, _) in rows:
                (blob,) = con.execute(f"SELECT {_q(col)} FROM {_q(layer)} WHERE {_q(fid_col)} = ?", (fid,)).fetchone()
                flags = blob[3]
                if blob[:3] != b"GP\0" or flags & 0x31 != 1 or (flags >> 1) & 7 != 1:  # little-endian, xy envelope
                    raise OutputError(f"{path}: row {fid} has a GeoPackage header geodetect does not expect")
                head, wkb = blob[:40], blob[40:]
                if struct.unpack("<4d", head[8:40]) != tuple(env) or wkb[0] != 1 or wkb[1:5] not in (
                        struct.pack("<I", 3), struct.pack("<I", 6)):
                    raise OutputError(f"{path}: row {fid} is not the stand-in geodetect wrote there")
                as_multi = wkb[1:5] == struct.pack("<I", 6)  # pyogrio made the chunk's polygons multipolygons
                size += 9 if as_multi and geom.geom_type == "Polygon" else 0
                con.execute(f"UPDATE {_q(layer)} SET {_q(col)} = zeroblob(?) WHERE {_q(fid_col)} = ?",
                            (len(head) + int(size), int(fid)))
                with con.blobopen(layer, col, fid) as out:
                    out.write(head)
                    for piece in _wkb_pieces(geom, as_multi):
                        out.write(piece)
                        del piece
                    if out.tell() != len(head) + size:
                        raise OutputError(f"{path}: row {fid}'s geometry came out {out.tell()} bytes, not "
                                          f"{len(head) + size}")
            for _, sql in triggers:
                con.execute(sql)
    finally:
        con.close()


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
