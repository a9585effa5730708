"""geodetect on Apache Spark: inference inside Spark tasks, results as Spark DataFrames.

>>> from geodetect import spark as gds                                   # doctest: +SKIP
>>> sdf = gds.detect(spark, "/data/scenes/*.tif", detector="vehicle-detector")   # doctest: +SKIP
>>> gds.register(spark, detections=sdf)                                  # doctest: +SKIP
>>> spark.sql("SELECT * FROM geodetect_detect('sea-lion-counter', '/data/*.tif')")  # doctest: +SKIP

How work is split: one work unit per scene, and big scenes (more tile rows
than ``block_rows``) are split into blocks of tile rows so that one big scene
uses every executor. Blocks run a halo of one tile row and report only the
objects in their own rows, so block borders are handled exactly like tile
seams inside a scene: no duplicates, nothing lost (segmentation scenes stay
whole). The detector is loaded once per Python worker process and reused.
Every unit is deterministic, so a retried task yields identical rows.

Geometries travel as WKB (``geometry`` column, EPSG:4326 unless ``crs_out``);
when Apache Sedona is registered in the session a ``geom`` column holds the
Sedona geometry (``ST_GeomFromWKB``). Without the Sedona jars (they come from
Maven Central) everything still works on WKB.
"""

from __future__ import annotations

import glob
import logging
import os

from geodetect.errors import ConfigError, MissingDependencyError

__all__ = ["detect", "register", "aggregate", "plan", "sedona_available", "SEDONA_PACKAGES", "DETECTIONS_SCHEMA"]

log = logging.getLogger("geodetect")

SEDONA_PACKAGES = (
    "org.apache.sedona:sedona-spark-shaded-4.1_2.13:1.9.1,org.datasyslab:geotools-wrapper:1.9.1-33.5"
)
DETECTIONS_SCHEMA = (
    "detector string, detector_version string, scene_id string, class_name string, score float, "
    "geometry binary, area_m2 double, block int"
)
_UNIT_SCHEMA = "path string, scene_id string, r0 int, r1 int, block int"


def _pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("the Spark engine needs pyspark: pip install 'geodetect[spark]'") from exc


def sedona_available(spark) -> bool:
    """True when Sedona's SQL functions are registered in this session."""
    # Spark 4.1 has a few ST_ functions of its own (disabled by default), so ask for
    # one only Sedona registers: its envelope aggregate
    try:
        return bool(spark.catalog.functionExists("ST_Envelope_Aggr"))
    except Exception:  # noqa: BLE001
        return False


def _expand(scenes) -> list[str]:
    items = [scenes] if isinstance(scenes, (str, os.PathLike)) else list(scenes)
    out = []
    for s in items:
        s = os.fspath(s)
        if "://" not in s and any(ch in s for ch in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                raise ConfigError(f"{s}: no file matches this pattern")
            out.extend(hits)
        else:
            out.append(s)
    if not out:
        raise ConfigError("no scenes given")
    return out


def plan(scenes, detector, *, block_rows: int = 8, **options) -> list[tuple]:
    """Work units (path, scene_id, first tile row, end tile row, block number), made on the driver.

    Reads only the headers of the scenes. Scenes that cannot be opened become
    one unit each and fail in their task with their own error.
    """
    return [u for u, _ in _plan(scenes, detector, block_rows=block_rows, **options)]


def _plan(scenes, detector, *, block_rows: int, **options) -> list[tuple[tuple, int]]:
    """(unit, number of tiles it runs) for each work unit, in scene order."""
    from geodetect.errors import GeodetectError
    from geodetect.io.raster import open_scene
    from geodetect.io.tiling import Tiling
    from geodetect.pipeline import make_options, scene_id_of, tile_row_blocks
    from geodetect.plugins import Task
    from geodetect.plugins.registry import resolve_detector

    det = resolve_detector(detector) if not isinstance(detector, str) else None
    if det is None:
        from geodetect.plugins.registry import get_detector

        spec = get_detector(detector).spec
    else:
        spec = det.spec
    opts = make_options(spec, progress=False, **options)
    units = []
    paths = _expand(scenes)
    ids = [scene_id_of(p) for p in paths]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise ConfigError(f"scenes share the id {dup!r} (file stem); every scene needs its own id")
    for path, sid in zip(paths, ids):
        try:
            with open_scene(path, bands=spec.bands, scaling=opts.scaling, band_override=opts.band_override,
                            gsd_m=spec.gsd_m, gsd_tolerance=opts.gsd_tolerance, crs=opts.crs, bounds=opts.bounds,
                            scene_id=sid, gsd_range=spec.gsd_range, detector=spec.name) as sc:
                nrow, ncol = Tiling(sc.width, sc.height, opts.tile_size, opts.overlap).shape
        except GeodetectError:
            units.append(((path, sid, 0, 0, 0), 0))
            continue
        blocks = [(0, nrow)] if spec.task is Task.SEGMENTATION else tile_row_blocks(nrow, block_rows)
        units.extend(((path, sid, r0, r1, k), (r1 - r0) * ncol) for k, (r0, r1) in enumerate(blocks))
    return units


def _run_units(detector, options: dict):
    """The function each Spark task runs: pandas batches of units in, detections out (WKB)."""

    def fn(batches):
        import os

        import pandas as pd
        import shapely
        from pyspark import TaskContext

        from geodetect.pipeline import detect_scene, make_options
        from geodetect.plugins.registry import resolve_detector

        ctx = TaskContext.get()
        # one task = spark.task.cpus cores: models must not spread over the cores other tasks use
        os.environ.setdefault("GEODETECT_TF_THREADS", str(ctx.cpus() if ctx is not None else 1))
        det = resolve_detector(detector)  # named detectors: loaded once per worker process
        opts = make_options(det.spec, progress=False, **options)
        cols = ["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2", "block"]
        for units in batches:
            for u in units.itertuples(index=False):
                rows = None if u.r1 == 0 else (u.r0, u.r1)
                gdf, _ = detect_scene(det, u.path, opts, scene_id=u.scene_id, tile_rows=rows)
                out = pd.DataFrame({
                    "detector": gdf["detector"].astype(str), "detector_version": gdf["detector_version"].astype(str),
                    "scene_id": gdf["scene_id"].astype(str), "class_name": gdf["class_name"].astype(str),
                    "score": gdf["score"].astype("float32"),
                    "geometry": pd.Series(shapely.to_wkb(gdf.geometry.values), dtype=object),
                    "area_m2": gdf["area_m2"].astype("float64"),
                    "block": pd.Series([int(u.block)] * len(gdf), dtype="int32"),
                })
                yield out[cols]

    return fn


def detect(spark, scenes, detector, *, block_rows: int = 8, **options):
    """Detections of ``scenes`` (paths or glob patterns) as a Spark DataFrame.

    ``detector`` is a registered name (preferred: each worker loads it from its
    own installation) or a Detector class (pickled to the workers).
    ``options`` are those of :func:`geodetect.detect` (tile_size, overlap,
    batch_size, crs_out, bands, ...). Errors in a scene fail its task with the
    scene's own GeodetectError message.
    """
    _pyspark()
    options.pop("progress", None)
    udf = _unit_frame(spark, _plan(scenes, detector, block_rows=block_rows, **options))
    sdf = udf.mapInPandas(_run_units(detector, options), schema=DETECTIONS_SCHEMA)
    if sedona_available(spark):
        from pyspark.sql import functions as F

        sdf = sdf.withColumn("geom", F.expr("ST_GeomFromWKB(geometry)"))
    return sdf


def _unit_frame(spark, planned):
    """The work units as a DataFrame of one unit per partition, the biggest (most tiles) first.

    Spark starts partitions in order, so long units do not come last and leave
    cores idle; ``repartition()`` would deal units out unevenly, several to one
    task. The partitions come from ``spark.range`` (made in the JVM: no Python
    worker is needed just to produce the unit rows) joined with the small unit table.
    """
    from pyspark.sql import functions as F

    units = [u for u, _ in sorted(planned, key=lambda p: -p[1])]
    n = max(1, len(units))
    table = spark.createDataFrame([(i, *u) for i, u in enumerate(units)], "_unit long, " + _UNIT_SCHEMA)
    slots = spark.range(0, n, 1, numPartitions=n).withColumnRenamed("id", "_unit")
    cols = [c.split()[0] for c in _UNIT_SCHEMA.split(", ")]
    return slots.join(F.broadcast(table), "_unit").select(*cols)


class _DetectUDTF:
    """``geodetect_detect(detector, pattern)``: detections of the scenes matching ``pattern``."""

    def eval(self, detector: str, pattern: str):
        import shapely

        from geodetect.pipeline import detect_scene, make_options
        from geodetect.plugins.registry import resolve_detector

        det = resolve_detector(detector)
        opts = make_options(det.spec, progress=False)
        for path in _expand(pattern):
            gdf, _ = detect_scene(det, path, opts)
            wkb = shapely.to_wkb(gdf.geometry.values)
            for row, g in zip(gdf.itertuples(index=False), wkb):
                yield (row.detector, row.detector_version, row.scene_id, row.class_name, float(row.score),
                       bytes(g), float(row.area_m2))


def register(spark, *, detections=None, view: str = "detections") -> None:
    """Register the ``geodetect_detect`` table function (a Python UDTF) and, if given, a detections view."""
    _pyspark()
    from pyspark.sql.functions import udtf

    schema = ("detector string, detector_version string, scene_id string, class_name string, score float, "
              "geometry binary, area_m2 double")
    spark.udtf.register("geodetect_detect", udtf(_DetectUDTF, returnType=schema))
    if detections is not None:
        detections.createOrReplaceTempView(view)
    if not sedona_available(spark):
        log.info(
            "Apache Sedona is not registered in this Spark session: geometries stay WKB. To enable it, start "
            "Spark with spark.jars.packages=%s and call sedona.spark.SedonaContext.create(spark)", SEDONA_PACKAGES
        )


_ASSIGNED_SCHEMA = "class_name string, _area_q long, _region_order long"
_warned_paths: set = set()


def _assign_partitions(regions_wkb: list, orders, crs_wkt: str):
    """mapInPandas function: detections (WKB) -> their region by the border rule, with a broadcast STRtree."""

    def fn(batches):
        import geopandas as gpd
        import pandas as pd
        import shapely

        from geodetect.analytics import _prepare_detections
        from geodetect.engines.geopandas import GeoPandasEngine

        geoms = shapely.from_wkb(regions_wkb)
        regions = gpd.GeoDataFrame({"_region_order": orders}, geometry=gpd.GeoSeries(geoms, crs=crs_wkt), crs=crs_wkt)
        eng = GeoPandasEngine()
        for pdf in batches:
            g = gpd.GeoDataFrame(pdf.drop(columns=["geometry"]),
                                 geometry=gpd.GeoSeries(shapely.from_wkb(pdf["geometry"].to_numpy()), crs=crs_wkt),
                                 crs=crs_wkt)
            table, _ = _prepare_detections(g)
            a = eng.assign(table, regions)
            yield pd.DataFrame({"class_name": a["class_name"].astype(str), "_area_q": a["_area_q"].astype("int64"),
                                "_region_order": a["_region_order"].astype("int64")})

    return fn


def aggregate(sdf, regions, by: str, *, name_col: str | None = None, classes=None, crs="EPSG:4326"):
    """Counts, areas and densities per region and class of a Spark detections DataFrame.

    Same result, same border rule and same columns as :func:`geodetect.aggregate`.
    ``regions`` is a GeoDataFrame or a vector file (small: it is broadcast).
    With Apache Sedona registered in the session the aggregation runs
    :data:`geodetect.engines.AGGREGATE_SQL` on Spark; without it, a broadcast
    join against an STRtree inside ``mapInPandas`` assigns detections to
    regions and Spark sums them. Which path ran is logged once. Only the small
    region x class table reaches the driver.
    """
    _pyspark()
    import numpy as np
    import shapely
    from pyspark.sql import functions as F

    from geodetect.analytics import _classes_table, _normalise_counts, _prepare_regions, _with_region_columns
    from geodetect.engines.geopandas import complete

    reg = _prepare_regions(regions, by, name_col, crs)
    if classes is None:
        classes = [r.class_name for r in sdf.select("class_name").distinct().collect()]
    cls = _classes_table(classes)
    spark = sdf.sparkSession
    if sedona_available(spark):
        path = "sedona"
        res = _aggregate_sedona(spark, sdf, reg, cls)
    else:
        path = "broadcast STRtree join (Sedona not registered)"
        table = reg.table
        fn = _assign_partitions([bytes(w) for w in shapely.to_wkb(np.asarray(table.geometry.values, dtype=object))],
                                table["_region_order"].to_numpy(np.int64), table.crs.to_wkt())
        assigned = sdf.select("class_name", "geometry", "area_m2").mapInPandas(fn, schema=_ASSIGNED_SCHEMA)
        per = (assigned.groupBy("_region_order", "class_name")
               .agg(F.count(F.lit(1)).alias("n"), F.sum("_area_q").alias("area_q")).toPandas())
        res = complete(per.astype({"n": "int64", "area_q": "int64"}), table, cls)
    if path not in _warned_paths:
        _warned_paths.add(path)
        log.warning("geodetect.spark.aggregate: %s%s", path,
                    "" if path == "sedona" else f"; to run Sedona SQL start Spark with spark.jars.packages={SEDONA_PACKAGES}")
    out = _with_region_columns(_normalise_counts(res), reg, lead=("class_name",))
    out.attrs["geodetect"] = {"engine": "spark", "path": path}
    return out


def _aggregate_sedona(spark, sdf, reg, cls):  # pragma: no cover - needs the Sedona jars (SEDONA_JARS)
    import shapely
    from pyspark.sql import functions as F

    from geodetect.engines import AGGREGATE_SQL

    regions = spark.createDataFrame(
        [(int(o), float(a), bytes(w)) for o, a, w in zip(reg.table["_region_order"], reg.table["region_area_km2"],
                                                         shapely.to_wkb(reg.table.geometry.values))],
        "_region_order long, region_area_km2 double, wkb binary",
    ).withColumn("geometry", F.expr("ST_GeomFromWKB(wkb)")).drop("wkb")
    dets = (sdf.withColumn("_det_id", F.monotonically_increasing_id())
            .withColumn("_area_q", F.floor(F.col("area_m2") * 1000.0 + 0.5).cast("long"))
            .withColumn("geometry", F.expr("CASE WHEN ST_GeometryType(ST_GeomFromWKB(geometry)) = 'ST_Point' "
                                           "THEN ST_GeomFromWKB(geometry) ELSE ST_PointOnSurface(ST_GeomFromWKB(geometry)) END"))
            .select("_det_id", "class_name", "_area_q", "geometry"))
    classes = spark.createDataFrame([(c,) for c in cls["class_name"]], "class_name string")
    dets.createOrReplaceTempView("_gd_detections")
    regions.createOrReplaceTempView("_gd_regions")
    classes.createOrReplaceTempView("_gd_classes")
    q = AGGREGATE_SQL.format(detections="_gd_detections", regions="_gd_regions", classes="_gd_classes")
    return spark.sql(q).toPandas()
