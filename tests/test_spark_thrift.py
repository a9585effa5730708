"""A real SQL client: a Spark Thrift server started on 127.0.0.1 from the test session (geodetect and Sedona
registered), queried over JDBC with the `beeline` that ships inside pyspark: detection, a Sedona join, group by;
the tile-level RS_DETECT_BBOXES; the block form of the table functions, equal to gd.detect."""

import os
import socket
import subprocess

import geopandas as gpd
import numpy as np
import pytest
import shapely

import geodetect as gd

gds = pytest.importorskip("geodetect.spark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_thrift_server_and_beeline_run_detection_join_and_group_by(spark, tmp_path):
    import pyspark

    from geodetect.simulate import make_scene

    rooks = [make_scene(tmp_path / f"t{i}.tif", size=(320, 320), n_objects=8, seed=11 + i).path for i in range(2)]
    local = gd.detect(rooks, "sea-lion-counter", progress=False)
    xmed = float(np.median(local.geometry.x))
    x0, y0, x1, y1 = local.total_bounds
    regions = gpd.GeoDataFrame({"half": ["w", "e"]}, geometry=[shapely.box(x0, y0, xmed, y1), shapely.box(xmed, y0, x1, y1)],
                               crs="EPSG:4326")
    want = gpd.sjoin(local, regions, predicate="intersects").groupby(["half", "class_name"]).size()

    gds.register(spark)
    # the tile-level RS_DETECT_BBOXES on Sedona rasters (tiles of RS_TileExplode), with the same built-in detector
    folder = os.path.dirname(rooks[0])
    spark.sql(f"CREATE OR REPLACE TEMP VIEW thrift_tiles AS SELECT x, y, tile FROM (SELECT "
              f"RS_TileExplode(RS_FromGeoTiff(content), 160, 160) FROM binaryFile.`{folder}/t*.tif`)")
    tile_counts = {}
    for r in spark.sql("SELECT x, y, RS_AsGeoTiff(tile) AS tif FROM thrift_tiles").collect():
        p = tmp_path / "tiles" / f"{len(tile_counts)}.tif"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(bytes(r.tif))
        for c, k in gd.detect(str(p), "sea-lion-counter", progress=False).groupby("class_name").size().items():
            tile_counts[c] = tile_counts.get(c, 0) + int(k)
    spark.createDataFrame([(h, bytes(w)) for h, w in zip(regions.half, shapely.to_wkb(regions.geometry.values))],
                          "half string, wkb binary").selectExpr("half", "ST_GeomFromWKB(wkb) AS geometry") \
        .createOrReplaceTempView("thrift_halves")
    port = _free_port()
    spark.conf.set("hive.server2.thrift.port", str(port))
    spark.conf.set("hive.server2.thrift.bind.host", "127.0.0.1")
    server = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2.startWithContext(
        spark._jsparkSession.sqlContext())
    try:
        paths = ", ".join(f"('{p}')" for p in rooks)
        query = (f"CREATE OR REPLACE TEMP VIEW thrift_scenes AS SELECT path FROM VALUES {paths} AS t(path);\n"
                 "SELECT h.half, d.class_name, count(*) AS n "
                 "FROM geodetect_detect(TABLE(thrift_scenes), 'sea-lion-counter') d "
                 "JOIN thrift_halves h ON ST_Intersects(h.geometry, ST_GeomFromWKB(d.geometry)) "
                 "GROUP BY 1, 2 ORDER BY 1, 2;\n"
                 "SELECT class_name AS tile_class, count(*) AS tile_n FROM (SELECT inline(arrays_zip(r.bboxes_wkt, "
                 "r.class_names)) AS (wkt, class_name) FROM (SELECT RS_DETECT_BBOXES('sea-lion-counter', tile) AS r "
                 "FROM thrift_tiles)) GROUP BY 1 ORDER BY 1;\n"
                 # big scenes spread in blocks of one tile row: the three chained table functions
                 "SELECT class_name AS block_class, count(*) AS block_n FROM geodetect_detect(TABLE(SELECT * FROM "
                 "geodetect_blocks(TABLE(SELECT * FROM geodetect_units(TABLE(thrift_scenes), 'sea-lion-counter', 1)), "
                 "'sea-lion-counter')), 'sea-lion-counter') GROUP BY 1 ORDER BY 1;\n")
        beeline = os.path.join(os.path.dirname(pyspark.__file__), "bin", "beeline")
        env = {**os.environ, "SPARK_HOME": os.path.dirname(pyspark.__file__)}
        out = subprocess.run([beeline, "-u", f"jdbc:hive2://127.0.0.1:{port}/default", "-n", "geodetect",
                              "--silent=true", "--outputformat=csv2", "-e", query],
                             capture_output=True, text=True, timeout=600, env=env, stdin=subprocess.DEVNULL)
    finally:
        server.stop()
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    lines = [ln for ln in out.stdout.splitlines() if ln.strip() and ln.strip() != "Result"]  # "Result": the CREATE VIEW
    assert lines[0] == "half,class_name,n", lines
    second = lines.index("tile_class,tile_n")
    got = {(a, b): int(n) for a, b, n in (ln.split(",") for ln in lines[1:second])}
    assert got == {k: int(v) for k, v in want.items()} and sum(got.values()) > 0
    third = lines.index("block_class,block_n")
    got_tiles = {a: int(n) for a, n in (ln.split(",") for ln in lines[second + 1:third])}
    assert got_tiles == tile_counts and sum(got_tiles.values()) > 0
    assert len(gds.plan(rooks, "sea-lion-counter", block_rows=1)) > len(rooks)  # the block form really split them
    got_blocks = {a: int(n) for a, n in (ln.split(",") for ln in lines[third + 1:])}
    assert got_blocks == {c: int(k) for c, k in local.groupby("class_name").size().items()}
