"""The detections table and its writers: round trips, schema, atomic writes, errors."""

from __future__ import annotations

import os

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
