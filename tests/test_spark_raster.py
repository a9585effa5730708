"""The tile-level SQL functions on Sedona rasters (RS_DETECT_BBOXES, RS_SEGMENT, RS_CLASSIFY, RS_MAX_CONFIDENCE):
GeoTIFFs read with Sedona (binaryFile + RS_FromGeoTiff, tiled by RS_TileExplode), the functions run in SQL, their
results equal gd.detect on the same single tiles (each tile written by Sedona's RS_AsGeoTiff), and a join with
counties in the same query equals geopandas' join of the Python path. The built-in detector case is in
test_spark_thrift.py (over JDBC)."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

import geodetect as gd
from detectors import BrightBoxes, BrightMask, BrightPoints, MeanLabel

gds = pytest.importorskip("geodetect.spark")

COUNTIES = Path(__file__).parent.parent / "sample_data" / "counties_demo.geojson"


def _scene(path, *, bands=3, crs="EPSG:32610", transform=None, seed=0, shape=(200, 180)):
    """Band 1: dark with bright squares and one bright block (a 'bright' tile for the classifier); other bands noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    img = rng.integers(0, 120, (bands, h, w), dtype=np.uint8)
    img[0] = 20
    for c, r in rng.integers(6, np.array([w, h]) - 6, (35, 2)):
        img[0, r - 3 : r + 3, c - 3 : c + 3] = 250
    img[0, 64:128, 0:64] = 240  # one whole 64 x 64 tile bright
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=bands, dtype="uint8", crs=crs,
                       transform=transform or from_origin(500000, 4200000, 1.0, 1.0)) as dst:
        dst.write(img)
    return str(path)


def _tiles(spark, folder, view, size):
    spark.sql(f"CREATE OR REPLACE TEMP VIEW {view} AS SELECT path, x, y, tile FROM (SELECT path, "
              f"RS_TileExplode(RS_FromGeoTiff(content), {size}, {size}) FROM binaryFile.`{folder}`)")


@pytest.mark.slow
def test_rs_functions_on_sedona_tiles_equal_gd_detect_on_the_same_tiles(spark, tmp_path):
    src = tmp_path / "scenes"
    src.mkdir()
    _scene(src / "utm.tif", bands=3, seed=1)
    _scene(src / "geo.tif", bands=2, seed=2, crs="EPSG:4326", transform=from_origin(12.5, 41.9, 1e-5, 1e-5))
    gds.register(spark, detectors=[BrightBoxes, BrightPoints, BrightMask, MeanLabel])
    _tiles(spark, str(src), "rs_tiles", 64)
    rows = spark.sql(
        "SELECT path, x, y, RS_AsGeoTiff(tile) AS tif, RS_NumBands(tile) AS nb, "
        "RS_DETECT_BBOXES('test-bright-boxes', tile) AS boxes, RS_DETECT_BBOXES('test-bright-points', tile) AS pts, "
        "RS_SEGMENT('test-bright-mask', tile) AS seg, RS_CLASSIFY('test-mean-label', tile) AS cls, "
        "RS_MAX_CONFIDENCE(RS_CLASSIFY('test-mean-label', tile)) AS top FROM rs_tiles ORDER BY path, y, x").collect()
    assert len(rows) == 2 * 4 * 3 and {r.nb for r in rows} == {2, 3}
    n = {"boxes": 0, "pts": 0, "seg": 0, "bright": 0}
    for r in rows:
        tif = tmp_path / f"{Path(r.path).stem}_{r.x}_{r.y}.tif"  # the same tile, written by Sedona
        tif.write_bytes(bytes(r.tif))
        for field, det in (("boxes", BrightBoxes), ("pts", BrightPoints)):
            want = gd.detect(str(tif), det, progress=False)
            got = getattr(r, field)
            assert got.labels == [0] * len(want) and got.class_names == list(want["class_name"])
            assert np.allclose(got.confidence_scores, want["score"], atol=1e-6)
            assert shapely.equals_exact(shapely.from_wkt(got.bboxes_wkt), want.geometry.values, tolerance=1e-12).all()
            n[field] += len(want)
        want = gd.detect(str(tif), BrightMask, progress=False)
        seg = r.seg
        assert shapely.equals_exact(shapely.from_wkt(seg.geometries_wkt), want.geometry.values, tolerance=1e-12).all()
        assert np.allclose(seg.confidence_scores, want["score"], atol=1e-6) and seg.class_map == {"bright": 1}
        with rasterio.open(tif) as ds:
            band = ds.read(1)
            assert (seg.height, seg.width) == band.shape
        cls = np.asarray(seg.class_array).reshape(band.shape)
        np.testing.assert_array_equal(cls, (band > 127).astype(int))  # the class map on the tile's own pixels
        conf = np.asarray(seg.confidence_array, np.float32).reshape(band.shape)
        assert set(np.unique(conf[cls == 1])) <= {np.float32(s) for s in want["score"]} and not conf[cls == 0].any()
        n["seg"] += len(want)
        want = gd.detect(str(tif), MeanLabel, progress=False)  # the tile is one of the classifier's tiles
        assert len(want) == 1 and r.top.max_confidence_label == want["class_name"].iloc[0]
        assert r.top.max_confidence_score == pytest.approx(float(want["score"].iloc[0]), abs=1e-6)
        assert set(r.cls) == {"dark", "bright"} and sum(r.cls.values()) == pytest.approx(1.0)
        n["bright"] += r.top.max_confidence_label == "bright"
    assert n["boxes"] >= 40 and n["pts"] >= 40 and n["seg"] >= 40 and n["bright"] == 2  # one bright tile per scene


@pytest.mark.slow
def test_rs_detect_bboxes_joined_with_counties_in_sql(spark, tmp_path):
    """A scene across the Alameda / Contra Costa border: detection, join and group by in one SQL query."""
    counties = gpd.read_file(COUNTIES)
    src = tmp_path / "border"
    src.mkdir()
    x0, y0 = -121.9986 - 0.0128, 37.7633 + 0.0128
    _scene(src / "b.tif", bands=1, crs="EPSG:4326", transform=from_origin(x0, y0, 1e-4, 1e-4), seed=5,
           shape=(256, 256))
    gds.register(spark, detectors=[BrightBoxes])
    _tiles(spark, str(src), "border_tiles", 128)
    spark.createDataFrame([(f, bytes(w)) for f, w in zip(counties.fips, shapely.to_wkb(counties.geometry.values))],
                          "fips string, wkb binary").selectExpr("fips", "ST_GeomFromWKB(wkb) AS geometry") \
        .createOrReplaceTempView("counties")
    got = spark.sql(
        "SELECT c.fips, d.class_name, COUNT(*) AS n FROM ("
        "  SELECT inline(arrays_zip(r.bboxes_wkt, r.class_names)) AS (wkt, class_name)"
        "  FROM (SELECT RS_DETECT_BBOXES('test-bright-boxes', tile) AS r FROM border_tiles)) d "
        "JOIN counties c ON ST_Contains(c.geometry, ST_GeomFromWKT(d.wkt)) GROUP BY 1, 2").toPandas()
    tifs = spark.sql("SELECT x, y, RS_AsGeoTiff(tile) AS tif FROM border_tiles").collect()
    local = []
    for r in tifs:
        p = tmp_path / f"b_{r.x}_{r.y}.tif"
        p.write_bytes(bytes(r.tif))
        local.append(gd.detect(str(p), BrightBoxes, progress=False))
    import pandas as pd

    local = gpd.GeoDataFrame(pd.concat(local, ignore_index=True), crs="EPSG:4326")
    want = gpd.sjoin(local, counties[["fips", "geometry"]], predicate="within").groupby(["fips", "class_name"]).size()
    assert {(f, c): int(k) for f, c, k in got[["fips", "class_name", "n"]].itertuples(index=False)} == \
        {k: int(v) for k, v in want.items()}
    assert len(want) == 2 and want.min() >= 5  # both counties hold detections


@pytest.mark.slow
def test_rs_function_errors_say_what_to_do(spark, tmp_path):
    src = tmp_path / "e"
    src.mkdir()
    _scene(src / "e.tif", bands=1, seed=3)
    gds.register(spark, detectors=[BrightBoxes])
    _tiles(spark, str(src), "err_tiles", 64)
    with pytest.raises(Exception, match="RS_SEGMENT needs a segmentation detector"):
        spark.sql("SELECT RS_SEGMENT('test-bright-boxes', tile) FROM err_tiles").collect()
    with pytest.raises(Exception, match="no-such-detector"):
        spark.sql("SELECT RS_CLASSIFY('no-such-detector', tile) FROM err_tiles").collect()
