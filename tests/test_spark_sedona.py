"""Detections as Sedona spatial DataFrames: GeoParquet written by Sedona, H3 heat maps, change between runs.

All on the shared `spark` fixture (Sedona registered), each compared with the local geodetect result.
"""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

import geodetect as gd
from detectors import BrightBoxes, BrightPoints, MeanLabel, spots
from geopandas.testing import assert_geodataframe_equal

from geodetect.testing import assert_detections_equal

gds = pytest.importorskip("geodetect.spark")

COUNTIES = Path(__file__).parent.parent / "sample_data" / "counties_demo.geojson"


def _grid(dets, n=3):
    x0, y0, x1, y1 = dets.total_bounds
    xs, ys = np.linspace(x0 - 1e-6, x1 + 1e-6, n + 1), np.linspace(y0 - 1e-6, y1 + 1e-6, n + 1)
    cells = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for i in range(n) for j in range(n)]
    return gpd.GeoDataFrame({"cell": [f"c{k}" for k in range(len(cells))]}, geometry=cells, crs="EPSG:4326")


def _frame(spark, dets):
    """A local detections GeoDataFrame as a Spark DataFrame with a Sedona geometry (SRID 4326)."""
    rows = [(r.detector, r.detector_version, r.scene_id, r.class_name, float(r.score), bytes(w), float(r.area_m2))
            for r, w in zip(dets.itertuples(), shapely.to_wkb(dets.geometry.values))]
    sdf = spark.createDataFrame(rows, "detector string, detector_version string, scene_id string, class_name string, "
                                      "score float, geometry binary, area_m2 double")
    return gds._with_sedona_geometry(sdf, 4326)


@pytest.mark.slow
def test_write_geoparquet_with_sedona_reads_back_in_geopandas_and_sedonadb(spark, write_raster, tmp_path):
    scenes = [spots(write_raster, f"w{i}.tif", (260, 240), 30, 40 + i) for i in range(2)]
    local = gd.detect(scenes, BrightBoxes, progress=False)
    sdf = gds.detect(spark, scenes, BrightBoxes, block_rows=2)
    out = gds.write(sdf, tmp_path / "boxes.parquet")
    assert (Path(out) / "_SUCCESS").exists()
    meta = spark.read.format("geoparquet.metadata").load(out).select("columns").collect()[0].columns
    assert meta["geometry"]["encoding"] == "WKB"
    back = gpd.read_parquet(out)
    assert back.crs == local.crs
    assert_detections_equal(back, local, tolerance=0)
    db = gd.sql("SELECT * FROM d", d=out)
    assert_detections_equal(db.set_crs(local.crs, allow_override=True), local, tolerance=0)
    assert_detections_equal(gds.to_geopandas(spark.read.format("geoparquet").load(out)), local, tolerance=0)


@pytest.mark.slow
def test_heatmap_with_sedona_h3_equals_gd_heatmap(spark):
    counties = gpd.read_file(COUNTIES)
    rng = np.random.default_rng(3)
    pts = list(counties.sample(25, random_state=2).geometry.sample_points(6, rng=rng).explode().values)
    aw = counties[counties.fips == "02016"].geometry.iloc[0]  # both sides of the antimeridian
    pts += [p.representative_point() for p in aw.geoms if abs(p.centroid.x) > 172][:6]
    pts += [shapely.box(-100.01, 40.0, -100.0, 40.01), shapely.box(179.99, 51.0, 180.0, 51.01)]  # polygons
    from geodetect.frames import make_detections

    dets = make_detections("x", "1", "s", rng.choice(["car", "bus"], len(pts)), np.ones(len(pts)), pts,
                           np.zeros(len(pts)), "EPSG:4326")
    for res in (4, 7):
        want = gd.heatmap(dets, resolution=res)
        got = gds.heatmap(_frame(spark, dets), resolution=res)
        assert_geodataframe_equal(got, want, check_less_precise=False)
        assert got.attrs["geodetect"] == want.attrs["geodetect"]
    plan = _frame(spark, dets).selectExpr("ST_H3CellIDs(geometry, 7, false)")._jdf.queryExecution().analyzed().toString()
    assert "sedona_sql.expressions.ST_H3CellIDs" in plan


@pytest.mark.slow
def test_change_on_spark_equals_gd_change(spark, write_raster):
    rng = np.random.default_rng(9)
    a = (rng.random((256, 256)) > 0.5).astype(np.uint8) * 200
    b = a.copy()
    b[:128, :96] = 255 - b[:128, :96]  # some tiles change class
    before_p, after_p = write_raster(a, name="before.tif"), write_raster(b, name="after.tif")
    before = gd.detect(before_p, MeanLabel, progress=False)
    after = gd.detect(after_p, MeanLabel, progress=False)
    regions = _grid(after, 2)
    want = gd.change(before, after, regions, by="cell")
    got = gds.change(gds.detect(spark, [before_p], MeanLabel), gds.detect(spark, [after_p], MeanLabel), regions,
                     by="cell")
    pd.testing.assert_frame_equal(got.deltas, want.deltas, check_exact=True)
    pd.testing.assert_frame_equal(got.transitions, want.transitions, check_exact=True)
    assert (got.matched, got.unmatched_before, got.unmatched_after) == (
        want.matched, want.unmatched_before, want.unmatched_after)
    assert want.transitions["changed"].any() and want.matched > 0


@pytest.mark.slow
def test_points_detected_on_spark_aggregate_like_local(spark, write_raster):
    scenes = [spots(write_raster, f"a{i}.tif", (300, 280), 60, 50 + i) for i in range(2)]
    local = gd.detect(scenes, BrightPoints, progress=False)
    sdf = gds.detect(spark, scenes, BrightPoints, block_rows=2)
    regions = _grid(local)
    want = gd.aggregate(local, regions, by="cell")
    for method in ("sedona", "strtree"):
        got = gds.aggregate(sdf, regions, by="cell", method=method)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)
    assert (want["count"] > 0).sum() >= 4


@pytest.mark.slow
def test_kepler_map_of_sedona_detections(spark, tmp_path):
    """to_kepler takes gds.detect's output as it is (Sedona geometry column) and maps the same detections."""
    from geodetect.viz import to_kepler

    counties = gpd.read_file(COUNTIES)
    from geodetect.frames import make_detections

    pts = list(counties.sample(10, random_state=4).geometry.sample_points(5, rng=4).explode().values)
    dets = make_detections("x", "1", "s", ["car"] * len(pts), np.ones(len(pts)), pts, np.zeros(len(pts)), "EPSG:4326")
    sdf = _frame(spark, dets)
    assert gds.as_wkb(sdf).schema["geometry"].dataType.simpleString() == "binary"
    out = to_kepler(sdf, tmp_path / "m.html", regions=COUNTIES, by="fips", hexbins=5)
    assert Path(out).exists() if out is not None else (tmp_path / "m.html").exists()
