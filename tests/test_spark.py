"""Spark: inference inside tasks, big scenes split in blocks without seams, the SQL table function."""

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

import geodetect as gd
from detectors import BrightBoxes, BrightPoints, MeanLabel
from geodetect.testing import assert_detections_equal

gds = pytest.importorskip("geodetect.spark")


def _spots(write_raster, name, shape, n, seed, half=2):
    rng = np.random.default_rng(seed)
    img = np.full(shape, 20, np.uint8)
    pts = rng.integers(8, np.array(shape[::-1]) - 8, (n, 2))
    for c, r in pts:
        img[r - half : r + half, c - half : c + half] = 250
    return write_raster(img, name=name)


def _to_gdf(sdf):
    pdf = sdf.toPandas()
    geom = shapely.from_wkb(pdf.pop("geometry").to_numpy())
    pdf = pdf.drop(columns=["block"])
    gdf = gpd.GeoDataFrame(pdf, geometry=geom, crs="EPSG:4326")
    return gdf[["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2"]]


@pytest.mark.slow
@pytest.mark.parametrize("det", [BrightPoints, BrightBoxes, MeanLabel], ids=["points", "boxes", "labels"])
def test_spark_matches_local_with_blocks(spark, write_raster, det):
    scenes = [_spots(write_raster, f"s{i}.tif", (300 + 37 * i, 280), 60, i) for i in range(3)]
    local = gd.detect(scenes, det, progress=False)
    units = gds.plan(scenes, det, block_rows=2)
    assert len(units) > len(scenes)  # scenes really were split into blocks
    sdf = gds.detect(spark, scenes, det, block_rows=2)
    assert sdf.columns[:7] == ["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2"]
    got = _to_gdf(sdf)
    assert_detections_equal(got, local, tolerance=1e-9)


@pytest.mark.slow
def test_spark_is_deterministic_per_unit(spark, write_raster):
    """A retried task recomputes the same rows: two runs give identical results."""
    scene = _spots(write_raster, "d.tif", (400, 400), 80, 7)
    a = _to_gdf(gds.detect(spark, [scene], BrightPoints, block_rows=1))
    b = _to_gdf(gds.detect(spark, [scene], BrightPoints, block_rows=3))
    assert_detections_equal(a, b)


@pytest.mark.slow
def test_sql_table_function_and_view(spark, write_raster, tmp_path):
    scene = _spots(write_raster, "u.tif", (200, 200), 10, 3)
    gd.register_detector(BrightPoints, replace=True)
    try:
        gds.register(spark, detections=gds.detect(spark, [scene], BrightPoints))
        n_view = spark.sql("SELECT COUNT(*) AS n FROM detections").collect()[0].n
        # the UDTF runs in a Python worker, which knows only installed detectors: use the built-in one
        from geodetect.simulate import make_scene

        rook = make_scene(tmp_path / "rookery" / "r1.tif", size=(512, 512), n_objects=12, seed=3).path
        pattern = str(tmp_path / "rookery" / "r*.tif")
        n_udtf = spark.sql(f"SELECT COUNT(*) AS n FROM geodetect_detect('sea-lion-counter', '{pattern}')").collect()[0].n
    finally:
        gd.plugins.unregister_detector(BrightPoints.spec.name)
    assert n_view == len(gd.detect(scene, BrightPoints, progress=False)) > 0
    assert n_udtf == len(gd.detect(rook, "sea-lion-counter", progress=False)) > 0


def test_plan_splits_big_scenes_by_tile_rows(write_raster):
    scene = write_raster(np.zeros((1000, 300), np.uint8))
    units = gds.plan([scene], BrightPoints, block_rows=4)
    rows = [(u[2], u[3]) for u in units]
    assert rows[0][0] == 0 and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    assert rows[-1][1] == len(set(range(0, 1000, 48))) or rows[-1][1] > rows[-1][0]


def test_units_one_per_partition_biggest_first(spark):
    planned = [(("a.tif", "a", 0, 2, 0), 20), (("b.tif", "b", 0, 9, 0), 90), (("c.tif", "c", 0, 4, 0), 40),
               (("c.tif", "c", 4, 8, 1), 40), (("d.tif", "d", 0, 0, 0), 0)]
    parts = gds._unit_frame(spark, planned).rdd.glom().collect()
    assert [len(p) for p in parts] == [1] * 5  # every unit its own task: no core gets two while one idles
    assert [p[0].scene_id for p in parts] == ["b", "c", "c", "a", "d"]
    assert [(p[0].r0, p[0].block) for p in parts[1:3]] == [(0, 0), (4, 1)]  # ties keep their order


def test_missing_sedona_is_reported_with_coordinates(spark, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="geodetect"):
        gds.register(spark)
    assert not gds.sedona_available(spark)
    assert "spark.jars.packages=org.apache.sedona:sedona-spark-shaded" in caplog.text


@pytest.mark.slow
def test_spark_aggregate_matches_sedonadb(spark, tmp_path):
    """Same counts on Spark (broadcast STRtree fallback) as on SedonaDB, border and antimeridian points included."""
    import geopandas as gpd

    from geodetect.frames import make_detections

    counties = gpd.read_file(Path(__file__).parent.parent / "sample_data" / "counties_demo.geojson")
    rng = np.random.default_rng(5)
    sample = counties.sample(40, random_state=1)
    pts = list(sample.geometry.sample_points(5, rng=rng).explode().values)
    # points on shared borders: vertices of county boundaries
    pts += [shapely.Point(c) for g in counties.geometry.values[:30] for c in list(shapely.get_coordinates(g)[:3])]
    # both sides of the antimeridian in Aleutians West
    aw = counties[counties.fips == "02016"].geometry.iloc[0]
    pts += [p.representative_point() for p in aw.geoms if abs(p.centroid.x) > 172][:6]
    classes = rng.choice(["car", "bus"], len(pts))
    dets = make_detections("x", "1", "s", classes, np.ones(len(pts)), pts, np.zeros(len(pts)), "EPSG:4326")
    local = gd.aggregate(dets, counties, by="fips")
    pdf = dets.assign(geometry=shapely.to_wkb(dets.geometry.values))
    sdf = spark.createDataFrame(
        [(r.detector, r.detector_version, r.scene_id, r.class_name, float(r.score), bytes(r.geometry), float(r.area_m2))
         for r in pdf.itertuples()],
        "detector string, detector_version string, scene_id string, class_name string, score float, geometry binary, area_m2 double",
    )
    remote = gds.aggregate(sdf, counties, by="fips")
    assert remote.attrs["geodetect"]["path"].startswith("broadcast")
    import pandas as pd

    pd.testing.assert_frame_equal(remote.reset_index(drop=True), local.reset_index(drop=True), check_exact=True)
    assert local["count"].sum() > 200


SEDONA_SCRIPT = """
import os, sys, json
import numpy as np, geopandas as gpd, shapely
from pyspark.sql import SparkSession
from sedona.spark import SedonaContext
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.jars", os.environ["SEDONA_JARS"]).getOrCreate())
spark = SedonaContext.create(spark)
import geodetect as gd
from geodetect import spark as gds
from geodetect.frames import make_detections
counties = gpd.read_file(sys.argv[1])
pts = list(counties.sample(30, random_state=1).geometry.sample_points(4, rng=1).explode().values)
dets = make_detections("x", "1", "s", ["car"] * len(pts), np.ones(len(pts)), pts, np.zeros(len(pts)), "EPSG:4326")
sdf = spark.createDataFrame([(r.detector, r.detector_version, r.scene_id, r.class_name, 1.0, bytes(w), 0.0)
                             for r, w in zip(dets.itertuples(), shapely.to_wkb(dets.geometry.values))],
                            "detector string, detector_version string, scene_id string, class_name string, "
                            "score float, geometry binary, area_m2 double")
assert gds.sedona_available(spark)
remote = gds.aggregate(sdf, counties, by="fips")
local = gd.aggregate(dets, counties, by="fips")
assert remote.attrs["geodetect"]["path"] == "sedona"
assert (remote["count"].to_numpy() == local["count"].to_numpy()).all()
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("SEDONA_JARS"),
                    reason="needs the Sedona Spark jars: set SEDONA_JARS to a comma-separated list of their paths "
                           "(sedona-spark-shaded-4.1_2.13-1.9.1.jar, geotools-wrapper-1.9.1-33.5.jar)")
def test_spark_aggregate_with_sedona_runs_the_same_sql():
    import subprocess
    import sys

    counties = Path(__file__).parent.parent / "sample_data" / "counties_demo.geojson"
    out = subprocess.run([sys.executable, "-c", SEDONA_SCRIPT, str(counties)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


RETRY_SCRIPT = """
import os, sys, json
os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"; os.environ["PYSPARK_PYTHON"] = sys.executable
sys.path.insert(0, sys.argv[1])
from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[2,3]").config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("OFF")
import numpy as np, shapely, geopandas as gpd
import geodetect as gd
from geodetect import spark as gds
from geodetect.testing import assert_detections_equal
from detectors import FlakyPoints
scenes = sys.argv[3:]
os.environ["GEODETECT_FLAKY_DIR"] = sys.argv[2]
pdf = gds.detect(spark, scenes, FlakyPoints, block_rows=2).toPandas()
got = gpd.GeoDataFrame(pdf.drop(columns=["geometry", "block"]), geometry=shapely.from_wkb(pdf["geometry"].to_numpy()),
                       crs="EPSG:4326")[["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2"]]
os.environ.pop("GEODETECT_FLAKY_DIR")  # the driver's local reference run must not fail
want = gd.detect(scenes, FlakyPoints, progress=False)
assert_detections_equal(got, want)
print(json.dumps({"rows": len(got), "failed_attempts": len(os.listdir(sys.argv[2]))}))
"""


@pytest.mark.slow
def test_failed_and_retried_tasks_give_no_duplicates(write_raster, tmp_path):
    """Two tasks fail mid-way and are retried: the result equals a local run exactly, no duplicates."""
    import json
    import subprocess
    import sys

    scenes = [_spots(write_raster, f"f{i}.tif", (320, 300), 50, 10 + i) for i in range(2)]
    marks = tmp_path / "marks"
    marks.mkdir()
    tests = str(Path(__file__).parent)
    env = {**os.environ, "GEODETECT_FLAKY_DIR": str(marks),
           "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", RETRY_SCRIPT, str(Path(__file__).parent), str(marks), *scenes],
                         capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["failed_attempts"] == 2  # two tasks failed mid-way and were retried
    assert res["rows"] > 50
