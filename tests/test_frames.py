"""The detections table and its writers: round trips, schema, atomic writes, errors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import Point

import geodetect
from geodetect.errors import ConfigError, GeodetectError, OutputError
from geodetect.frames import COLUMNS, make_detections

SCHEMA = ("detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2")
FORMATS = ["parquet", "geojson", "fgb", "gpkg", "csv"]

CLASSES = ["adult_females", "pups", "adult_males"]
SCORES = [0.9, 0.25, 0.6180339]
LONLAT = [(-168.01, 52.8), (-168.0, 52.805), (-167.99987654321, 52.79912345678)]


@pytest.fixture
def dets():
    return make_detections(
        "sea-lion-counter", "0.1.0", "rookery_a", CLASSES, SCORES, [Point(x, y) for x, y in LONLAT],
        [0.0, 0.0, 0.0], "EPSG:4326", extra={"tile_id": [0, 3, 7]},
    )


def _files(d):
    return sorted(p.name for p in d.iterdir())


# --------------------------------------------------------------------------- the schema


def test_make_detections_schema(dets):
    assert tuple(COLUMNS) == SCHEMA
    assert list(dets.columns[: len(SCHEMA)]) == list(SCHEMA)
    assert "tile_id" in dets.columns
    assert dets["score"].dtype == np.float32
    assert dets["area_m2"].dtype == np.float64
    assert dets.geometry.name == "geometry"
    assert dets.crs.to_epsg() == 4326
    assert len(dets) == 3
    assert dets["class_name"].tolist() == CLASSES
    assert (dets["detector"] == "sea-lion-counter").all()
    np.testing.assert_allclose(dets["score"], np.float32(SCORES))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [e for e in FORMATS if e != "csv"])
def test_round_trip(tmp_path, dets, ext):
    path = tmp_path / f"dets.{ext}"
    ret = geodetect.write(dets, path)
    assert os.fspath(ret) == os.fspath(path)
    assert path.is_file()
    assert _files(tmp_path) == [path.name], "temp files left behind"

    back = geodetect.read(path)
    assert len(back) == len(dets)
    assert set(dets.columns) <= set(back.columns)
    if ext == "fgb":  # FlatGeobuf's spatial index stores features in Hilbert order: compare by key
        assert sorted(back["tile_id"].astype(int)) == [0, 3, 7]
        back = back.sort_values("tile_id").reset_index(drop=True)
    assert back.crs is not None and back.crs.to_epsg() == 4326
    for col in ("detector", "detector_version", "scene_id", "class_name"):
        assert back[col].astype(str).tolist() == dets[col].astype(str).tolist(), col
    assert back["tile_id"].astype(int).tolist() == [0, 3, 7]
    # score is float32 in the frame; formats with a float32 type keep it, all keep the value
    assert np.issubdtype(back["score"].dtype, np.floating)
    np.testing.assert_allclose(back["score"].to_numpy(np.float64), dets["score"].to_numpy(np.float64), rtol=1e-6)
    if ext in ("parquet", "fgb"):
        assert back["score"].dtype == np.float32, ext
    assert back["area_m2"].dtype == np.float64
    np.testing.assert_array_equal(back["area_m2"].to_numpy(), dets["area_m2"].to_numpy())
    assert (back.geom_type == "Point").all()
    assert back.geometry.geom_equals_exact(dets.geometry, tolerance=1e-9).all()
    if ext == "parquet":  # GeoParquet keeps the column order exactly
        assert list(back.columns) == list(dets.columns)


def test_round_trip_csv(tmp_path, dets):
    path = tmp_path / "dets.csv"
    geodetect.write(dets, path)
    assert _files(tmp_path) == ["dets.csv"]
    back = pd.read_csv(path)
    expected = [c for c in dets.columns if c != "geometry"] + ["wkt"]
    assert list(back.columns) == expected
    assert "geometry" not in back.columns
    assert len(back) == 3
    assert back["class_name"].tolist() == CLASSES
    np.testing.assert_allclose(back["score"], np.float32(SCORES), rtol=1e-6)
    geoms = shapely.from_wkt(back["wkt"].to_numpy())
    assert all(g.geom_type == "Point" for g in geoms)
    got = np.array([[g.x, g.y] for g in geoms])
    np.testing.assert_allclose(got, np.array(LONLAT), rtol=0, atol=1e-5)


def test_csv_wkt_keeps_full_precision(tmp_path, dets):
    """WKT coordinates are not rounded: 1e-6 degree is ~0.1 m, a whole pixel at 0.1 m GSD."""
    path = tmp_path / "dets.csv"
    geodetect.write(dets, path)
    geoms = shapely.from_wkt(pd.read_csv(path)["wkt"].to_numpy())
    got = np.array([[g.x, g.y] for g in geoms])
    np.testing.assert_allclose(got, np.array(LONLAT), rtol=0, atol=1e-9)


def test_round_trip_empty(tmp_path):
    from geodetect.frames import empty_detections

    empty = empty_detections()
    assert list(empty.columns) == list(SCHEMA)
    assert empty["score"].dtype == np.float32 and empty["area_m2"].dtype == np.float64
    path = tmp_path / "none.parquet"
    geodetect.write(empty, path)
    back = geodetect.read(path)
    assert len(back) == 0
    assert list(back.columns) == list(SCHEMA)
    assert back.crs.to_epsg() == 4326
    assert back["score"].dtype == np.float32


def test_round_trip_projected_crs(tmp_path, dets):
    utm = dets.to_crs("EPSG:32602")
    path = tmp_path / "utm.parquet"
    geodetect.write(utm, path)
    back = geodetect.read(path)
    assert back.crs.to_epsg() == 32602
    assert back.geometry.geom_equals_exact(utm.geometry, tolerance=1e-6).all()


def test_gpkg_layer_named_after_file(tmp_path, dets):
    """The GeoPackage layer is called after the file, not after a temporary name."""
    import pyogrio

    path = tmp_path / "lions.gpkg"
    geodetect.write(dets, path)
    layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    assert layers == ["lions"]


def test_gpkg_written_in_chunks_reads_back_whole(tmp_path, monkeypatch):
    """A GeoPackage is appended a chunk of rows at a time (bounded memory): every row, in order, one layer."""
    import geodetect.frames as frames

    n = 23
    many = make_detections(
        "d", "1", "s", ["water"] * n, np.linspace(0, 1, n), [shapely.box(i, 0, i + 1, 1 + i % 3) for i in range(n)],
        np.arange(n, dtype=float), "EPSG:32633",
    )
    monkeypatch.setattr(frames, "WRITE_CHUNK", 5)
    path = geodetect.write(many, tmp_path / "many.gpkg")
    back = geodetect.read(path)
    assert len(back) == n and back["area_m2"].tolist() == list(range(n))
    assert all(shapely.equals(a, b) for a, b in zip(back.geometry, many.geometry))
    assert back.crs.to_epsg() == 32633


def _holey(x0, y0, n, size=40.0):
    """A square with ``n`` square holes on a grid (a stand-in for the region with millions of holes)."""
    k = int(np.ceil(np.sqrt(n)))
    step = size / (k + 1)
    holes = [shapely.box(x0 + step * (1 + i % k), y0 + step * (1 + i // k), x0 + step * (1.5 + i % k),
                         y0 + step * (1.5 + i // k)).exterior.coords[::-1] for i in range(n)]
    return shapely.Polygon(shapely.box(x0, y0, x0 + size, y0 + size).exterior.coords, holes)


def _gpkg_tables(path):
    """What a GeoPackage holds for its layer: rows (geometry blobs included), R-tree, extent, count, type, triggers."""
    import sqlite3

    con = sqlite3.connect(path)
    try:
        (layer,) = [r[0] for r in con.execute("SELECT table_name FROM gpkg_contents")]
        cols = sorted(r[1] for r in con.execute(f'PRAGMA table_info("{layer}")'))  # by name: geom may come last
        return {
            "rows": con.execute(f'SELECT {", ".join(cols)} FROM "{layer}" ORDER BY fid').fetchall(),
            "types": sorted(r[1:] for r in con.execute(f'PRAGMA table_info("{layer}")')),
            "sequence": con.execute("SELECT * FROM sqlite_sequence").fetchall(),
            "rtree": con.execute(f'SELECT * FROM "rtree_{layer}_geom" ORDER BY id').fetchall(),
            "contents": con.execute("SELECT table_name, data_type, min_x, min_y, max_x, max_y, srs_id "
                                    "FROM gpkg_contents").fetchall(),
            "count": con.execute("SELECT * FROM gpkg_ogr_contents").fetchall(),
            "columns": con.execute("SELECT * FROM gpkg_geometry_columns").fetchall(),
            "extensions": con.execute("SELECT * FROM gpkg_extensions ORDER BY extension_name").fetchall(),
            "triggers": sorted(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall()),
            "integrity": con.execute("PRAGMA integrity_check").fetchall(),
        }
    finally:
        con.close()


def _big_rows_frame():
    """Polygons and multipolygons with many holes among small ones, a missing and an empty geometry; one big
    polygon has a hole outside its shell (invalid: OGR's envelope covers it, GEOS's bounds do not)."""
    outside = shapely.Polygon(shapely.box(0, 0, 10, 10).exterior.coords,
                              [shapely.box(12, -3, 13, -2).exterior.coords[::-1]] + [
                                  shapely.box(1 + i, 1, 1.5 + i, 1.5).exterior.coords[::-1] for i in range(8)])
    geoms = [
        shapely.box(0, 0, 1, 1), _holey(100, 100, 30), None,
        shapely.MultiPolygon([_holey(0, 200, 20), shapely.box(300, 300, 301, 302)]),
        shapely.box(5, 5, 6, 7), outside, shapely.Polygon(), _holey(-50.25, 1e6 + 0.1, 50),
        shapely.MultiPolygon([shapely.box(1, 1, 2, 2)]), _holey(7, 7, 9),
    ]
    n = len(geoms)
    return make_detections("d", "1", "s", ["water"] * n, np.linspace(0, 1, n), geoms, np.arange(n, dtype=float),
                           "EPSG:32633")


@pytest.mark.parametrize("chunk", [4, 1 << 18])
def test_gpkg_big_rows_written_by_sqlite_as_ogr_writes_them(tmp_path, monkeypatch, chunk):
    """Rows with many vertices get their geometry from SQLite a slice of rings at a time (a region with millions
    of holes was held several times over through OGR); the GeoPackage holds exactly what OGR writes: the same
    blobs byte for byte (polygons made multipolygons where pyogrio promotes a chunk), R-tree, extent, triggers."""
    import geodetect.frames as frames

    many = _big_rows_frame()
    monkeypatch.setattr(frames, "WRITE_CHUNK", chunk)
    monkeypatch.setattr(frames, "BIG_ROW_VERTICES", 1 << 40)
    by_ogr = geodetect.write(many, tmp_path / "ogr" / "d.gpkg")
    monkeypatch.setattr(frames, "BIG_ROW_VERTICES", 40)
    monkeypatch.setattr(frames, "_RING_SLICE", 7)
    put = []
    real = frames._put_big_rows
    monkeypatch.setattr(frames, "_put_big_rows", lambda *a: (put.append([r[0] for r in a[2]]), real(*a)))
    by_sqlite = geodetect.write(many, tmp_path / "sqlite" / "d.gpkg")
    assert put == [[2, 4, 6, 8, 10]]
    a, b = _gpkg_tables(by_ogr), _gpkg_tables(by_sqlite)
    assert a == b and b["integrity"] == [("ok",)] and len(b["rows"]) == len(many)
    back = geodetect.read(by_sqlite)
    assert back.equals(geodetect.read(by_ogr))  # the same frame read back: fields in order, geometry
    want = many.geometry.values
    assert back.geometry.isna().tolist() == want.isna().tolist()
    for got, exp in zip(back.geometry, want):  # vertex for vertex; a polygon may come back as a multipolygon of one
        if exp is not None and not exp.is_empty:
            one = got.geoms[0] if got.geom_type == "MultiPolygon" and exp.geom_type == "Polygon" else got
            assert shapely.equals_exact(one, exp, tolerance=0) and len(got.geoms if one is not got else [got]) == 1
        elif exp is not None:
            assert got.is_empty


def test_gpkg_geometry_column_moved_last_only_for_a_big_row(tmp_path, monkeypatch):
    """With a big row the geometry column comes after the attributes (SQLite then makes its blob without
    building the row in memory); without one the table is OGR's own, geometry first."""
    import sqlite3

    import geodetect.frames as frames

    many = _big_rows_frame()

    def columns(path):
        con = sqlite3.connect(path)
        try:
            return [r[1] for r in con.execute(f'PRAGMA table_info("{path.stem}")')]
        finally:
            con.close()

    plain = geodetect.write(many, tmp_path / "plain.gpkg")
    assert columns(plain)[:2] == ["fid", "geom"]
    monkeypatch.setattr(frames, "BIG_ROW_VERTICES", 40)
    big = geodetect.write(many, tmp_path / "big.gpkg")
    assert columns(big) == ["fid"] + [c for c in many.columns if c != "geometry"] + ["geom"]


def test_gpkg_big_row_found_by_its_spatial_index(tmp_path, monkeypatch):
    """The big row's R-tree entry is its envelope over every ring (the hole outside the shell too), and a
    bounding-box read through GDAL's spatial index finds it."""
    import pyogrio

    import geodetect.frames as frames

    many = _big_rows_frame()
    monkeypatch.setattr(frames, "BIG_ROW_VERTICES", 40)
    path = geodetect.write(many, tmp_path / "big.gpkg")
    assert pyogrio.read_info(path)["capabilities"]["fast_spatial_filter"]
    t = _gpkg_tables(path)
    assert [r[0] for r in t["rtree"]] == [1, 2, 4, 5, 6, 8, 9, 10]  # no entry for the missing and empty rows
    minx, maxx, miny, maxy = t["rtree"][4][1:]  # fid 6: the polygon with a hole outside its shell
    assert (minx, maxx, miny, maxy) == pytest.approx((0, 13, -3, 10), abs=1e-5) and minx <= 0 and maxx >= 13
    found = pyogrio.read_dataframe(path, bbox=(0.1, 9.5, 0.4, 9.9))
    assert found["area_m2"].tolist() == [5.0]
    found = pyogrio.read_dataframe(path, bbox=(-50, 1e6 + 1, -49, 1e6 + 2))
    assert found["area_m2"].tolist() == [7.0]


def test_overwrite(tmp_path, dets):
    path = tmp_path / "dets.parquet"
    geodetect.write(dets, path)
    geodetect.write(dets.iloc[:1], path)
    assert len(geodetect.read(path)) == 1
    with pytest.raises(OutputError, match="dets.parquet"):
        geodetect.write(dets, path, overwrite=False)
    assert len(geodetect.read(path)) == 1


def test_creates_missing_folder(tmp_path, dets):
    path = tmp_path / "a" / "b" / "dets.geojson"
    geodetect.write(dets, path)
    assert len(geodetect.read(path)) == 3


# --------------------------------------------------------------------------- errors


def test_unknown_extension(tmp_path, dets):
    path = tmp_path / "dets.xyz"
    with pytest.raises(ConfigError) as info:
        geodetect.write(dets, path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, GeodetectError) and isinstance(info.value, ValueError)
    assert _files(tmp_path) == []


def test_failed_write_keeps_good_file(tmp_path, dets, monkeypatch):
    """A writer that dies half-way leaves the previous file untouched and no temp file."""
    import geopandas as gpd

    path = tmp_path / "dets.parquet"
    geodetect.write(dets, path)
    before = path.read_bytes()
    before_mtime = path.stat().st_mtime_ns

    calls = []

    def broken_to_parquet(self, target, *args, **kwargs):
        calls.append(os.fspath(target))
        with open(target, "wb") as fh:  # a partial file, as a crashing writer leaves it
            fh.write(b"PAR1 half a file")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_parquet", broken_to_parquet)
    with pytest.raises(OutputError) as info:
        geodetect.write(dets.iloc[:1], path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)
    assert calls and os.path.abspath(calls[0]) != os.path.abspath(path), "the writer must not write in place"
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert path.stat().st_mtime_ns == before_mtime
    assert _files(tmp_path) == ["dets.parquet"], "temp file left behind"
    assert len(geodetect.read(path)) == 3


@pytest.mark.parametrize("ext", ["parquet", "fgb", "geojson"])
def test_unsupported_column_keeps_good_file(tmp_path, dets, ext):
    """A column the format cannot store (complex numbers) fails cleanly."""
    path = tmp_path / f"dets.{ext}"
    geodetect.write(dets, path)
    before = path.read_bytes()
    bad = dets.assign(weird=np.array([1 + 2j, 3j, 4 + 0j]))
    with pytest.raises(OutputError) as info:
        geodetect.write(bad, path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    assert _files(tmp_path) == [path.name], "temp file left behind"


def test_failed_write_to_new_path_leaves_nothing(tmp_path, dets):
    path = tmp_path / "new.parquet"
    bad = dets.assign(weird=np.array([1 + 2j, 3j, 4 + 0j]))
    with pytest.raises(OutputError):
        geodetect.write(bad, path)
    assert _files(tmp_path) == []


def test_write_into_directory_path(tmp_path, dets):
    d = tmp_path / "taken.parquet"
    d.mkdir()
    with pytest.raises(OutputError, match="taken.parquet"):
        geodetect.write(dets, d)
    assert d.is_dir() and list(d.iterdir()) == []


def test_read_missing_file(tmp_path):
    path = tmp_path / "nope.parquet"
    with pytest.raises(GeodetectError) as info:
        geodetect.read(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize("name", ["garbage.parquet", "garbage.geojson"])
def test_read_garbage_file(tmp_path, name):
    path = tmp_path / name
    path.write_text("not a vector file at all")
    with pytest.raises(GeodetectError) as info:
        geodetect.read(path)
    assert str(path) in str(info.value)


SQLITE_AFTER_TF = """
import sys
from geodetect.plugins.weights import import_tensorflow
import_tensorflow()  # as every TensorFlow detector loads it, before anything has written a file
import geodetect, geodetect.frames as frames
sys.path.insert(0, sys.argv[2])
from test_frames import _big_rows_frame
frames.BIG_ROW_VERTICES = int(sys.argv[3])
geodetect.write(_big_rows_frame(), sys.argv[1])
"""


@pytest.mark.parametrize("big", [1 << 40, 40], ids=["ogr", "big-rows"])
def test_gpkg_keeps_its_spatial_index_after_tensorflow(tmp_path, tf, big):
    """TensorFlow carries a SQLite without the R-tree module and makes its symbols global: GDAL and sqlite3
    loaded after it wrote GeoPackages with no spatial index (silently). geodetect loads them first."""
    import subprocess
    import sys

    import pyogrio

    out = tmp_path / "d.gpkg"
    proc = subprocess.run([sys.executable, "-c", SQLITE_AFTER_TF, str(out), str(Path(__file__).parent), str(big)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "without a spatial index" not in proc.stderr
    assert pyogrio.read_info(out)["capabilities"]["fast_spatial_filter"]
    assert [r[0] for r in _gpkg_tables(out)["rtree"]] == [1, 2, 4, 5, 6, 8, 9, 10]


def test_gpkg_without_rtree_module_warns(tmp_path, dets, monkeypatch, caplog):
    """A GeoPackage written without its spatial index is said so, naming the file written (not its temporary
    name; not silently degraded)."""
    import geodetect.frames as frames

    monkeypatch.setattr(frames, "_has_spatial_index", lambda path: False)
    with caplog.at_level("WARNING", logger="geodetect"):
        geodetect.write(dets, tmp_path / "d.gpkg")
    assert "without a spatial index" in caplog.text
    assert f"{tmp_path / 'd.gpkg'}: written without" in caplog.text
