"""Spark with Apache Sedona registered (the shared `spark` fixture): inference inside tasks, big scenes split in
blocks without seams, Sedona geometry columns, aggregation (Sedona SQL and the STRtree fallback), the SQL table function."""

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

import geodetect as gd
from detectors import BrightBoxes, BrightMask, BrightPoints, MeanLabel, spots
from geodetect.testing import assert_detections_equal

gds = pytest.importorskip("geodetect.spark")


def _to_gdf(sdf):
    return gds.to_geopandas(sdf)


@pytest.mark.slow
@pytest.mark.parametrize("det", [BrightPoints, BrightBoxes, MeanLabel], ids=["points", "boxes", "labels"])
def test_spark_matches_local_with_blocks(spark, write_raster, det):
    scenes = [spots(write_raster, f"s{i}.tif", (300 + 37 * i, 280), 60, i) for i in range(3)]
    local = gd.detect(scenes, det, progress=False)
    units = gds.plan(scenes, det, block_rows=2)
    assert len(units) > len(scenes)  # scenes really were split into blocks
    sdf = gds.detect(spark, scenes, det, block_rows=2)
    assert sdf.columns == ["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2",
                           "block", "geometry_wkb"]
    assert type(sdf.schema["geometry"].dataType).__name__ == "GeometryType"  # a Sedona geometry, SRID set
    assert {r.s for r in sdf.limit(1).selectExpr("ST_SRID(geometry) AS s").collect()} == {4326}
    got = _to_gdf(sdf)
    assert_detections_equal(got, local, tolerance=1e-9)


@pytest.mark.slow
def test_spark_is_deterministic_per_unit(spark, write_raster):
    """A retried task recomputes the same rows: two runs give identical results."""
    scene = spots(write_raster, "d.tif", (400, 400), 80, 7)
    a = _to_gdf(gds.detect(spark, [scene], BrightPoints, block_rows=1))
    b = _to_gdf(gds.detect(spark, [scene], BrightPoints, block_rows=3))
    assert_detections_equal(a, b)


@pytest.mark.slow
def test_sql_table_function_and_view(spark, write_raster, tmp_path):
    scene = spots(write_raster, "u.tif", (200, 200), 10, 3)
    gd.register_detector(BrightPoints, replace=True)
    try:
        gds.register(spark, detections=gds.detect(spark, [scene], BrightPoints))
        n_view = spark.sql("SELECT COUNT(*) AS n FROM detections").collect()[0].n
    finally:
        gd.plugins.unregister_detector(BrightPoints.spec.name)
    assert n_view == len(gd.detect(scene, BrightPoints, progress=False)) > 0

    # the UDTF runs in a Python worker, which knows only installed detectors: use the built-in one
    from geodetect.simulate import make_scene

    rooks = [make_scene(tmp_path / "rookery" / f"r{i}.tif", size=(384, 384), n_objects=10, seed=3 + i).path
             for i in range(2)]
    local = gd.detect(rooks, "sea-lion-counter", progress=False)
    pattern = str(tmp_path / "rookery" / "r*.tif")
    n_udtf = spark.sql(f"SELECT COUNT(*) AS n FROM geodetect_detect('sea-lion-counter', '{pattern}')").collect()[0].n
    assert n_udtf == len(local) > 0
    # the TABLE form: one row per scene, spread over tasks; joined with regions by Sedona in the same query
    paths = ", ".join(f"('{p}')" for p in rooks)
    spark.sql(f"CREATE OR REPLACE TEMP VIEW scenes AS SELECT path FROM VALUES {paths} AS t(path)")
    regions = gpd.GeoDataFrame({"half": ["w", "e"]}, crs="EPSG:4326", geometry=[
        shapely.box(*local.total_bounds[:1], local.total_bounds[1], float(np.median(local.geometry.x)), local.total_bounds[3]),
        shapely.box(float(np.median(local.geometry.x)), local.total_bounds[1], *local.total_bounds[2:])])
    spark.createDataFrame([(h, bytes(w)) for h, w in zip(regions.half, shapely.to_wkb(regions.geometry.values))],
                          "half string, wkb binary").selectExpr("half", "ST_GeomFromWKB(wkb) AS geometry") \
        .createOrReplaceTempView("halves")
    tab = gds.to_geopandas(spark.sql("SELECT * FROM geodetect_detect(TABLE(scenes), 'sea-lion-counter')"))
    assert_detections_equal(tab, local)
    per = spark.sql("SELECT h.half, d.class_name, COUNT(*) AS n FROM geodetect_detect(TABLE(scenes), 'sea-lion-counter') d "
                    "JOIN halves h ON ST_Intersects(h.geometry, ST_GeomFromWKB(d.geometry)) GROUP BY 1, 2").toPandas()
    want = gpd.sjoin(local, regions, predicate="intersects").groupby(["half", "class_name"]).size()
    assert dict(zip(zip(per.half, per.class_name), per.n)) == {k: int(v) for k, v in want.items()}


def test_plan_splits_big_scenes_by_tile_rows(write_raster):
    scene = write_raster(np.zeros((1000, 300), np.uint8))
    units = gds.plan([scene], BrightPoints, block_rows=4)
    rows = [(u[2], u[3]) for u in units]
    assert rows[0][0] == 0 and all(a[1] == b[0] for a, b in zip(rows, rows[1:]))
    assert rows[-1][1] == len(set(range(0, 1000, 48))) or rows[-1][1] > rows[-1][0]


@pytest.mark.parametrize("inline", [True, False], ids=["literal", "broadcast"])
def test_units_one_per_partition_biggest_first(spark, monkeypatch, inline):
    if not inline:  # a plan too big for a literal in the query: broadcast and joined
        monkeypatch.setattr(gds, "_INLINE_UNITS", (2, 1 << 20))
    planned = [(("a.tif", "a", 0, 2, 0), 20), (("b.tif", "b", 0, 9, 0), 90), (("c.tif", "c", 0, 4, 0), 40),
               (("c.tif", "c", 4, 8, 1), 40), (("d'\\\"é.tif", "d", 0, 0, 0), 0)]
    frame = gds._unit_frame(spark, planned)
    plan = frame._jdf.queryExecution().executedPlan().toString()
    assert ("BroadcastExchange" in plan or "BroadcastHashJoin" in plan) != inline
    assert frame.schema.simpleString() == "struct<path:string,scene_id:string,r0:int,r1:int,block:int>"
    parts = frame.rdd.glom().collect()
    assert [len(p) for p in parts] == [1] * 5  # every unit its own task: no core gets two while one idles
    assert [p[0].scene_id for p in parts] == ["b", "c", "c", "a", "d"]
    assert [(p[0].r0, p[0].block) for p in parts[1:3]] == [(0, 0), (4, 1)]  # ties keep their order
    assert parts[4][0].path == "d'\\\"é.tif"  # any path survives the trip (JSON literal or broadcast table)


def test_missing_sedona_is_reported_with_coordinates(spark, tmp_path, monkeypatch, caplog):
    import logging

    from geodetect.errors import MissingDependencyError

    with pytest.raises(MissingDependencyError, match="org.apache.sedona:sedona-spark-shaded") as err:
        gds.sedona_jars(tmp_path)
    assert "make jars" in str(err.value)
    assert len(gds.sedona_jars()) == 2  # `make jars` put both in build/jars
    monkeypatch.setattr(gds, "sedona_available", lambda spark: False)
    with caplog.at_level(logging.INFO, logger="geodetect"):
        gds.register(spark)
    assert "spark.jars.packages=org.apache.sedona:sedona-spark-shaded" in caplog.text


def test_makefile_fetches_the_coordinates_the_code_expects():
    make = (Path(__file__).parent.parent / "Makefile").read_text()
    for coord in gds.SEDONA_COORDINATES:
        assert coord in make


def test_sedona_not_spark_runs_the_st_functions(spark):
    """Sedona is registered, and its expressions (not any built-in ST_ function) are what run."""
    assert gds.sedona_available(spark)
    assert spark.conf.get("spark.serializer") == "org.apache.spark.serializer.KryoSerializer"
    assert "SedonaSqlExtensions" in spark.conf.get("spark.sql.extensions")
    df = spark.sql("SELECT ST_Intersects(ST_GeomFromWKT('POLYGON((0 0,0 3,3 3,3 0,0 0))'), ST_Point(a, 1.0)) AS i, "
                   "ST_H3CellIDs(ST_Point(a, 1.0), 5, false) AS h FROM VALUES (1.0) AS t(a)")
    plan = df._jdf.queryExecution().analyzed().toString()
    assert "org.apache.spark.sql.sedona_sql.expressions.ST_Intersects" in plan
    assert "org.apache.spark.sql.sedona_sql.expressions.ST_H3CellIDs" in plan  # a function only Sedona has
    assert df.collect()[0].i is True


def test_wrong_worker_python_is_one_clear_error(spark, monkeypatch, tmp_path):
    """A worker Python without geodetect / pyarrow: ConfigError naming that interpreter and PYSPARK_PYTHON."""
    import sys

    from geodetect.errors import ConfigError

    assert gds.check_workers(spark) == sys.executable
    sc = spark.sparkContext
    for exe in ("/usr/bin/python3", str(tmp_path / "no-such-python")):
        monkeypatch.setattr(sc, "pythonExec", exe)
        with pytest.raises(ConfigError, match="PYSPARK_PYTHON") as err:
            gds.check_workers(spark)
        assert exe in str(err.value) and "Traceback" not in str(err.value)


@pytest.mark.slow
def test_spark_aggregate_matches_sedonadb(spark, tmp_path):
    """Same counts with Sedona SQL on Spark, the STRtree fallback and SedonaDB: border and antimeridian points included."""
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
    import pandas as pd

    for sdf_ in (sdf, gds._with_sedona_geometry(sdf, 4326)):  # WKB and Sedona geometry columns
        sedona = gds.aggregate(sdf_, counties, by="fips")
        fallback = gds.aggregate(sdf_, counties, by="fips", method="strtree")
        assert sedona.attrs["geodetect"]["path"] == "sedona"
        assert fallback.attrs["geodetect"]["path"].startswith("broadcast STRtree")
        for remote in (sedona, fallback):
            pd.testing.assert_frame_equal(remote.reset_index(drop=True), local.reset_index(drop=True), check_exact=True)
    assert local["count"].sum() > 200


def _lakes(write_raster, name, seed, shape=(700, 300)):
    """A river crossing every block, a lake across one block border, a ring (a hole) and scattered ponds."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 20, np.uint8)
    img[30:660, 100:140] = 250
    img[300:333, 10:290] = 250
    img[420:480, 180:260] = 250
    img[440:460, 200:240] = 20  # the lake's island
    for c, r in rng.integers(8, np.array(shape[::-1]) - 12, (50, 2)):
        img[r : r + 9, c : c + 7] = 250
    return write_raster(img, name=name)


@pytest.mark.slow
def test_segmentation_scenes_split_in_blocks_equal_local(spark, write_raster):
    """Big segmentation scenes run in blocks of tile rows; polygons crossing block borders are joined again."""
    scenes = [_lakes(write_raster, f"lake{i}.tif", 20 + i) for i in range(2)]
    local = gd.detect(scenes, BrightMask, progress=False)
    assert len(gds.plan(scenes, BrightMask, block_rows=2)) > 2 * len(scenes)  # really split
    river = local["area_m2"].idxmax()
    for rows in (1, 3):
        got = _to_gdf(gds.detect(spark, scenes, BrightMask, block_rows=rows))
        assert len(got) == len(local)
        for g in (got, local):  # same polygons, vertex for vertex, up to the order of vertices and rings
            g["geometry"] = shapely.normalize(g.geometry.values)
        assert_detections_equal(got, local, tolerance=0)
        np.testing.assert_allclose(np.sort(got["area_m2"]), np.sort(local["area_m2"]), rtol=1e-12)
    # the river, over 600 rows (13 blocks of one tile row), is one polygon; the lake keeps its island as a hole
    assert local.geometry.iloc[river].bounds[3] - local.geometry.iloc[river].bounds[1] > 0.005
    assert any(len(p.interiors) for p in local.geometry.values if p.geom_type == "Polygon")


@pytest.mark.slow
def test_sql_block_form_spreads_blocks_and_equals_gd_detect(spark, write_raster):
    """geodetect_units -> geodetect_blocks -> geodetect_detect in SQL: the units of gds.plan, each run in a partition
    of its own (spread over tasks), a river over every block and a lake across a block border joined into one polygon
    each; equal to gd.detect vertex for vertex (segmentation) and to 1e-9 (points)."""
    lakes = [_lakes(write_raster, f"sqllake{i}.tif", 30 + i) for i in range(2)]
    # 900 rows: 10 units of two tile rows (where 3 units run: test_sql_blocks_run_one_unit_per_task_whatever_the_paths)
    pts = [spots(write_raster, "sqlspots.tif", (900, 280), 60, 4)]
    gds.register(spark, detectors=[BrightMask, BrightPoints])
    for det, scenes, tol in ((BrightMask, lakes, 0.0), (BrightPoints, pts, 1e-9)):
        name = det.spec.name
        local = gd.detect(scenes, det, progress=False)
        paths = ", ".join(f"('{p}')" for p in scenes)
        spark.sql(f"CREATE OR REPLACE TEMP VIEW sql_scenes AS SELECT path FROM VALUES {paths} AS t(path)")
        units = f"SELECT * FROM geodetect_units(TABLE(sql_scenes), '{name}', 2)"
        planned = spark.sql(units).collect()
        assert sorted((u.path, u.scene_id, u.r0, u.r1, u.block) for u in planned) == \
            sorted(gds.plan(scenes, det, block_rows=2))
        assert len(planned) >= 3 * len(scenes)  # really split
        blocks = f"SELECT * FROM geodetect_blocks(TABLE({units}), '{name}')"
        where = spark.sql(f"SELECT spark_partition_id() AS p, scene_id, block FROM ({blocks})").collect()
        assert len({r.p for r in where}) >= 2  # the blocks ran in several tasks, not one
        got = gds.to_geopandas(spark.sql(f"SELECT * FROM geodetect_detect(TABLE({blocks}), '{name}')"))
        assert len(got) == len(local) > 0
        if det is BrightMask:
            for g in (got, local):  # same polygons, up to the order of vertices and rings
                g["geometry"] = shapely.normalize(g.geometry.values)
        assert_detections_equal(got, local, tolerance=tol)
    local_mask = gd.detect(lakes, BrightMask, progress=False)
    river = local_mask.geometry.iloc[local_mask["area_m2"].idxmax()]
    assert river.bounds[3] - river.bounds[1] > 0.005  # one polygon over many blocks


def test_slot_key_is_the_inverse_of_sparks_hash(spark):
    """hash() in Spark SQL is the Murmur3 (seed 42) that hash partitioning takes modulo the partition count:
    hash(_slot_key(i)) == i puts unit i in partition i (i mod N), whatever N is."""
    want = list(range(1000)) + [-1, 2**31 - 1, -(2**31)]
    keys = spark.createDataFrame([(gds._slot_key(i),) for i in want], "k int")
    assert [r.h for r in keys.selectExpr("hash(k) AS h").collect()] == want
    units = [("a.tif", "a"), ("/some/longer/é.tif", "é"), ("b.tif", "b")]
    pads = gds._slot_pad(units)  # every row as long as the longest (bytes), the pads differ
    assert {len((p + s + pad).encode()) for (p, s), pad in zip(units, pads)} == {21} and pads[0] != pads[2]


@pytest.mark.slow
def test_sql_blocks_run_one_unit_per_task_whatever_the_paths(spark, write_raster):
    """3 units on local[2] with 4 shuffle partitions, under 3 scene names: unit slot i runs in task i, each alone.
    Partitioned by the hash of (path, block), the units of a name all ran apart, in slot order, for 1 name in 16."""
    gds.register(spark, detectors=[BrightPoints])
    units = "SELECT * FROM geodetect_units(TABLE(spread_scenes), 'test-bright-points', 1)"
    for k in range(3):
        scene = spots(write_raster, f"spread{k}{'-x' * k}.tif", (140, 120), 40, k)
        spark.sql(f"CREATE OR REPLACE TEMP VIEW spread_scenes AS SELECT path FROM VALUES ('{scene}') AS t(path)")
        if k == 0:  # three blocks of equal size: slot = block (biggest first, ties in plan order)
            assert [(u.block, u.slot) for u in spark.sql(units).collect()] == [(0, 0), (1, 1), (2, 2)]
        where = spark.sql("SELECT DISTINCT spark_partition_id() AS p, block FROM "
                          f"geodetect_blocks(TABLE({units}), 'test-bright-points')").collect()
        assert sorted((r.block, r.p) for r in where) == [(0, 0), (1, 1), (2, 2)], (scene, where)


def test_sql_block_form_refuses_bad_calls(spark):
    gds.register(spark)
    spark.sql("CREATE OR REPLACE TEMP VIEW bad_scenes AS SELECT path FROM VALUES ('a.tif') AS t(path)")
    with pytest.raises(Exception, match="block_rows must be a constant integer"):
        spark.sql("SELECT * FROM geodetect_units(TABLE(bad_scenes), 'sea-lion-counter', 0)").collect()
    with pytest.raises(Exception, match="must be TABLE\\(units\\)"):
        spark.sql("SELECT * FROM geodetect_blocks(TABLE(bad_scenes), 'sea-lion-counter')").collect()
    with pytest.raises(Exception, match="holds work units"):
        spark.sql("SELECT * FROM geodetect_detect(TABLE(SELECT * FROM geodetect_units(TABLE(bad_scenes), "
                  "'sea-lion-counter')), 'sea-lion-counter')").collect()
