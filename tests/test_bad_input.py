"""Bad input never gives a wrong answer (issue 16): each class of bad input is refused, or said.

Classes: placement (bounds, geotransforms, footprints off the Earth), band maps, SQL that
writes or reads files, tracebacks instead of one line (every CLI command with bad values of
every option), scratch left by interrupted runs, two runs into one folder, empty answers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

import geodetect as gd
from detectors import BrightPoints
from geodetect.errors import BandError, ConfigError, GeodetectError, GeoreferenceError, OutputError
from geodetect.plugins import DetectorSpec

CLI = [sys.executable, "-m", "geodetect.cli"]
UTM = "EPSG:32610"


def _tif(path, arr, transform=None, crs=UTM, **extra):
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    profile = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=arr.dtype)
    if transform is not None:
        profile["transform"] = transform
    if crs is not None:
        profile["crs"] = crs
    profile.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
    return str(path)


def _spots(n=64):
    img = np.full((n, n), 20, np.uint8)
    img[20:24, 20:24] = 250
    return img


def _vrt_with_geotransform(tmp_path, gt: str, name="bad.vrt") -> str:
    """A VRT over a good GeoTIFF whose <GeoTransform> says ``gt``: GDAL reads it as it is written."""
    src = _tif(tmp_path / f"src-{name}.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    with rasterio.open(src) as ds:
        wkt = ds.crs.to_wkt()
    text = (f'<VRTDataset rasterXSize="64" rasterYSize="64"><SRS>{wkt}</SRS><GeoTransform>{gt}</GeoTransform>'
            '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{src}</SourceFilename><SourceBand>1</SourceBand>'
            '</SimpleSource></VRTRasterBand></VRTDataset>')
    p = tmp_path / name
    p.write_text(text)
    return str(p)


# =========================================================================== placement


@pytest.mark.parametrize("bounds, words", [
    ((10, 0, 5, 10), "LEFT (10) must be less than RIGHT (5)"),
    ((0, 10, 10, 5), "BOTTOM (10) must be less than TOP (5)"),
    ((0, 0, 0, 10), "LEFT (0) must be less than RIGHT (0)"),
    ((0, 0, 10, 0), "BOTTOM (0) must be less than TOP (0)"),
    ((float("nan"), 0, 10, 10), "finite"),
    ((0, 0, float("inf"), 10), "finite"),
    ((0, 0, 10), "four numbers"),
])
def test_bad_bounds_are_refused_before_any_scene(tmp_path, bounds, words):
    p = _tif(tmp_path / "plain.tif", _spots(), crs=None)
    with pytest.raises(GeoreferenceError, match=words.replace("(", r"\(").replace(")", r"\)")):
        gd.detect(p, BrightPoints, crs=UTM, bounds=bounds, progress=False)
    # and open_scene itself (every path, Spark's included, goes through it) names the file
    from geodetect.io.raster import open_scene

    with pytest.raises(GeoreferenceError, match="plain.tif"):
        open_scene(p, bands=(1,), crs=UTM, bounds=bounds)


@pytest.mark.parametrize("gt, words", [
    ("nan, 1, 0, 4200000, 0, -1", "NaN or infinite"),
    ("500000, 1, 0, inf, 0, -1", "NaN or infinite"),
    ("500000, 0, 0, 4200000, 0, -1", "degenerate"),
    ("500000, 1, 0, 4200000, 0, 0", "degenerate"),
    ("500000, 1, 2, 4200000, 0.5, 1", "degenerate"),  # collinear axes: determinant 0
    ("500000, 1e307, 0, 4200000, 0, -1e-307", "infinity"),  # invertible, but the corners overflow
])
def test_bad_geotransform_is_refused_naming_the_file(tmp_path, gt, words):
    p = _vrt_with_geotransform(tmp_path, gt)
    with rasterio.open(p) as ds:  # precondition: GDAL reads the transform as written
        assert ds.transform != from_origin(500000, 4200000, 1, 1)
    with pytest.raises(GeoreferenceError, match=words) as exc:
        gd.detect(p, BrightPoints, progress=False)
    assert "bad.vrt" in str(exc.value)


def test_footprint_off_the_earth_is_refused(tmp_path):
    """A UTM scene placed a billion metres east has no longitude/latitude: refused, not POINT (inf inf)."""
    p = _tif(tmp_path / "far.tif", _spots(), transform=from_origin(1e12, 4200000, 1, 1))
    with pytest.raises(GeoreferenceError, match="far.tif.*do not lie on the Earth"):
        gd.detect(p, BrightPoints, progress=False)
    q = _tif(tmp_path / "lat.tif", _spots(), crs="EPSG:4326", transform=from_origin(10, 120, 0.001, 0.001))
    with pytest.raises(GeoreferenceError, match="lat.tif"):
        gd.detect(q, BrightPoints, progress=False)


def test_placements_that_collapse_or_explode_the_grid_are_refused(tmp_path):
    """A detector with a GSD: a scene smaller than one of its pixels, or enlarged absurdly, is refused."""
    class Gsd(BrightPoints):
        spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "test-gsd-points", "gsd_m": 1.0})

    p = _tif(tmp_path / "tiny.tif", _spots(), crs=None)
    with pytest.raises(GeoreferenceError, match="less than one"):
        gd.detect(p, Gsd, crs=UTM, bounds=(0, 0, 1e-3, 1e-3), progress=False)
    with pytest.raises(GeoreferenceError, match="enlarged more than"):
        gd.detect(p, Gsd, crs=UTM, bounds=(0, 0, 64e3, 64e3), progress=False)


def test_good_placement_still_places_exactly(tmp_path):
    p = _tif(tmp_path / "ok.tif", _spots(), crs=None)
    dets = gd.detect(p, BrightPoints, crs=UTM, bounds=(500000, 4199936, 500064, 4200000), crs_out=UTM,
                     progress=False)
    assert len(dets) == 1
    assert dets.geometry.x.iloc[0] == pytest.approx(500022) and dets.geometry.y.iloc[0] == pytest.approx(4199978)


def test_output_crs_validated_before_the_first_tile(tmp_path):
    seen = []

    class Spy(BrightPoints):
        def predict(self, tiles):
            seen.append(len(tiles))
            return super().predict(tiles)

    p = _tif(tmp_path / "ok.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    with pytest.raises(ConfigError, match="output CRS"):
        gd.detect(p, Spy, crs_out="EPSG:999999", progress=False)
    with pytest.raises(ConfigError, match="--crs"):
        gd.detect(p, Spy, crs="not a crs", progress=False)
    assert seen == []


def test_unplaceable_detection_geometries_are_counted_not_dropped_silently():
    import geopandas as gpd
    import shapely

    from geodetect.frames import unplaceable

    geoms = [shapely.Point(0, 0), shapely.Point(), None, shapely.Point(float("nan"), float("inf")),
             shapely.box(0, 0, 1, 1)]
    assert unplaceable(np.array(geoms, dtype=object)).tolist() == [False, True, True, True, False]
    dets = gpd.GeoDataFrame({"class_name": ["a"] * 5, "scene_id": ["s"] * 5}, geometry=geoms, crs="EPSG:4326")
    regions = gpd.GeoDataFrame({"fips": ["1"]}, geometry=[shapely.box(-1, -1, 2, 2)], crs="EPSG:4326")
    agg = gd.aggregate(dets, regions, by="fips", engine="geopandas")
    assert agg["count"].sum() == 2 and agg.attrs["geodetect"]["skipped_empty"] == 3
    import h3  # noqa: F401 - a dependency: missing is a failure, not a skip
    hm = gd.heatmap(dets, resolution=5)
    assert hm["count"].sum() == 2 and hm.attrs["geodetect"]["skipped_empty"] == 3


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf")])
def test_nonfinite_vertex_in_a_big_polygons_hole_refuses_the_scene(monkeypatch, bad):
    """A polygon with many holes is looked at a slice of rings at a time (not all its coordinates copied at
    once); a NaN or infinite vertex in its last hole is still found."""
    import shapely

    import geodetect.frames as frames
    from geodetect.pipeline import _check_geometries

    monkeypatch.setattr(frames, "BIG_ROW_VERTICES", 20)
    monkeypatch.setattr(frames, "_RING_SLICE", 3)
    holes = [[(1 + 2 * i, 1), (1 + 2 * i, 2), (2 + 2 * i, 2), (2 + 2 * i, 1)] for i in range(10)]
    if bad is not None:
        holes[-1][2] = (bad, 2)
    big = shapely.Polygon([(0, 0), (0, 3), (30, 3), (30, 0)], holes)
    multi = shapely.MultiPolygon([shapely.box(100, 100, 101, 101), big])
    for geoms in ([shapely.box(0, 0, 1, 1), big, None], [multi, shapely.Polygon()]):
        geoms = np.array(geoms, dtype=object)
        if bad is None:
            assert _check_geometries(geoms, "s.tif", "EPSG:32633").tolist() == [False] * (len(geoms) - 1) + [True]
        else:
            with pytest.raises(GeoreferenceError, match=r"s\.tif: 1 of \d+ detections .*NaN or infinite"):
                _check_geometries(geoms, "s.tif", "EPSG:32633")


def test_cli_reports_unplaceable_detections(tmp_path):
    import geopandas as gpd
    import shapely

    import h3  # noqa: F401 - a dependency: missing is a failure, not a skip
    dets = gpd.GeoDataFrame({"class_name": ["a"] * 3, "scene_id": ["s"] * 3},
                            geometry=[shapely.Point(1, 1), shapely.Point(float("nan"), 1), None], crs="EPSG:4326")
    dets.to_parquet(tmp_path / "d.parquet")
    out = tmp_path / "hex.csv"
    proc = subprocess.run(CLI + ["heatmap", str(tmp_path / "d.parquet"), "--out", str(out)], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert "note: 2 detection(s)" in proc.stderr


def test_simulate_center_off_the_earth_and_bad_sizes(tmp_path):
    from geodetect.simulate import make_scene

    for kw, words in [(dict(center=(500.0, 0.0)), "not on the Earth"), (dict(center=(0.0, float("nan"))), "not on"),
                      (dict(size=(0, 10)), "--size"), (dict(size=(-4, 10)), "--size"), (dict(gsd_m=0.0), "--gsd"),
                      (dict(gsd_m=float("inf")), "--gsd"), (dict(crs="EPSG:999999"), "--crs"),
                      (dict(n_objects=-1), "--objects")]:
        with pytest.raises(ConfigError, match=words):
            make_scene(tmp_path / "s.tif", **kw)
    assert not (tmp_path / "s.tif").exists()


# =========================================================================== band maps


class NamedBands(BrightPoints):
    spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "test-named-bands", "bands": ("nir", "red", "green")})

    def predict(self, tiles):
        return super().predict(tiles[..., :1])


def test_unknown_band_map_key_is_an_error_listing_the_wanted_names(tmp_path):
    p = _tif(tmp_path / "tagged.tif", np.stack([_spots()] * 3), transform=from_origin(500000, 4200000, 1, 1),
             photometric="RGB")
    with pytest.raises(BandError, match=r"no band named 'grene'.*nir, red, green"):
        gd.detect(p, NamedBands, bands="nir=1,red=2,grene=3", progress=False)
    with pytest.raises(BandError, match="takes its bands by index"):
        gd.detect(p, BrightPoints, bands="nir=1", progress=False)
    # a correct map still works
    assert len(gd.detect(p, NamedBands, bands="nir=1,red=2,green=3", progress=False)) == 1


@pytest.mark.parametrize("bands", ["0", "-1", "nir=0,red=1,green=2", "nir=-2,red=1,green=2", (0,), {"nir": 0}])
def test_zero_and_negative_band_indexes_say_1_based(tmp_path, bands):
    p = _tif(tmp_path / "b.tif", np.stack([_spots()] * 3), transform=from_origin(500000, 4200000, 1, 1))
    det = BrightPoints if not (isinstance(bands, dict) or "=" in str(bands)) else NamedBands
    with pytest.raises(GeodetectError, match="1-based"):
        gd.detect(p, det, bands=bands, progress=False)


def test_band_errors_on_the_cli_name_the_file_its_bands_and_the_option(tmp_path, capsys):
    from geodetect.cli import main

    p = _tif(tmp_path / "one.tif", _spots(), transform=from_origin(500000, 4200000, 0.1, 0.1))
    out = tmp_path / "o" / "x.parquet"
    assert main(["detect", p, "-d", "sea-lion-counter", "--out", str(out), "--no-progress"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.count("\n") == 0 and line.startswith("error: ")
    assert p in line and "the file has 1 band(s) (1=gray)" in line and "--bands" in line
    assert not out.exists()


# =========================================================================== SQL


@pytest.mark.parametrize("query, words", [
    ("COPY (SELECT 1 AS a) TO '{target}'", "'COPY' refused"),
    ("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'", "'CREATE' refused"),
    ("SELECT * FROM '{parquet}'", "reads the file"),
    ('SELECT * FROM "{parquet}"', "not one of the registered tables"),
    ("SELECT * FROM t, '{parquet}'", "reads the file"),
    ("SELECT * FROM t JOIN '{parquet}' p ON true", "reads the file"),
    ("SELECT * FROM t WHERE a IN (SELECT a FROM '{parquet}')", "reads the file"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables"),
    ("SELECT 1; COPY (SELECT 1) TO '{target}'", "more than one statement"),
    ("SET datafusion.execution.batch_size = 1", "'SET' refused"),
    ("INSERT INTO t VALUES (3)", "'INSERT' refused"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{target}'", "'EXPLAIN' refused"),
    ("/* hi */ COPY (SELECT 1) TO '{target}'", "'COPY' refused"),
    ("WITH x AS (SELECT 1 AS a) INSERT INTO t SELECT * FROM x", "holds INSERT"),
])
def test_sql_is_read_only_over_registered_tables(tmp_path, query, words):
    import sedonadb  # noqa: F401 - a dependency: missing is a failure, not a skip
    import pandas as pd

    parquet = tmp_path / "secret.parquet"
    pd.DataFrame({"a": [7]}).to_parquet(parquet)
    target = tmp_path / "written.csv"
    q = query.format(target=target, parquet=parquet)
    with pytest.raises(ConfigError, match=words):
        gd.sql(q, t=pd.DataFrame({"a": [1, 2]}))
    assert not target.exists()


def test_sql_read_only_queries_still_run_and_the_opt_in_lifts_the_guard(tmp_path):
    import sedonadb  # noqa: F401 - a dependency: missing is a failure, not a skip
    import pandas as pd

    t = pd.DataFrame({"a": [1, 2]})
    got = gd.sql("WITH c AS (SELECT a FROM t) SELECT c.a, 'x' AS s FROM c, t u WHERE c.a = u.a ORDER BY c.a", t=t)
    assert got["a"].tolist() == [1, 2] and got["s"].tolist() == ["x", "x"]
    assert gd.sql("VALUES (1), (2)", t=t).shape == (2, 1)
    parquet = tmp_path / "f.parquet"
    pd.DataFrame({"a": [7]}).to_parquet(parquet)
    assert gd.sql(f"SELECT * FROM '{parquet}'", t=t, allow_files=True)["a"].tolist() == [7]


def test_sql_cli_refuses_copy_and_allow_files_opts_in(tmp_path):
    import sedonadb  # noqa: F401 - a dependency: missing is a failure, not a skip
    import pandas as pd

    tab = tmp_path / "t.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(tab)
    target = tmp_path / "pwned.csv"
    q = f"COPY (SELECT 1 AS a) TO '{target}'"
    proc = subprocess.run(CLI + ["sql", q, "--table", f"t={tab}"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: SQL statement 'COPY' refused")
    assert proc.stderr.count("\n") == 1 and "--allow-files" in proc.stderr and not target.exists()
    proc = subprocess.run(CLI + ["sql", q, "--table", f"t={tab}", "--allow-files"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert target.exists()


# =========================================================================== every CLI command, every option


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """One good input of each kind; the bad values are put in one at a time."""
    import geopandas as gpd
    import shapely

    d = tmp_path_factory.mktemp("inputs")
    scene = _tif(d / "scene.tif", np.stack([_spots()] * 3), transform=from_origin(500000, 4200000, 0.1, 0.1))
    dets = gpd.GeoDataFrame({"scene_id": ["scene"], "class_name": ["pups"], "score": [0.9]},
                            geometry=[shapely.Point(500002, 4199998)], crs=UTM)
    dets.to_parquet(d / "dets.parquet")
    regions = gpd.GeoDataFrame({"fips": ["01"], "name": ["A"]},
                               geometry=[shapely.box(499000, 4199000, 501000, 4201000)], crs=UTM)
    regions.to_file(d / "regions.geojson")
    import pandas as pd

    pd.DataFrame({"fips": ["01"], "class_name": ["pups"], "count": [1]}).to_csv(d / "counts.csv", index=False)
    data = d / "data"
    data.mkdir()
    _tif(data / "s.tif", np.stack([_spots()] * 3), transform=from_origin(500000, 4200000, 0.1, 0.1))
    dets.to_file(data / "s_truth.geojson")
    (d / "text.parquet").write_text("not parquet")
    (d / "afolder").mkdir()
    return {"scene": scene, "dets": str(d / "dets.parquet"), "regions": str(d / "regions.geojson"),
            "counts": str(d / "counts.csv"), "data": str(data), "text": str(d / "text.parquet"),
            "folder": str(d / "afolder"), "missing": str(d / "missing.tif")}


S, D, R, C = "{scene}", "{dets}", "{regions}", "{counts}"
DET = ["detect", S, "-d", "sea-lion-counter", "--out", "{out}/x.parquet", "--no-progress"]
EV = ["evaluate", "sea-lion-counter", "--data", "{data}"]

#: (command, option, argv, words the one error line must hold); argv placeholders: {out} is a fresh empty folder
BAD = [
    ("detect", "scenes", ["detect", "{missing}", "-d", "sea-lion-counter", "--out", "{out}/x.parquet"], "no such file"),
    ("detect", "scenes", ["detect", "{text}", "-d", "sea-lion-counter", "--out", "{out}/x.parquet"], "text.parquet"),
    ("detect", "--detector", ["detect", S, "-d", "nope", "--out", "{out}/x.parquet"], "nope"),
    ("detect", "--out", ["detect", S, "-d", "sea-lion-counter", "--out", "{out}/x.xyz"], "x.xyz"),
    ("detect", "--resume", ["detect", S, "-d", "sea-lion-counter", "--out", "{out}/x.parquet", "--resume"], "--resume"),
    ("detect", "--fail-fast", DET[:1] + ["{missing}"] + DET[2:] + ["--fail-fast"], "missing.tif"),
    ("detect", "--tile-size", DET + ["--tile-size", "abc"], "--tile-size"),
    ("detect", "--tile-size", DET + ["--tile-size", "0"], "tile size"),
    ("detect", "--tile-size", DET + ["--tile-size", "1000000"], "--tile-size"),
    ("detect", "--overlap", DET + ["--overlap", "-1"], "overlap"),
    ("detect", "--overlap", DET + ["--overlap", "x"], "--overlap"),
    ("detect", "--batch-size", DET + ["--batch-size", "0"], "batch size"),
    ("detect", "--batch-size", DET + ["--batch-size", "1.5"], "--batch-size"),
    ("detect", "--batch-size", DET + ["--batch-size", "100000000"], "--batch-size"),
    ("detect", "--bands", DET + ["--bands", "0,1,2"], "1-based"),
    ("detect", "--bands", DET + ["--bands", "1,2"], "--bands"),
    ("detect", "--bands", DET + ["--bands", ","], "--bands"),
    ("detect", "--bands", DET + ["--bands", "red=1,2,3"], "mixes"),
    ("detect", "--bands", DET + ["--bands", "nir=1,red=2,grene=3"], "by index"),
    ("detect", "--bands", ["detect", S, "-d", "water-expert-optical", "--out", "{out}/x.parquet", "--bands",
                           "green=1,nri=2"], "'nri'"),
    ("detect", "--option", ["detect", S, "-d", "water-expert-optical", "--out", "{out}/x.parquet", "-O", "fixed=abc"],
     "fixed"),
    ("detect", "--option", DET + ["-O", "nosuch=1"], "accept="),
    ("detect", "--option", DET + ["-O", "noequals"], "KEY=VALUE"),
    ("detect", "--crs", DET + ["--crs", "EPSG:999999"], "--crs"),
    ("detect", "--bounds", DET + ["--crs", UTM, "--bounds", "nan", "0", "1", "1"], "finite"),
    ("detect", "--bounds", DET + ["--crs", UTM, "--bounds", "10", "0", "5", "1"], "LEFT"),
    ("detect", "--bounds", DET + ["--crs", UTM, "--bounds", "0", "0", "0", "1"], "LEFT"),
    ("detect", "--bounds", DET + ["--bounds", "0", "0", "1", "1"], "--crs"),
    ("detect", "--bounds", DET + ["--bounds", "0", "0", "1"], "--bounds"),
    ("detect", "--crs-out", DET + ["--crs-out", "EPSG:999999"], "--crs-out"),
    ("detect", "--crs-out", DET + ["--crs-out", "nonsense"], "--crs-out"),
    ("detect", "--no-progress", ["detect", S, "--no-progress"], "--detector"),
    ("detect", "--quiet", DET + ["-q", "--bands", "0"], "1-based"),
    ("detectors", "action", ["detectors", "nope"], "invalid choice"),
    ("detectors", "name", ["detectors", "info", "nope"], "nope"),
    ("detectors", "name", ["detectors", "info"], "needs a detector name"),
    ("detectors", "--onnx", ["detectors", "export", "nope", "--onnx", "--out", "{out}/e"], "nope"),
    ("detectors", "--out", ["detectors", "export", "water-expert-optical", "--out", "{text}"], "--onnx"),
    ("evaluate", "detector", ["evaluate", "nope", "--data", "{data}"], "nope"),
    ("evaluate", "--data", ["evaluate", "sea-lion-counter", "--data", "{missing}"], "not a folder"),
    ("evaluate", "--data", ["evaluate", "sea-lion-counter", "--data", "{out}"], "no scenes"),
    ("evaluate", "--reference", EV + ["--reference", "nope"], "nope"),
    ("evaluate", "--grouping", EV + ["--grouping", "three-class"], "grouping"),
    ("evaluate", "--grouping", ["evaluate", "land-use-classifier", "--data", "{data}", "--grouping", "nope"],
     "no grouping 'nope'"),
    ("evaluate", "--bands", EV + ["--bands", "0,1,2"], "1-based"),
    ("evaluate", "--option", EV + ["-O", "bogus=1"], "bogus"),
    ("evaluate", "--iou", EV + ["--iou", "1.5"], "--iou"),
    ("evaluate", "--iou", EV + ["--iou", "nan"], "--iou"),
    ("evaluate", "--iou", EV + ["--iou", "x"], "--iou"),
    ("evaluate", "--radius", EV + ["--radius", "-1"], "--radius"),
    ("evaluate", "--radius", EV + ["--radius", "inf"], "--radius"),
    ("evaluate", "--json", EV + ["--json", "{folder}"], "is a folder"),
    ("evaluate", "--json", EV + ["--json", "{text}/m.json"], "is a file"),
    ("counts", "detections", ["counts", "{missing}", "--out", "{out}/s.csv"], "no such file"),
    ("counts", "detections", ["counts", "{text}", "--out", "{out}/s.csv"], "text.parquet"),
    ("counts", "--out", ["counts", D, "--out", "{out}/s.parquet"], ".csv"),
    ("counts", "--out", ["counts", D, "--out", "{folder}"], ".csv"),
    ("simulate", "out", ["simulate", "{out}/x.png"], "GeoTIFF"),
    ("simulate", "--kind", ["simulate", "{out}/x.tif", "--kind", "nope"], "nope"),
    ("simulate", "--scenes", ["simulate", "{out}/d", "--scenes", "0"], "--scenes"),
    ("simulate", "--size", ["simulate", "{out}/x.tif", "--size", "0", "10"], "--size"),
    ("simulate", "--size", ["simulate", "{out}/x.tif", "--size", "-5", "10"], "--size"),
    ("simulate", "--size", ["simulate", "{out}/x.tif", "--size", "100000", "100000"], "--size"),
    ("simulate", "--gsd", ["simulate", "{out}/x.tif", "--gsd", "0"], "--gsd"),
    ("simulate", "--gsd", ["simulate", "{out}/x.tif", "--gsd", "nan"], "--gsd"),
    ("simulate", "--crs", ["simulate", "{out}/x.tif", "--crs", "EPSG:999999"], "--crs"),
    ("simulate", "--center", ["simulate", "{out}/x.tif", "--center", "500", "0"], "not on the Earth"),
    ("simulate", "--center", ["simulate", "{out}/x.tif", "--center", "0", "inf"], "not on the Earth"),
    ("simulate", "--objects", ["simulate", "{out}/x.tif", "--objects", "-3"], "--objects"),
    ("simulate", "--seed", ["simulate", "{out}/x.tif", "--seed", "-1"], "--seed"),
    ("simulate", "--seed", ["simulate", "{out}/x.tif", "--seed", "x"], "--seed"),
    ("aggregate", "detections", ["aggregate", "{missing}", "-r", R, "--by", "fips"], "no such file"),
    ("aggregate", "--regions", ["aggregate", D, "-r", "{missing}", "--by", "fips"], "missing.tif"),
    ("aggregate", "--by", ["aggregate", D, "-r", R, "--by", "nope"], "nope"),
    ("aggregate", "--name-col", ["aggregate", D, "-r", R, "--by", "fips", "--name-col", "nope"], "nope"),
    ("aggregate", "--engine", ["aggregate", D, "-r", R, "--by", "fips", "--engine", "nope"], "invalid choice"),
    ("aggregate", "--out", ["aggregate", D, "-r", R, "--by", "fips", "--out", "{out}/c.geojson"], ".csv or .parquet"),
    ("sql", "query", ["sql", "COPY (SELECT 1) TO '{out}/x.csv'", "--table", f"d={D}"], "'COPY' refused"),
    ("sql", "query", ["sql", "SELECT * FROM '{dets}'", "--table", f"d={D}"], "reads the file"),
    ("sql", "--table", ["sql", "SELECT 1", "--table", "noequals"], "NAME=PATH"),
    ("sql", "--table", ["sql", "SELECT 1", "--table", "d={missing}"], "no such file"),
    ("sql", "--table", ["sql", "SELECT 1", "--table", f"1d={D}"], "not a plain SQL identifier"),
    ("sql", "--out", ["sql", "SELECT 1 AS a", "--table", f"d={D}", "--out", "{out}/x.txt"], "x.txt"),
    ("heatmap", "detections", ["heatmap", "{missing}", "--out", "{out}/h.csv"], "no such file"),
    ("heatmap", "--resolution", ["heatmap", D, "--resolution", "99", "--out", "{out}/h.csv"], "0 to 15"),
    ("heatmap", "--resolution", ["heatmap", D, "--resolution", "x", "--out", "{out}/h.csv"], "--resolution"),
    ("heatmap", "--out", ["heatmap", D, "--out", "{out}/h.txt"], "h.txt"),
    ("map", "detections", ["map", "{missing}", "--out", "{out}/m.html"], "no such file"),
    ("map", "--out", ["map", D, "--out", "{folder}"], "afolder"),
    ("map", "--regions", ["map", D, "--out", "{out}/m.html", "-r", "{missing}"], "missing.tif"),
    ("map", "--by", ["map", D, "--out", "{out}/m.html", "-r", R, "--by", "nope"], "nope"),
    ("map", "--name-col", ["map", D, "--out", "{out}/m.html", "-r", R, "--by", "fips", "--name-col", "nope"], "nope"),
    ("map", "--choropleth", ["map", D, "--out", "{out}/m.html", "--choropleth", "x"], "invalid choice"),
    ("map", "--hexbins", ["map", D, "--out", "{out}/m.html", "--hexbins", "99"], "0 to 15"),
    ("map", "--no-hexbins", ["map", D, "--out", "{out}/m.html", "--hexbins", "5", "--no-hexbins"], "contradict"),
    ("map", "--max-features", ["map", D, "--out", "{out}/m.html", "--max-features", "0"], "max_features"),
    ("map", "--seed", ["map", D, "--out", "{out}/m.html", "--seed", "x"], "--seed"),
    ("map", "--basemap", ["map", D, "--out", "{out}/m.html", "--basemap", "x"], "invalid choice"),
    ("map", "--offline", ["map", D, "--out", "{out}/m.html", "--offline", "--assets", "{missing}"], "missing.tif"),
    ("map", "--assets", ["map", D, "--out", "{out}/m.html", "--offline", "--assets", "{folder}"], "afolder"),
    ("map", "--engine", ["map", D, "--out", "{out}/m.html", "--engine", "x"], "invalid choice"),
    ("quicklook", "scene", ["quicklook", "{missing}", D, "--out", "{out}/q.png"], "no such file"),
    ("quicklook", "detections", ["quicklook", S, "{missing}", "--out", "{out}/q.png"], "no such file"),
    ("quicklook", "--out", ["quicklook", S, D, "--out", "{out}/q.jpg"], ".png"),
    ("quicklook", "--bands", ["quicklook", S, D, "--out", "{out}/q.png", "--bands", "1,2"], "1 band"),
    ("quicklook", "--bands", ["quicklook", S, D, "--out", "{out}/q.png", "--bands", "0"], "1-based"),
    ("quicklook", "--max-size", ["quicklook", S, D, "--out", "{out}/q.png", "--max-size", "0"], "max_size"),
    ("quicklook", "--fill", ["quicklook", S, D, "--out", "{out}/q.png", "--fill", "x"], "invalid choice"),
    ("quicklook-counts", "counts", ["quicklook-counts", "{missing}", "--out", "{out}/c.png"], "missing.tif"),
    ("quicklook-counts", "--out", ["quicklook-counts", C, "--out", "{out}/c.jpg"], ".png"),
    ("quicklook-counts", "--by", ["quicklook-counts", C, "--out", "{out}/c.png", "--by", "nope"], "nope"),
    ("quicklook-counts", "--top", ["quicklook-counts", C, "--out", "{out}/c.png", "--top", "0"], "top"),
]

#: options that take no value, or any text: there is no bad value to give them
NO_BAD_VALUE = {("map", "--title"), ("quicklook", "--title"), ("map", "--no-heatmap"), ("sql", "--allow-files"),
                ("detect", "--no-progress")}


def _subcommands():
    from geodetect.cli import _parser

    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _options_of(command: str) -> set:
    sp = _subcommands()[command]
    return {a.dest if not a.option_strings else max(a.option_strings, key=len) for a in sp._actions}


def test_every_option_of_every_command_has_a_bad_value_case():
    covered = {(c, o) for c, o, _, _ in BAD}
    missing = []
    for name, sp in _subcommands().items():
        for a in sp._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            opt = a.dest if not a.option_strings else max(a.option_strings, key=len)
            if (name, opt) not in covered and (name, opt) not in NO_BAD_VALUE:
                missing.append((name, opt))
    assert not missing, f"CLI options without a bad-value case in BAD: {missing}"


@pytest.mark.parametrize("command, option, argv, words", BAD, ids=[f"{c} {o} {i}" for i, (c, o, _, _) in enumerate(BAD)])
def test_bad_value_gives_one_error_line_exit_2_nothing_written(tmp_path, inputs, capsys, command, option, argv, words):
    from geodetect.cli import main

    if option not in _options_of(command):
        pytest.skip(f"`geodetect {command}` has no {option} in this checkout")
    out = tmp_path / "out"
    out.mkdir()
    args = [a.format(out=out, **inputs) for a in argv]
    try:
        rc = main(args)
    except SystemExit as exc:  # argparse's own errors
        rc = exc.code
    err = capsys.readouterr().err
    ctx = f"\nargv={args}\nrc={rc}\nstderr={err!r}"
    lines = [ln for ln in err.strip("\n").splitlines() if not ln.startswith("note: ")]
    assert rc == 2, ctx
    assert len(lines) == 1 and lines[0].startswith("error: "), ctx
    assert "Traceback" not in err and "internal error" not in err, ctx
    assert words in lines[0], f"the error line does not say {words!r}{ctx}"
    assert sorted(p.name for p in out.rglob("*")) == [], f"something was written{ctx}"


def test_a_real_traceback_becomes_one_line_and_v_shows_it(tmp_path, monkeypatch, capsys):
    """The last resort: an unexpected exception (a bug) is one line, exit 2; -v shows the traceback."""
    import geodetect.cli as cli

    def boom(args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(cli, "_cmd_detectors", boom)
    assert cli.main(["detectors"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ZeroDivisionError: boom)" in err
    with pytest.raises(ZeroDivisionError):
        cli.main(["-v", "detectors"])


def test_detectors_info_lists_options(capsys):
    from geodetect.cli import main

    assert main(["detectors", "info", "water-expert-optical"]) == 0
    out = capsys.readouterr().out
    assert "options (-O)" in out and "fixed=None" in out


# =========================================================================== scratch and concurrent runs


_SLOW_SCRIPT = """
import sys, time
import numpy as np
from geodetect.plugins import Detector, DetectorSpec, Mask, Task, register_detector
from geodetect.stitch import MaskMosaic
MaskMosaic.MEMORY_BUDGET = 1  # blend on disk whatever the scene's size


@register_detector
class SlowSeg(Detector):
    spec = DetectorSpec(name="test-slow-seg", version="0.0.1", task=Task.SEGMENTATION, classes=("water",),
                        bands=(1,), tile_size=256, overlap=0)

    def predict(self, tiles):
        time.sleep(0.5)  # 8 batches: ~4 s, so the signal always lands mid-run on a fast machine
        return [Mask(np.full(t.shape[:2] + (1,), 0.9, np.float32)) for t in tiles]


from geodetect.cli import main
sys.exit(main(["detect", {scene!r}, "-d", "test-slow-seg", "--out", {out!r}, "--no-progress"]))
"""


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_segmentation_run_removes_its_scratch(tmp_path, sig, code):
    scene = _tif(tmp_path / "big.tif", np.full((1, 2048, 2048), 100, np.uint8),
                 transform=from_origin(500000, 4200000, 1, 1))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    code_text = _SLOW_SCRIPT.format(tests=str(Path(__file__).parent), scene=scene, out=str(tmp_path / "w.parquet"))
    # a run started in the background (nohup, `cmd &`) inherits SIGINT ignored, and Python then keeps
    # ignoring it: give the child the default disposition a terminal user's run has
    proc = subprocess.Popen([sys.executable, "-c", code_text], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while time.time() < deadline and not list(scratch.glob("geodetect-mosaic-*/blend.tif")):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert list(scratch.glob("geodetect-mosaic-*/blend.tif")), "the on-disk blend never appeared"
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1].startswith("error: "), err
    assert "Traceback" not in err
    assert list(scratch.iterdir()) == [], f"scratch left behind: {list(scratch.rglob('*'))}"
    assert not (tmp_path / "w.parquet").exists()


def test_scratch_of_a_killed_process_is_swept(tmp_path):
    from geodetect import stitch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    old = tmp_path / f"{stitch.SCRATCH_PREFIX}{pid}-abc"
    old.mkdir()
    (old / "blend.tif").write_bytes(b"x")
    fresh = tmp_path / f"{stitch.SCRATCH_PREFIX}{pid}-def"
    fresh.mkdir()
    alive = tmp_path / f"{stitch.SCRATCH_PREFIX}{os.getppid()}-ghi"
    alive.mkdir()
    past = time.time() - 2 * stitch.STALE_SCRATCH_S
    for p in (old, old / "blend.tif", alive):
        os.utime(p, (past, past))
    assert stitch.sweep_stale_scratch(str(tmp_path)) == [str(old)]
    assert not old.exists() and fresh.exists() and alive.exists()


def test_second_run_into_a_locked_folder_is_refused(tmp_path):
    from geodetect.runs import LOCK, _RunLock, run

    p = _tif(tmp_path / "a.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from geodetect.runs import _RunLock\n"
        f"with _RunLock(Path({str(out)!r})):\n    print('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"another run is writing this folder \\(pid {holder.pid}\\)"):
            run([p], BrightPoints, out, progress=False)
        proc = subprocess.run(CLI + ["detect", p, "-d", "water-expert-optical", "--out", str(out), "--no-progress"],
                              capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "another run" in proc.stderr
        assert not (out / "manifest.json").exists()
    finally:
        holder.kill()
        holder.wait()
    s = run([p], BrightPoints, out, progress=False)  # the lock died with its holder
    assert s.ok and s.detections == 1
    assert (out / LOCK).exists()
    with _RunLock(out):  # and was released at the end of the run
        pass


def test_two_runs_at_once_never_lose_a_scene(tmp_path):
    """Two real processes into one new folder: one is refused (exit 2) or both land; never one scene silently."""
    a = _tif(tmp_path / "a.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    b = _tif(tmp_path / "b.tif", _spots(), transform=from_origin(600000, 4200000, 1, 1))
    out = tmp_path / "run"
    code = ("import sys; sys.path.insert(0, {t!r}); from detectors import BrightPoints; from geodetect.runs import run\n"
            "import time; time.sleep(0.2)\n"
            "try:\n    s = run([{p!r}], BrightPoints, {o!r}, progress=False)\nexcept Exception as e:\n"
            "    print('refused', e); sys.exit(2)\n")
    t = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", code.format(t=t, p=p, o=str(out))], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in (a, b)]
    results = [(p.wait(timeout=120), p.communicate()) for p in procs]
    rcs = sorted(r for r, _ in results)
    import geopandas as gpd

    final = gpd.read_parquet(out / "detections.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    done = sorted(k for k, v in manifest["scenes"].items() if v["status"] == "done")
    if rcs == [0, 0]:
        assert done == ["a", "b"] and sorted(final.scene_id) == ["a", "b"]
    else:
        assert rcs == [0, 2], results
        said = "".join(o for _, (o, _) in results)
        assert "another run is writing this folder" in said or "holds an earlier run" in said, said
        assert len(done) == 1 and sorted(final.scene_id) == done


def test_resume_over_a_corrupt_part_redoes_that_scene(tmp_path):
    from geodetect.runs import run

    p = _tif(tmp_path / "a.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    out = tmp_path / "run"
    first = run([p], BrightPoints, out, progress=False)
    part = next((out / "parts").glob("*.parquet"))
    part.write_bytes(b"PAR1 torn")
    again = run([p], BrightPoints, out, resume=True, progress=False)
    assert again.done == ["a"] and not again.skipped and again.detections == first.detections == 1


# =========================================================================== empty answers


def test_quicklook_of_detections_nowhere_on_the_scene_is_refused(tmp_path):
    import matplotlib  # noqa: F401 - a dependency: missing is a failure, not a skip
    import geopandas as gpd
    import shapely

    p = _tif(tmp_path / "s.tif", np.stack([_spots()] * 3), transform=from_origin(500000, 4200000, 1, 1))
    far = gpd.GeoDataFrame({"class_name": ["a"] * 50}, geometry=[shapely.Point(10, 10)] * 50, crs="EPSG:4326")
    with pytest.raises(GeoreferenceError, match="none of the 50 detections lies on this scene"):
        gd.quicklook(p, far, tmp_path / "q.png")
    assert not (tmp_path / "q.png").exists()
    near = gpd.GeoDataFrame({"class_name": ["a", "a"]}, geometry=[shapely.Point(500010, 4199990), shapely.Point(0, 0)],
                            crs=UTM)
    with pytest.warns(UserWarning, match="1 of 2 detections are off the scene"):
        gd.quicklook(p, near, tmp_path / "q.png")
    assert (tmp_path / "q.png").exists()


def test_evaluate_against_truth_of_other_classes_is_refused(tmp_path):
    import geopandas as gpd
    import shapely

    p = _tif(tmp_path / "s.tif", _spots(), transform=from_origin(500000, 4200000, 1, 1))
    gpd.GeoDataFrame({"class_name": ["car"]}, geometry=[shapely.Point(500022, 4199978)], crs=UTM).to_file(
        tmp_path / "s_truth.geojson")
    from geodetect.evaluate import evaluate

    with pytest.raises(ConfigError, match=r"none of the 1 true objects is of a class of test-bright-points \(truth: car"):
        evaluate(BrightPoints, tmp_path)
    gpd.GeoDataFrame({"class_name": []}, geometry=[], crs=UTM).to_file(tmp_path / "s_truth.geojson")
    with pytest.raises(ConfigError, match="no true objects"):
        evaluate(BrightPoints, tmp_path)


def test_evaluate_json_never_holds_nan(tmp_path):
    from geodetect.cli import _json_safe

    doc = _json_safe({"a": float("nan"), "b": [np.float32("inf"), 1.0], "c": np.int64(3)})
    assert json.dumps(doc, allow_nan=False) == '{"a": null, "b": [null, 1.0], "c": 3}'


def test_float64_scene_gets_a_note_about_scaling(tmp_path):
    img = _spots().astype(np.float64) / 255
    p = _tif(tmp_path / "f64.tif", img, transform=from_origin(500000, 4200000, 1, 1))
    dets = gd.detect(p, BrightPoints, progress=False)
    notes = dets.attrs["geodetect"][0]["notes"]
    assert len(dets) == 1 and any("float64 pixels are given to the detector as they are" in n for n in notes)


def test_crs_without_bounds_on_an_unplaced_file_names_the_cli_flags(tmp_path):
    p = _tif(tmp_path / "raw.tif", _spots(), crs=None)
    with pytest.raises(GeoreferenceError, match="--bounds LEFT BOTTOM RIGHT TOP and --crs"):
        gd.detect(p, BrightPoints, crs=UTM, progress=False)


# =========================================================================== fuzz: geotransforms and band maps

FUZZ_EXAMPLES = int(os.environ.get("GEODETECT_FUZZ_EXAMPLES", "40"))


def _fuzz_settings():
    return settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])



_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e7, 1e7), st.sampled_from([0.0, 1.0, -1.0]))


@_fuzz_settings()
@given(coefs=st.tuples(_num, _num, _num, _num, _num, _num), use_bounds=st.booleans())
def test_fuzz_geotransforms_give_placed_detections_or_a_geodetect_error(tmp_path, coefs, use_bounds):
    """Any geotransform (or bounds): finite, on-scene detections in lon/lat, or a GeodetectError; never NaN rows."""
    from affine import Affine

    img = _spots(32)
    img[10:13, 10:13] = 250
    if use_bounds:
        p = _tif(tmp_path / "fz.tif", img, crs=None)
        kw = dict(crs=UTM, bounds=coefs[:4])
    else:
        p = _tif(tmp_path / "fz.tif", img, transform=from_origin(500000, 4200000, 1, 1))
        gt = ", ".join(repr(v) for v in (coefs[2], coefs[0], coefs[1], coefs[5], coefs[3], coefs[4]))
        p = _vrt_with_geotransform(tmp_path, gt, name="fz.vrt")
        kw = {}
        try:
            with rasterio.open(p) as ds:
                if ds.transform == Affine.identity():
                    return  # GDAL dropped it: "no geotransform", covered elsewhere
        except Exception:  # noqa: BLE001 - GDAL refused the VRT itself
            return
    try:
        dets = gd.detect(p, BrightPoints, progress=False, **kw)
    except GeodetectError:
        return
    b = dets.geometry.bounds.to_numpy()
    assert np.all(np.isfinite(b)), dets
    assert (np.abs(b[:, [1, 3]]) <= 90).all() and (np.abs(b[:, [0, 2]]) <= 180).all()
    assert not dets.geometry.is_empty.any()


_names = st.sampled_from(["nir", "red", "green", "grene", "blue", "NIR", "", "1", "swir"])
_idx = st.one_of(st.integers(-3, 6), st.sampled_from(["x", "1.5", "", "+2"]))


@_fuzz_settings()
@given(pairs=st.lists(st.tuples(_names, _idx), min_size=0, max_size=5), as_text=st.booleans())
def test_fuzz_band_maps_select_exactly_the_mapped_bands_or_refuse(tmp_path, pairs, as_text):
    """A band map either selects exactly the bands it names for the names the detector wants, or is refused."""
    from geodetect.io.raster import open_scene

    p = tmp_path / "bm.tif"
    if not p.exists():
        _tif(p, np.zeros((4, 8, 8), np.uint8), transform=from_origin(500000, 4200000, 1, 1), photometric="RGB",
             alpha="unspecified")
    if as_text:
        override = ",".join(f"{k}={v}" for k, v in pairs)
    else:
        override = {k: v for k, v in pairs}
    wanted = ("nir", "red", "green")
    try:
        with open_scene(str(p), bands=wanted, band_override=override) as scene:
            idx = scene.indexes
    except GeodetectError:
        return
    mapping = {str(k).lower(): int(v) for k, v in pairs}
    assert set(mapping) <= set(wanted)  # no unknown key was ignored
    assert all(1 <= i <= 4 for i in idx)
    for name, i in zip(wanted, idx):
        if name in mapping:
            assert i == mapping[name]  # what was mapped is used, exactly
