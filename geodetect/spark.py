"""geodetect on Apache Spark with Apache Sedona: inference inside Spark tasks, results as Sedona spatial DataFrames.

>>> from geodetect import spark as gds                                   # doctest: +SKIP
>>> spark = gds.session(master="local[2]")        # Sedona registered, PYSPARK_PYTHON = this interpreter  # doctest: +SKIP
>>> sdf = gds.detect(spark, "/data/scenes/*.tif", detector="vehicle-detector")   # doctest: +SKIP
>>> gds.write(sdf, "out/vehicles.parquet")        # GeoParquet written by Sedona  # doctest: +SKIP
>>> counts = gds.aggregate(sdf, "counties.parquet", by="fips")   # Sedona SQL on Spark  # doctest: +SKIP
>>> hexes = gds.heatmap(sdf, resolution=7)        # Sedona's H3 functions  # doctest: +SKIP

How work is split: one work unit per scene, and big scenes (more tile rows
than ``block_rows``) are split into blocks of tile rows so that one big scene
uses every executor. Blocks run a halo of one tile row and report only the
objects in their own rows, so block borders are handled exactly like tile
seams inside a scene: no duplicates, nothing lost. Segmentation blocks blend
every tile that touches their rows (the same blend as a whole scene) and
report the polygons inside their rows; polygons cut by a block border are
joined with their other parts in a second step (one group per scene, as
strips are joined in a local run), so a lake crossing many blocks is one
polygon and the result equals a local run. The detector is loaded once per
Python worker process and reused. Every unit is deterministic, so a retried
task yields identical rows.

Sedona: the JVM jars (:data:`SEDONA_COORDINATES`) come from Maven Central
(``make jars`` puts them in ``build/jars``; :func:`session` finds them there or
in ``GEODETECT_SEDONA_JARS``). With Sedona registered, ``gds.detect`` returns a
Sedona ``geometry`` column (SRID of ``crs_out``) and the same geometry as WKB in
``geometry_wkb``; without Sedona, ``geometry`` is the WKB and aggregation falls
back to a broadcast STRtree join (same counts).
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from pathlib import Path

from geodetect.errors import ConfigError, MissingDependencyError

__all__ = ["session", "detect", "write", "to_geopandas", "as_wkb", "register", "aggregate", "heatmap", "change", "plan",
           "sedona_available", "sedona_jars", "check_workers", "SEDONA_COORDINATES", "SEDONA_PACKAGES",
           "SEDONA_CONF", "DETECTIONS_SCHEMA"]

log = logging.getLogger("geodetect")

#: The Sedona Spark jars geodetect is tested with (Maven Central; the Makefile's ``jars`` target fetches
#: these same two). Sedona 1.8.0 is built for Spark 4.0, hence pyspark>=4.0,<4.1 in the ``spark`` extra;
#: the Python side is ``apache-sedona==1.8.0``.
SEDONA_VERSION = "1.8.0"
SEDONA_COORDINATES = (
    "org.apache.sedona:sedona-spark-shaded-4.0_2.13:1.8.0",
    "org.datasyslab:geotools-wrapper:1.8.0-33.1",
)
SEDONA_PACKAGES = ",".join(SEDONA_COORDINATES)
#: The three settings a session of your own needs (besides the jars on ``spark.jars`` or ``spark.jars.packages``).
SEDONA_CONF = {
    "spark.serializer": "org.apache.spark.serializer.KryoSerializer",
    "spark.kryo.registrator": "org.apache.sedona.core.serde.SedonaKryoRegistrator",
    "spark.sql.extensions": "org.apache.sedona.sql.SedonaSqlExtensions",
}
DETECTIONS_SCHEMA = (
    "detector string, detector_version string, scene_id string, class_name string, score float, "
    "geometry binary, area_m2 double, block int"
)
_COLUMNS = ("detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2")
_UNIT_SCHEMA = "path string, scene_id string, r0 int, r1 int, block int"
#: what segmentation blocks yield: detections, and pieces of polygons cut by block borders (grid pixels as WKB,
#: their pixel count, float64 score, and the scene's transform and CRS as JSON) to join in a second step
_PIECES_SCHEMA = DETECTIONS_SCHEMA + ", _npix double, _score double, _geo string"


def _pyspark():
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError("the Spark engine needs pyspark: pip install 'geodetect[spark]'") from exc


def _jar_name(coord: str) -> str:
    _, artifact, version = coord.split(":")
    return f"{artifact}-{version}.jar"


def sedona_jars(where=None) -> list[str]:
    """Paths of the Sedona jars: from ``where`` (a folder or a comma-separated list of jars),
    ``GEODETECT_SEDONA_JARS``, or ``build/jars`` of the geodetect checkout / the current folder.

    MissingDependencyError names the Maven coordinates when they are not there.
    """
    where = where if where is not None else os.environ.get("GEODETECT_SEDONA_JARS")
    if where is not None and not os.path.isdir(str(where)):
        jars = [j for j in str(where).split(",") if j]
        missing = [j for j in jars if not os.path.isfile(j)]
        if jars and not missing:
            return jars
        folders = []
    else:
        folders = [Path(where)] if where is not None else [Path(__file__).resolve().parents[1] / "build" / "jars",
                                                             Path.cwd() / "build" / "jars"]
    for folder in folders:
        jars = [folder / _jar_name(c) for c in SEDONA_COORDINATES]
        if all(j.is_file() for j in jars):
            return [str(j) for j in jars]
    raise MissingDependencyError(
        f"the Apache Sedona jars are not found ({', '.join(_jar_name(c) for c in SEDONA_COORDINATES)}): run "
        f"`make jars` in the geodetect checkout (Maven Central coordinates {SEDONA_PACKAGES}), or set "
        "GEODETECT_SEDONA_JARS to their folder, or start Spark with spark.jars.packages=" + SEDONA_PACKAGES
    )


def session(master: str | None = "local[2]", *, app_name: str = "geodetect", jars=None, ui: bool = False,
            conf: dict | None = None, sedona: bool = True, log_level: str = "ERROR"):
    """A SparkSession with Apache Sedona registered, ready for geodetect.

    Sets ``spark.jars`` (:func:`sedona_jars`), the Kryo serializer with Sedona's
    registrator and ``spark.sql.extensions`` (so pure-SQL clients, e.g. a Thrift
    server, see Sedona's functions), ``spark.ui.enabled=false`` unless ``ui``,
    and ``PYSPARK_PYTHON`` = this interpreter (workers must import geodetect).
    ``master`` is ``local[N]``, ``spark://host:port`` or None (keep what
    spark-submit set). ``conf`` adds or overrides settings. If a session is
    already running in this process it is reused (Spark's getOrCreate) and
    Sedona is registered in it.
    """
    _pyspark()
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    if master is None or str(master).startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    b = SparkSession.builder.appName(app_name)
    if master is not None:
        b = b.master(master)
    b = b.config("spark.ui.enabled", "true" if ui else "false").config("spark.pyspark.python", sys.executable)
    if sedona:
        b = b.config("spark.jars", ",".join(sedona_jars(jars)))
        for k, v in SEDONA_CONF.items():
            b = b.config(k, v)
    for k, v in (conf or {}).items():
        b = b.config(k, str(v))
    spark = b.getOrCreate()
    if log_level:
        spark.sparkContext.setLogLevel(log_level)
    if sedona:
        from sedona.spark import SedonaContext

        spark = SedonaContext.create(spark)
    return spark


def sedona_available(spark) -> bool:
    """True when Sedona's SQL functions are registered in this session."""
    # Spark 4.1 has a few ST_ functions of its own, so ask for one only Sedona registers: its H3 cover
    try:
        return bool(spark.catalog.functionExists("ST_H3CellIDs"))
    except Exception:  # noqa: BLE001
        return False


_checked_workers: dict = {}


def _worker_probe(_):
    """Runs in a Python worker: which interpreter, and what it cannot import."""
    import importlib
    import sys as _sys

    missing = []
    for mod in ("pyarrow", "pandas", "geodetect"):
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001
            missing.append(f"{mod} ({type(exc).__name__}: {exc})")
    return [(_sys.executable, _sys.version.split()[0], missing)]


def check_workers(spark) -> str:
    """Check once per Spark application that the Python workers can run geodetect; their interpreter.

    A worker Python without geodetect or pyarrow (a wrong ``PYSPARK_PYTHON``)
    raises ConfigError naming the interpreter the workers ran and what to set,
    instead of a worker traceback later.
    """
    sc = spark.sparkContext
    key = (sc.applicationId, sc.pythonExec)
    if key in _checked_workers:
        return _checked_workers[key]
    hint = (f"set PYSPARK_PYTHON (and spark.pyspark.python) to a Python where geodetect[spark] is installed on every "
            f"worker; this driver runs {sys.executable}")
    try:
        exe, ver, missing = sc.parallelize([0], 1).mapPartitions(_worker_probe).collect()[0]
    except Exception as exc:  # noqa: BLE001 - the worker could not start at all
        first = next((ln.strip() for ln in str(exc).splitlines()
                      if "Cannot run program" in ln or "Error" in ln or "error" in ln), str(exc).splitlines()[0])
        raise ConfigError(f"Spark workers could not run Python {sc.pythonExec!r} ({first[:300]}): {hint}") from None
    if missing:
        raise ConfigError(f"Spark workers ran Python {exe} ({ver}), which cannot import {', '.join(missing)}: {hint}")
    _checked_workers[key] = exe
    return exe


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


def _scenes(scenes) -> list:
    """The scenes of :func:`detect`: glob patterns expanded; STAC Items and ItemCollections (JSON files, URLs,
    pystac objects, dicts) one :class:`geodetect.stac.StacScene` per item, as in ``gd.detect``."""
    from geodetect.stac import expand_scenes

    if isinstance(scenes, (str, os.PathLike, dict)) or not hasattr(scenes, "__iter__"):  # one path or one item
        scenes = [scenes]
    items = []
    for s in scenes:
        items.extend(_expand(s) if isinstance(s, (str, os.PathLike)) else [s])
    out = expand_scenes(items)
    if not out:
        raise ConfigError("no scenes given")
    return out


def plan(scenes, detector, *, block_rows: int = 8, **options) -> list[tuple]:
    """Work units (path, scene_id, first tile row, end tile row, block number), made on the driver.

    Reads only the headers of the scenes. Scenes that cannot be opened become
    one unit each and fail in their task with their own error. A STAC item's
    path is :func:`geodetect.stac.scene_token`'s string (``stac-item:`` + its JSON).
    """
    return [u for u, _ in _plan(scenes, detector, block_rows=block_rows, **options)]


def _spec_of(detector):
    from geodetect.plugins.registry import get_detector, resolve_detector

    if isinstance(detector, str):
        return get_detector(detector).spec
    return getattr(detector, "spec", None) or resolve_detector(detector).spec


def _plan(scenes, detector, *, block_rows: int, **options) -> list[tuple[tuple, int]]:
    """(unit, number of tiles it runs) for each work unit, in scene order."""
    from geodetect.errors import GeodetectError
    from geodetect.io.raster import open_scene
    from geodetect.io.tiling import Tiling
    from geodetect.pipeline import make_options, scene_id_of, tile_row_blocks
    from geodetect.stac import scene_override, scene_source, scene_token

    spec = _spec_of(detector)
    opts = make_options(spec, progress=False, **options)
    units = []
    scenes = _scenes(scenes)
    ids = [scene_id_of(p) for p in scenes]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[0]
        raise ConfigError(f"scenes share the id {dup!r} (file stem or STAC item id); every scene needs its own id")
    for scene, sid in zip(scenes, ids):
        path = scene_token(scene)
        try:
            with scene_source(scene, spec.bands, opts.band_override) as src, \
                    open_scene(src, bands=spec.bands, scaling=opts.scaling,
                               band_override=scene_override(scene, opts.band_override, spec.n_bands),
                               gsd_m=spec.gsd_m, gsd_tolerance=opts.gsd_tolerance, crs=opts.crs, bounds=opts.bounds,
                               scene_id=sid, gsd_range=spec.gsd_range, detector=spec.name) as sc:
                nrow, ncol = Tiling(sc.width, sc.height, opts.tile_size, opts.overlap).shape
        except GeodetectError:
            units.append(((path, sid, 0, 0, 0), 0))
            continue
        blocks = tile_row_blocks(nrow, block_rows)
        units.extend(((path, sid, r0, r1, k), (r1 - r0) * ncol) for k, (r0, r1) in enumerate(blocks))
    return units


def _run_units(detector, options: dict, pieces: bool = False):
    """The function each Spark task runs: pandas batches of units in, detections out (WKB).

    ``pieces``: also yield the segmentation pieces cut by block borders (:data:`_PIECES_SCHEMA`).
    """

    def fn(batches):
        import json
        import os

        import numpy as np
        import pandas as pd
        import shapely
        from pyspark import TaskContext

        from geodetect.pipeline import detect_scene, make_options
        from geodetect.plugins.registry import resolve_detector
        from geodetect.stac import scene_of_token

        ctx = TaskContext.get()
        # one task = spark.task.cpus cores: models must not spread over the cores other tasks use
        os.environ.setdefault("GEODETECT_TF_THREADS", str(ctx.cpus() if ctx is not None else 1))
        os.environ.setdefault("GDAL_NUM_THREADS", os.environ["GEODETECT_TF_THREADS"])  # and GDAL's decoding too
        det = resolve_detector(detector)  # named detectors: loaded once per worker process
        _freeze_worker_heap()
        opts = make_options(det.spec, progress=False, **options)
        cols = ["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2", "block"]
        extra = ["_npix", "_score", "_geo"] if pieces else []
        for units in batches:
            for u in units.itertuples(index=False):
                rows = None if u.r1 == 0 else (u.r0, u.r1)
                gdf, st = detect_scene(det, scene_of_token(u.path), opts, scene_id=u.scene_id, tile_rows=rows)
                cut = getattr(st, "seg_pieces", None)
                if cut is not None and len(cut[0]):
                    g, cid, sc, npix, transform, crs = cut
                    n = len(g)
                    yield pd.DataFrame({
                        "detector": [det.spec.name] * n, "detector_version": [det.spec.version] * n,
                        "scene_id": [u.scene_id] * n,
                        "class_name": pd.Series(det.spec.classes, dtype=object).to_numpy()[cid].astype(str),
                        "score": pd.Series(sc, dtype="float32"),
                        "geometry": pd.Series(shapely.to_wkb(g), dtype=object),
                        "area_m2": pd.Series(np.zeros(n)), "block": pd.Series([int(u.block)] * n, dtype="int32"),
                        "_npix": pd.Series(npix, dtype="float64"), "_score": pd.Series(sc, dtype="float64"),
                        "_geo": [json.dumps({"transform": list(transform)[:6], "crs": crs.to_wkt()})] * n,
                    })
                out = pd.DataFrame({
                    "detector": gdf["detector"].astype(str), "detector_version": gdf["detector_version"].astype(str),
                    "scene_id": gdf["scene_id"].astype(str), "class_name": gdf["class_name"].astype(str),
                    "score": gdf["score"].astype("float32"),
                    "geometry": pd.Series(shapely.to_wkb(gdf.geometry.values), dtype=object),
                    "area_m2": gdf["area_m2"].astype("float64"),
                    "block": pd.Series([int(u.block)] * len(gdf), dtype="int32"),
                })
                for c in extra:
                    out[c] = None
                yield out[cols + extra]

    return fn


_heap_frozen = False


def _freeze_worker_heap() -> None:
    """Once per Python worker process, after the detector is loaded: hide the objects alive now from the
    garbage collector (``gc.freeze``).

    A reused PySpark worker runs ``gc.collect()`` after every task (pyspark.daemon). With TensorFlow and a
    model loaded (some 390,000 Python objects) each of those full collections took 0.3-0.5 s of the
    executor's only core, per task, for objects that live as long as the worker anyway. Objects made
    later (each task's own) are collected as before.
    """
    global _heap_frozen
    if _heap_frozen:
        return
    import gc

    gc.collect()
    gc.freeze()
    _heap_frozen = True


def _join_block_pieces(min_polygon_px: int, crs_out):
    """applyInPandas function, per (scene, group): detections pass through; the group of a scene's pieces
    (group -1) is joined across block borders (:func:`geodetect.stitch.join_pieces`) and georeferenced."""

    def fn(pdf):
        import json

        import numpy as np
        import pandas as pd
        import shapely
        from affine import Affine
        from rasterio.crs import CRS

        from geodetect import georef
        from geodetect.pipeline import _check_geometries
        from geodetect.stitch import join_pieces

        cols = ["detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2", "block"]
        if pdf["_npix"].isna().all():
            return pdf[cols]
        pdf = pdf.assign(_wkb=[bytes(w) for w in pdf["geometry"]]).sort_values(["block", "_wkb"]).reset_index(drop=True)
        names = sorted(set(pdf["class_name"]))
        cid = pdf["class_name"].map({c: i for i, c in enumerate(names)}).to_numpy(np.int64)
        geoms = shapely.from_wkb(pdf["_wkb"].to_list())
        g, c, sc, _ = join_pieces(geoms, cid, pdf["_score"].to_numpy(np.float64), pdf["_npix"].to_numpy(np.float64),
                                  min_polygon_px)
        geo = json.loads(pdf["_geo"].iloc[0])
        mapped = georef.polygons_to_map(g, Affine(*geo["transform"]), CRS.from_wkt(geo["crs"]), crs_out)
        path = str(pdf["scene_id"].iloc[0])
        empty = _check_geometries(mapped, path, crs_out)
        mapped, c, sc = np.asarray(mapped, dtype=object)[~empty], c[~empty], sc[~empty]
        # each joined polygon is reported by the first block it lies in
        owner = shapely.STRtree(geoms).query(g[~empty], predicate="contains") if len(g) else np.zeros((2, 0), int)
        first = pd.Series(pdf["block"].to_numpy()[owner[1]]).groupby(owner[0]).min().reindex(range(len(mapped)))
        n = len(mapped)
        return pd.DataFrame({
            "detector": [pdf["detector"].iloc[0]] * n, "detector_version": [pdf["detector_version"].iloc[0]] * n,
            "scene_id": [pdf["scene_id"].iloc[0]] * n, "class_name": np.asarray(names, dtype=object)[c].astype(str),
            "score": pd.Series(sc, dtype="float32"),
            "geometry": pd.Series(shapely.to_wkb(mapped), dtype=object),
            "area_m2": pd.Series(georef.area_m2(mapped, crs_out), dtype="float64"),
            "block": pd.Series(first.to_numpy(), dtype="int32"),
        })

    return fn


def detect(spark, scenes, detector, *, block_rows: int = 8, **options):
    """Detections of ``scenes`` as a Spark DataFrame.

    ``scenes`` are what ``gd.detect`` takes: paths, glob patterns, ``http(s)://``
    COG URLs, STAC Items and ItemCollections (JSON files, URLs, pystac objects;
    one scene per item, ``scene_id`` the item id, its datetime in a ``datetime``
    column). ``detector`` is a registered name (preferred: each worker loads it from its
    own installation) or a Detector class (pickled to the workers).
    ``options`` are those of :func:`geodetect.detect` (tile_size, overlap,
    batch_size, crs_out, bands, ...). Errors in a scene fail its task with the
    scene's own GeodetectError message.

    Columns: the detections schema, then ``block`` (the work unit's block number).
    With Sedona registered, ``geometry`` is a Sedona geometry whose SRID is
    ``crs_out``'s EPSG code, and ``geometry_wkb`` holds the same geometry as WKB
    for readers without Sedona; otherwise ``geometry`` is the WKB.
    Workers whose Python cannot import geodetect raise ConfigError at once (:func:`check_workers`).
    """
    _pyspark()
    options.pop("progress", None)
    check_workers(spark)
    planned = _plan(scenes, detector, block_rows=block_rows, **options)
    udf = _unit_frame(spark, planned)
    spec = _spec_of(detector)
    from geodetect.plugins import Task

    if spec.task is Task.SEGMENTATION and _split_scenes(planned):
        from pyspark.sql import functions as F

        from geodetect.pipeline import make_options

        crs_out = make_options(spec, progress=False, **options).crs_out
        raw = udf.mapInPandas(_run_units(detector, options, pieces=True), schema=_PIECES_SCHEMA)
        grp = F.when(F.col("_npix").isNull(), F.col("block")).otherwise(F.lit(-1))
        sdf = (raw.withColumn("_grp", grp).groupBy("scene_id", "_grp")
               .applyInPandas(_join_block_pieces(spec.min_polygon_px, crs_out), schema=DETECTIONS_SCHEMA))
    else:
        sdf = udf.mapInPandas(_run_units(detector, options), schema=DETECTIONS_SCHEMA)
    times = _item_datetimes(planned)
    if times:  # STAC items: their datetime as a column, as gd.detect gives it (null for plain rasters)
        from pyspark.sql import functions as F

        cols = sdf.columns
        tab = spark.createDataFrame(list(times.items()), "scene_id string, datetime timestamp")
        sdf = sdf.join(F.broadcast(tab), "scene_id", "left").select(*cols, "datetime")
    if sedona_available(spark):
        sdf = _with_sedona_geometry(sdf, _srid(options.get("crs_out") or "EPSG:4326"))
    return sdf


def _item_datetimes(planned) -> dict:
    """{scene id: UTC datetime} of the STAC items among the planned units (empty when there are none)."""
    from geodetect.stac import StacScene, scene_of_token

    items = {u[1]: scene_of_token(u[0]) for u, _ in planned if u[4] == 0}
    items = {sid: s for sid, s in items.items() if isinstance(s, StacScene)}
    if not items:
        return {}
    import pandas as pd

    return {sid: None if s.datetime is None else pd.to_datetime(s.datetime, utc=True).to_pydatetime()
            for sid, s in items.items()}


def _split_scenes(planned) -> bool:
    """True when some scene of the plan is split into more than one block."""
    blocks: dict = {}
    for u, _ in planned:
        blocks[u[1]] = blocks.get(u[1], 0) + 1
    return any(n > 1 for n in blocks.values())


def _srid(crs) -> int:
    """The EPSG code of ``crs`` (0 when it has none: Sedona's 'unknown')."""
    from pyproj import CRS

    code = CRS.from_user_input(crs).to_epsg()
    return int(code) if code else 0


def _with_sedona_geometry(sdf, srid: int):
    """WKB ``geometry`` -> Sedona ``geometry`` (with SRID) plus ``geometry_wkb``, in the detections column order."""
    from pyspark.sql import functions as F

    cols = [F.expr(f"ST_SetSRID(ST_GeomFromWKB(geometry), {int(srid)})").alias("geometry") if c == "geometry" else F.col(c)
            for c in sdf.columns]
    return sdf.select(*cols, F.col("geometry").alias("geometry_wkb"))


def _is_sedona_geometry(sdf, col: str = "geometry") -> bool:
    return type(sdf.schema[col].dataType).__name__ == "GeometryType"


def _geometry_expr(sdf) -> str:
    """SQL expression of the detections' geometry as a Sedona geometry (WKB or Sedona column)."""
    return "geometry" if _is_sedona_geometry(sdf) else "ST_GeomFromWKB(geometry)"


def _wkb_frame(sdf):
    """The detections with ``geometry`` as WKB (for Python workers and readers without Sedona)."""
    from pyspark.sql import functions as F

    if "geometry_wkb" in sdf.columns:
        return sdf.drop("geometry").withColumnRenamed("geometry_wkb", "geometry")
    if _is_sedona_geometry(sdf):
        return sdf.withColumn("geometry", F.expr("ST_AsBinary(geometry)"))
    return sdf


def as_wkb(sdf):
    """The detections with ``geometry`` as WKB (binary), whatever they had: for Python code and readers
    without Sedona (a Sedona ``geometry`` is replaced by ``geometry_wkb`` or ``ST_AsBinary``)."""
    return _wkb_frame(sdf)


def to_geopandas(sdf, crs="EPSG:4326"):
    """Collect a (small) Spark detections DataFrame as a geodetect detections GeoDataFrame."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    pdf = _wkb_frame(sdf).toPandas()
    wkb = pdf.pop("geometry")
    geom = shapely.from_wkb([None if w is None else bytes(w) for w in wkb]) if len(pdf) else []
    pdf = pdf.drop(columns=[c for c in ("block",) if c in pdf.columns])
    if "datetime" in pdf.columns and pd.api.types.is_datetime64_dtype(pdf["datetime"]):  # naive, Spark's session zone
        tz = sdf.sparkSession.conf.get("spark.sql.session.timeZone")
        pdf["datetime"] = pdf["datetime"].dt.tz_localize(tz).dt.tz_convert("UTC")
    gdf = gpd.GeoDataFrame(pdf, geometry=gpd.GeoSeries(geom, crs=crs), crs=crs)
    rest = [c for c in gdf.columns if c not in _COLUMNS]
    return gdf[list(_COLUMNS) + rest]


def write(sdf, path, *, crs="EPSG:4326", mode: str = "errorifexists") -> str:
    """Write Spark detections as GeoParquet with Sedona's writer (a folder of part files); the path.

    The file holds the detections schema (geometry in ``crs``, recorded as PROJJSON
    in the GeoParquet metadata); geopandas (``read_parquet``) and SedonaDB read
    it back as the same rows. Needs Sedona registered in the session.
    """
    from pyproj import CRS

    spark = sdf.sparkSession
    if not sedona_available(spark):
        raise MissingDependencyError("gds.write needs Apache Sedona in the Spark session: use gds.session(), or start "
                                     f"Spark with spark.jars.packages={SEDONA_PACKAGES}")
    g = sdf if _is_sedona_geometry(sdf) else _with_sedona_geometry(sdf, _srid(crs))
    out = g.select(*_COLUMNS)
    (out.write.format("geoparquet").mode(mode)
     .option("geoparquet.crs", CRS.from_user_input(crs).to_json())
     .save(os.fspath(path)))
    return os.fspath(path)


#: unit tables up to this many units and characters travel inside the query plan as one literal (no extra
#: Spark job); bigger ones are broadcast and joined, where one job more does not count
_INLINE_UNITS = (512, 1 << 20)


def _biggest_first(planned):
    """Planned units (unit, tiles), most tiles first: Spark starts partitions in order, so the longest units start
    first and the run does not end waiting on a big unit started last."""
    return sorted(planned, key=lambda p: -p[1])


def _unit_frame(spark, planned):
    """The work units as a DataFrame of one unit per partition, the biggest (most tiles) first.

    Spark starts partitions in order, so long units do not come last and leave
    cores idle; ``repartition()`` would deal units out unevenly, several to one
    task. The partitions come from ``spark.range`` (made in the JVM: no Python
    worker is needed just to produce the unit rows). Each row picks its unit from
    the unit table: for a plan of up to ``_INLINE_UNITS`` (units, characters) the
    table is a JSON literal that the optimizer folds into a constant array, so the
    detection is one Spark job; a broadcast join would first run a job of its own
    to collect the table (about 1.5 s before any executor starts on the scenes).
    Bigger plans are broadcast and joined.
    """
    import json

    from pyspark.sql import functions as F

    units = [u for u, _ in _biggest_first(planned)]
    n = max(1, len(units))
    cols = [c.split()[0] for c in _UNIT_SCHEMA.split(", ")]
    slots = spark.range(0, n, 1, numPartitions=n)
    text = json.dumps([dict(zip(cols, u)) for u in units])
    if len(units) <= _INLINE_UNITS[0] and len(text) <= _INLINE_UNITS[1]:
        struct = "array<struct<" + ",".join(":".join(c.split()) for c in _UNIT_SCHEMA.split(", ")) + ">>"
        table = F.from_json(F.lit(text), struct)
        return slots.select(F.element_at(table, (F.col("id") + 1).cast("int")).alias("_u")).select(
            *[F.col("_u." + c).alias(c) for c in cols])
    table = spark.createDataFrame([(i, *u) for i, u in enumerate(units)], "_unit long, " + _UNIT_SCHEMA)
    return slots.withColumnRenamed("id", "_unit").join(F.broadcast(table), "_unit").select(*cols)


_UDTF_SCHEMA = ("detector string, detector_version string, scene_id string, class_name string, score float, "
                "geometry binary, area_m2 double")
#: what ``geodetect_units`` yields: one row per work unit, as :func:`plan` makes them (``tiles``: tiles it runs),
#: biggest first; ``slot`` numbers them 0..n-1 in that order, ``_part`` is :func:`_slot_key` of the slot (what
#: ``geodetect_blocks`` partitions by) and ``_pad`` evens out the rows' sizes (:func:`_slot_pad`)
_SQL_UNITS_SCHEMA = _UNIT_SCHEMA + ", tiles long, detector string, slot int, _part int, _pad string"
_SQL_UNIT_COLUMNS = ("path", "scene_id", "r0", "r1", "block")
_M32 = 0xFFFFFFFF


def _unxorshift(h: int, s: int) -> int:
    """The inverse of ``h ^= h >>> s`` on 32 bits."""
    x = h
    for _ in range(32 // s + 1):
        x = h ^ (x >> s)
    return x & _M32


def _rotr(x: int, r: int) -> int:
    return ((x >> r) | (x << (32 - r))) & _M32


def _slot_key(slot: int) -> int:
    """The 32-bit integer whose Spark hash is ``slot``: Spark SQL's ``hash(_slot_key(i)) == i``.

    A ``PARTITION BY`` (and a Python UDTF's ``partitionBy``) shuffles rows to partition
    ``pmod(hash(key), N)`` (``HashPartitioning``: Murmur3 x86_32 with seed 42, ``N`` the shuffle
    partitions), so the rows keyed by ``_slot_key(0..n-1)`` land in partitions ``0..n-1`` (``i mod N``
    when ``n > N``), one each, whatever ``N`` is: no two units share a task by hash luck. Murmur3 of
    one int is a bijection of 32-bit integers; this runs its steps backwards.
    """
    h = slot & _M32
    h = _unxorshift(h, 16)
    h = (h * pow(0xC2B2AE35, -1, 1 << 32)) & _M32
    h = _unxorshift(h, 13)
    h = (h * pow(0x85EBCA6B, -1, 1 << 32)) & _M32
    h = _unxorshift(h, 16) ^ 4  # fmix, its length 4 (bytes) included
    h = _rotr(((h - 0xE6546B64) * pow(5, -1, 1 << 32)) & _M32, 13)
    k = h ^ 42  # the seed
    k = _rotr((k * pow(0x1B873593, -1, 1 << 32)) & _M32, 15)
    k = (k * pow(0xCC9E2D51, -1, 1 << 32)) & _M32
    return k - (1 << 32) if k >= 1 << 31 else k


def _slot_pad(units) -> list[str]:
    """Characters that bring every unit row to the same size (``path`` + ``scene_id`` + pad): hex digits of a
    hash chain, which the shuffle's LZ4 compression cannot shrink away.

    Spark's adaptive execution merges neighbouring shuffle partitions while together they hold at most
    total bytes / default parallelism: with 8 cores, 6 units of 424-character paths and 2 of 31 characters,
    the two short ones ran in one task (measured). Rows of equal size never pair up while there are no more
    units than cores.
    """
    import hashlib

    size = [len(u[0].encode()) + len(u[1].encode()) for u in units]
    top = max(size, default=0)
    pads = []
    for i, n in enumerate(size):
        text, block = "", hashlib.sha256(b"geodetect-slot-%d" % i).digest()
        while len(text) < top - n:
            text += block.hex()
            block = hashlib.sha256(block).digest()
        pads.append(text[: top - n])
    return pads


def _struct(schema: str):
    """A StructType from a ``name type, ...`` string of the simple types used here (analyze cannot parse DDL)."""
    from pyspark.sql.types import (BinaryType, DoubleType, FloatType, IntegerType, LongType, StringType, StructField,
                                   StructType)

    types = {"string": StringType(), "float": FloatType(), "binary": BinaryType(), "double": DoubleType(),
             "int": IntegerType(), "long": LongType()}
    return StructType([StructField(n, types[t]) for n, t in (f.split() for f in schema.split(", "))])


def _py(v):
    """A pandas / numpy value as the plain Python value a Python UDTF row holds (None for missing)."""
    import numpy as np

    if v is None or (isinstance(v, float) and v != v):
        return None
    if isinstance(v, np.generic):
        return v.item()
    return bytes(v) if isinstance(v, (bytearray, memoryview)) else v


def _detector_arg(arg, fn: str) -> str:
    if arg is None or arg.isTable or not isinstance(arg.value, str) or not arg.value:
        raise ConfigError(f"{fn}: the detector must be a constant detector name (a string), e.g. 'vehicle-detector'")
    return arg.value


def _table_functions(extra: dict) -> dict:
    """The SQL table functions (Python UDTF classes) by name; ``extra``: detector name -> Detector class
    besides the installed ones (pickled to the workers with the classes)."""
    from pyspark.sql.udtf import AnalyzeResult, PartitioningColumn

    def detector_of(name):
        return extra.get(name, name)

    class DetectUDTF:
        """``geodetect_detect``: whole scenes (a TABLE of paths, or a literal pattern), or the second step of
        the block form (a TABLE of ``geodetect_blocks`` rows: pieces joined per scene, detections passed on)."""

        @staticmethod
        def analyze(first, second=None):
            schema = _struct(_UDTF_SCHEMA)
            if first.isTable:
                _detector_arg(second, "geodetect_detect")
                cols = [f.name for f in first.dataType.fields]
                if "_npix" in cols:  # block results: one partition per scene, to join its pieces
                    return AnalyzeResult(schema=schema, partitionBy=[PartitioningColumn("scene_id")])
                if set(_SQL_UNIT_COLUMNS) <= set(cols):
                    raise ConfigError("geodetect_detect: this table holds work units; run them first: "
                                      "geodetect_detect(TABLE(SELECT * FROM geodetect_blocks(TABLE(units), detector)), "
                                      "detector)")
                return AnalyzeResult(schema=schema, partitionBy=[PartitioningColumn(cols[0])])
            if first.value is None or second is None or not isinstance(second.value, str):
                raise ConfigError("geodetect_detect takes (TABLE(scenes), detector) or (detector, 'path or pattern')")
            return AnalyzeResult(schema=schema)

        def __init__(self):
            self.pieces = []

        def eval(self, first, second=None):
            from pyspark.sql import Row

            if not isinstance(first, Row):  # literal form: every matching scene, in this one call
                yield from self._whole(first, _expand(second))
            elif "_npix" in first.__fields__:
                if first["_npix"] is None:  # a detection of one block: final as it is
                    yield tuple(_py(first[c]) for c in _UDTF_SCHEMA_COLUMNS)
                else:
                    self.detector = second
                    self.pieces.append(first.asDict())
            else:  # TABLE of paths: one scene per input row, whole
                yield from self._whole(second, [first[0]])

        def terminate(self):
            if not self.pieces:
                return
            import pandas as pd

            from geodetect.pipeline import make_options
            from geodetect.plugins.registry import resolve_detector

            spec = resolve_detector(detector_of(self.detector)).spec
            pdf = pd.DataFrame(self.pieces)
            joined = _join_block_pieces(spec.min_polygon_px, make_options(spec, progress=False).crs_out)(pdf)
            for row in joined[list(_UDTF_SCHEMA_COLUMNS)].itertuples(index=False):
                yield tuple(_py(v) for v in row)

        @staticmethod
        def _whole(detector, paths):
            import shapely

            from geodetect.pipeline import detect_scene, make_options
            from geodetect.plugins.registry import resolve_detector

            det = resolve_detector(detector_of(detector))
            _freeze_worker_heap()
            opts = make_options(det.spec, progress=False)
            for path in paths:
                gdf, _ = detect_scene(det, path, opts)
                wkb = shapely.to_wkb(gdf.geometry.values)
                for row, g in zip(gdf.itertuples(index=False), wkb):
                    yield (row.detector, row.detector_version, row.scene_id, row.class_name, float(row.score),
                           bytes(g), float(row.area_m2))

    class UnitsUDTF:
        """``geodetect_units(TABLE(scenes), detector[, block_rows])``: the work units of :func:`plan` (headers only)."""

        @staticmethod
        def analyze(scenes, detector=None, block_rows=None):
            if not scenes.isTable:
                raise ConfigError("geodetect_units: the first argument must be TABLE(scenes), a table of scene paths")
            _detector_arg(detector, "geodetect_units")
            if block_rows is not None and (block_rows.isTable or isinstance(block_rows.value, bool)
                                           or not isinstance(block_rows.value, int) or block_rows.value < 1):
                raise ConfigError("geodetect_units: block_rows must be a constant integer >= 1 (tile rows per block)")
            # one call sees every scene: the plan (and its check that scene ids differ) is that of gds.detect
            return AnalyzeResult(schema=_struct(_SQL_UNITS_SCHEMA), withSinglePartition=True)

        def __init__(self):
            self.paths = []

        def eval(self, row, detector, block_rows=None):
            self.detector, self.block_rows = detector, 8 if block_rows is None else int(block_rows)
            if row[0] is None:
                raise ConfigError("geodetect_units: a scene path is NULL")
            self.paths.append(str(row[0]))

        def terminate(self):
            if not self.paths:
                return
            planned = _plan(self.paths, detector_of(self.detector), block_rows=self.block_rows)
            planned = _biggest_first(planned)
            pads = _slot_pad([u for u, _ in planned])
            for slot, (((path, sid, r0, r1, k), tiles), pad) in enumerate(zip(planned, pads)):
                yield path, sid, int(r0), int(r1), int(k), int(tiles), self.detector, slot, _slot_key(slot), pad

    class BlocksUDTF:
        """``geodetect_blocks(TABLE(units), detector)``: each unit in its own partition; detections of its rows,
        and (segmentation) the pieces of polygons cut by its borders, for ``geodetect_detect`` to join.

        The units of ``geodetect_units`` are partitioned by ``_part`` (:func:`_slot_key`): unit ``slot`` i goes
        to shuffle partition i, one unit per task. A units table without ``_part`` is partitioned by
        (path, block), where hashing may put several units in one task."""

        @staticmethod
        def analyze(units, detector=None):
            cols = {f.name for f in units.dataType.fields} if units.isTable else set()
            if not units.isTable or not set(_SQL_UNIT_COLUMNS) <= cols:
                raise ConfigError("geodetect_blocks: the first argument must be TABLE(units), the rows of "
                                  "geodetect_units(TABLE(scenes), detector)")
            _detector_arg(detector, "geodetect_blocks")
            by = ["_part"] if "_part" in cols else ["path", "block"]
            return AnalyzeResult(schema=_struct(_PIECES_SCHEMA), partitionBy=[PartitioningColumn(c) for c in by])

        def eval(self, unit, detector):
            import pandas as pd

            planned = unit["detector"] if "detector" in unit.__fields__ else None
            if planned is not None and planned != detector:
                raise ConfigError(f"geodetect_blocks: the units were planned for {planned!r}, not {detector!r}")
            u = pd.DataFrame({c: [unit[c]] for c in _SQL_UNIT_COLUMNS})
            for out in _run_units(detector_of(detector), {}, pieces=True)(iter([u])):
                for row in out.itertuples(index=False):
                    yield tuple(_py(v) for v in row)

    return {"geodetect_detect": DetectUDTF, "geodetect_units": UnitsUDTF, "geodetect_blocks": BlocksUDTF}


_UDTF_SCHEMA_COLUMNS = tuple(f.split()[0] for f in _UDTF_SCHEMA.split(", "))
def register(spark, *, detections=None, view: str = "detections", detectors=()) -> None:
    """Register geodetect's SQL functions and, if given, a detections view.

    Table functions (Python UDTFs) and, with Sedona registered, the tile-level
    ``RS_DETECT_BBOXES``, ``RS_SEGMENT``, ``RS_CLASSIFY`` and ``RS_MAX_CONFIDENCE``
    on Sedona rasters (see :mod:`geodetect.spark_raster`: they see one tile and
    do not merge seams). ``detectors``: Detector classes the SQL functions may
    name besides the installed ones (pickled to the workers).

    ``SELECT * FROM geodetect_detect(TABLE(scenes), 'vehicle-detector')`` runs the
    scenes whose paths are the first column of ``scenes``, each scene whole in
    one call (rows partitioned by path: scenes spread over tasks, blocks do not).
    Big scenes spread in blocks of tile rows, with the seam rules of
    :func:`detect`, take three calls::

        SELECT * FROM geodetect_detect(TABLE(
          SELECT * FROM geodetect_blocks(TABLE(
            SELECT * FROM geodetect_units(TABLE(scenes), 'water-segmenter', 8)), 'water-segmenter')),
          'water-segmenter')

    ``geodetect_units`` reads the headers and yields the work units of
    :func:`plan` (one call for all scenes), biggest first, numbered in ``slot``;
    ``geodetect_blocks`` runs each unit in its own partition and yields its
    detections and, for segmentation, the pieces of polygons cut by block
    borders. Units are not left to hash luck: ``geodetect_blocks`` partitions by
    ``_part``, a key whose Spark hash is the slot, so unit i goes to shuffle
    partition i (i mod the partition count), and ``_pad`` gives the unit rows
    one size, so adaptive execution does not merge two units into one task
    while there are no more units than cores. ``geodetect_detect`` on those rows
    joins the pieces per scene (one partition per scene). The result equals
    :func:`detect` and ``gd.detect``. One call cannot do this: a Python UDTF's
    input is repartitioned once (its ``analyze`` partitionBy) and cannot turn one
    scene row into several partitions, and Spark 4.0's SQL table functions
    refuse TABLE arguments and UDTF calls on tables in their body
    (TABLE_VALUED_ARGUMENTS_NOT_YET_IMPLEMENTED_FOR_SQL_FUNCTIONS).

    Spark's adaptive execution merges small shuffle partitions until each holds
    ``spark.sql.adaptive.coalescePartitions.minPartitionSize`` (1 MB by default),
    which puts every unit row of a query (a few hundred bytes) in one task; when
    that setting is not set, this sets it to 1 byte in the session, so the
    partitions of the table functions are merged only down to the default
    parallelism (every core keeps working). Geometries are WKB in ``geometry``:
    ``ST_GeomFromWKB(geometry)`` makes them Sedona geometries for spatial joins.
    """
    _pyspark()
    from pyspark.sql.functions import udtf

    from geodetect.plugins.registry import validate_detector_class

    extra = {}
    for cls in detectors or ():
        validate_detector_class(cls)
        extra[cls.spec.name] = cls
    for name, cls in _table_functions(extra).items():
        spark.udtf.register(name, udtf(cls))
    key = "spark.sql.adaptive.coalescePartitions.minPartitionSize"
    if spark.conf.get(key, None) is None:
        spark.conf.set(key, "1")
        log.info("geodetect.spark.register: %s set to 1 byte so that work units spread over tasks", key)
    if detections is not None:
        detections.createOrReplaceTempView(view)
    if sedona_available(spark):  # Sedona's raster type is what the RS_ functions take
        from geodetect.spark_raster import register_raster_functions

        register_raster_functions(spark, detectors)
    else:
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


def aggregate(sdf, regions, by: str, *, name_col: str | None = None, classes=None, crs="EPSG:4326",
              method: str | None = None):
    """Counts, areas and densities per region and class of a Spark detections DataFrame.

    Same result, same border rule and same columns as :func:`geodetect.aggregate`.
    ``regions`` is a GeoDataFrame or a vector file (small: it is broadcast).
    ``method``: ``"sedona"`` runs :data:`geodetect.engines.AGGREGATE_SQL` (the
    SQL SedonaDB runs) on Spark with Sedona's spatial join; ``"strtree"`` assigns
    detections to regions with an STRtree inside ``mapInPandas`` (a broadcast
    join) and Spark sums them; None picks Sedona when it is registered. Which
    path ran is in ``result.attrs["geodetect"]["path"]``. Only the small
    region x class table reaches the driver.
    """
    _pyspark()
    from geodetect.analytics import _classes_table, _prepare_regions, _with_region_columns

    spark = sdf.sparkSession
    if method not in (None, "sedona", "strtree"):
        raise ConfigError(f"method must be 'sedona', 'strtree' or None, not {method!r}")
    if method == "sedona" and not sedona_available(spark):
        raise MissingDependencyError(f"method='sedona' needs Apache Sedona in the Spark session: use gds.session(), or "
                                     f"start Spark with spark.jars.packages={SEDONA_PACKAGES}")
    reg = _prepare_regions(regions, by, name_col, crs)
    if classes is None:
        classes = [r.class_name for r in sdf.select("class_name").distinct().collect()]
    res, path = _counts(sdf, reg, _classes_table(classes), method)
    out = _with_region_columns(res, reg, lead=("class_name",))
    out.attrs["geodetect"] = {"engine": "spark", "path": path}
    return out


def _counts(sdf, reg, cls, method):
    """Normalised region x class counts (with ``_region_order``) and the path that made them."""
    import numpy as np
    import shapely
    from pyspark.sql import functions as F

    from geodetect.analytics import _normalise_counts
    from geodetect.engines.geopandas import complete

    spark = sdf.sparkSession
    if method == "sedona" or (method is None and sedona_available(spark)):
        path = "sedona"
        res = _aggregate_sedona(spark, sdf, reg, cls)
    else:
        path = "broadcast STRtree join" + ("" if method == "strtree" else " (Sedona not registered)")
        table = reg.table
        fn = _assign_partitions([bytes(w) for w in shapely.to_wkb(np.asarray(table.geometry.values, dtype=object))],
                                table["_region_order"].to_numpy(np.int64), table.crs.to_wkt())
        assigned = _wkb_frame(sdf).select("class_name", "geometry", "area_m2").mapInPandas(fn, schema=_ASSIGNED_SCHEMA)
        per = (assigned.groupBy("_region_order", "class_name")
               .agg(F.count(F.lit(1)).alias("n"), F.sum("_area_q").alias("area_q")).toPandas())
        res = complete(per.astype({"n": "int64", "area_q": "int64"}), table, cls)
    if path not in _warned_paths:
        _warned_paths.add(path)
        log.info("geodetect.spark.aggregate: %s%s", path,
                 "" if path == "sedona" or method == "strtree" else
                 f"; to run Sedona SQL start Spark with spark.jars.packages={SEDONA_PACKAGES}")
    return _normalise_counts(res), path


def _regions_frame(spark, reg):
    """The prepared regions as a Spark DataFrame with a Sedona geometry."""
    import shapely
    from pyspark.sql import functions as F

    return spark.createDataFrame(
        [(int(o), float(a), bytes(w)) for o, a, w in zip(reg.table["_region_order"], reg.table["region_area_km2"],
                                                         shapely.to_wkb(reg.table.geometry.values))],
        "_region_order long, region_area_km2 double, wkb binary",
    ).withColumn("geometry", F.expr("ST_GeomFromWKB(wkb)")).drop("wkb")


def _point_detections(sdf, keep=("class_name",)):
    """Detections as Sedona points (points as they are, others their point on surface) with ``_area_q``."""
    from pyspark.sql import functions as F

    g = _geometry_expr(sdf)
    return (sdf.withColumn("_area_q", F.floor(F.col("area_m2") * 1000.0 + 0.5).cast("long"))
            .withColumn("_g", F.expr(g))
            .withColumn("geometry", F.expr("CASE WHEN ST_GeometryType(_g) = 'ST_Point' THEN _g "
                                           "ELSE ST_PointOnSurface(_g) END"))
            .select(*keep, "_area_q", "geometry"))


def _aggregate_sedona(spark, sdf, reg, cls):
    from pyspark.sql import functions as F

    from geodetect.engines import AGGREGATE_SQL

    dets = _point_detections(sdf.withColumn("_det_id", F.monotonically_increasing_id()),
                             keep=("_det_id", "class_name"))
    classes = spark.createDataFrame([(c,) for c in cls["class_name"]], "class_name string")
    # the regions are small: a broadcast hint makes Sedona join with a broadcast spatial index
    # instead of spatially partitioning (shuffling) every detection
    F.broadcast(_regions_frame(spark, reg)).createOrReplaceTempView("_gd_regions")
    dets.createOrReplaceTempView("_gd_detections")
    classes.createOrReplaceTempView("_gd_classes")
    q = AGGREGATE_SQL.format(detections="_gd_detections", regions="_gd_regions", classes="_gd_classes")
    return spark.sql(q).toPandas()


def heatmap(sdf, resolution: int = 7):
    """Counts of Spark detections per H3 cell and class with Sedona's H3 functions; equals :func:`geodetect.heatmap`.

    The cell of each detection (its point, or its point on surface) is found on
    Spark with ``ST_H3CellIDs``; only the cell x class counts reach the driver,
    where the cells' polygons are built exactly as ``gd.heatmap`` builds them.
    Detections not in EPSG:4326 are moved there with Sedona's ``ST_Transform``.
    """
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    from pyspark.sql import functions as F

    from geodetect.analytics import _cell_polygons, _import_h3
    from geodetect.regions import split_antimeridian

    spark = sdf.sparkSession
    if not sedona_available(spark):
        raise MissingDependencyError("gds.heatmap needs Apache Sedona in the Spark session: use gds.session(), or "
                                     f"start Spark with spark.jars.packages={SEDONA_PACKAGES}")
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 0 <= int(resolution) <= 15:
        raise ConfigError(f"H3 resolution must be an integer from 0 to 15, not {resolution!r}")
    res = int(resolution)
    pts = _point_detections(sdf)
    if _is_sedona_geometry(sdf):
        srid = sdf.select(F.expr("ST_SRID(geometry)").alias("s")).limit(1).collect()
        if srid and srid[0].s not in (0, 4326):
            pts = pts.withColumn("geometry", F.expr(f"ST_Transform(geometry, 'EPSG:{int(srid[0].s)}', 'EPSG:4326')"))
    empty = "geometry IS NULL OR ST_IsEmpty(geometry)"
    cells = (pts.select("class_name", F.expr(f"CASE WHEN {empty} THEN NULL ELSE "
                                              f"lower(hex(element_at(ST_H3CellIDs(geometry, {res}, false), 1))) END")
                        .alias("h3_cell"))
             .groupBy("h3_cell", "class_name").agg(F.count(F.lit(1)).alias("count"))
             .orderBy("h3_cell", "class_name").toPandas())  # one pass over the detections
    skipped = int(cells.loc[cells["h3_cell"].isna(), "count"].sum())
    cells = cells[cells["h3_cell"].notna()].reset_index(drop=True)
    h3 = _import_h3()
    uniq = list(dict.fromkeys(cells["h3_cell"]))
    polys = split_antimeridian(_cell_polygons(h3, uniq)) if uniq else np.array([], dtype=object)
    idx = {c: i for i, c in enumerate(uniq)}
    out = gpd.GeoDataFrame(
        {"h3_cell": cells["h3_cell"].to_numpy(object), "class_name": cells["class_name"].to_numpy(object),
         "count": cells["count"].to_numpy(np.int64)},
        geometry=gpd.GeoSeries(polys[[idx[c] for c in cells["h3_cell"]]] if len(cells) else [], crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    if not len(out):
        out = out.astype({"h3_cell": object, "class_name": object, "count": np.int64})
    out.attrs["geodetect"] = {"resolution": res, "detections": int(pd.Series(cells["count"]).sum()),
                              "skipped_empty": skipped}
    return out


def _change_keys(grid_size):
    """mapInPandas function: detections -> the matching key of ``gd.change`` (normalised WKB) with class and area."""

    def fn(batches):
        import numpy as np
        import pandas as pd
        import shapely

        for pdf in batches:
            g = shapely.from_wkb([None if w is None else bytes(w) for w in pdf["geometry"]])
            ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
            g = g[ok]
            if grid_size:
                g = shapely.set_precision(g, grid_size)
            yield pd.DataFrame({
                "_key": pd.Series(list(shapely.to_wkb(shapely.normalize(g))), dtype=object),
                "class_name": pdf["class_name"].astype(str).to_numpy(object)[ok],
                "geometry": pdf["geometry"].to_numpy(object)[ok],
                "area_m2": pdf["area_m2"].to_numpy(np.float64)[ok],
            })

    return fn


def change(before, after, regions, by: str, *, name_col: str | None = None, grid_size: float | None = None,
           crs="EPSG:4326"):
    """:func:`geodetect.change` for two Spark detections DataFrames (same CRS, ``crs``); the same report.

    Deltas are two :func:`aggregate` runs; transitions match detections by
    identical normalised geometry on Spark (a join on the key), and the matched
    ones are assigned to regions with Sedona's spatial join. Only region tables
    reach the driver.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from geodetect.analytics import (ChangeReport, _classes_table, _prepare_regions, _transitions_table,
                                     _with_region_columns)
    from geodetect.engines import ASSIGN_SQL

    spark = after.sparkSession
    if not sedona_available(spark):
        raise MissingDependencyError("gds.change needs Apache Sedona in the Spark session: use gds.session()")
    classes = sorted({r.class_name for r in before.select("class_name").union(after.select("class_name"))
                      .distinct().collect()})
    reg = _prepare_regions(regions, by, name_col, crs)
    cls = _classes_table(classes)
    cb, _ = _counts(before, reg, cls, "sedona")
    ca, _ = _counts(after, reg, cls, "sedona")
    keys = ["_region_order", "class_name"]
    d = cb[keys + ["count", "area_m2"]].merge(ca[keys + ["count", "area_m2"]], on=keys, suffixes=("_before", "_after"))
    d["count_delta"] = d["count_after"] - d["count_before"]
    d["area_m2_delta"] = d["area_m2_after"] - d["area_m2_before"]
    d = d[keys + ["count_before", "count_after", "count_delta", "area_m2_before", "area_m2_after", "area_m2_delta"]]
    deltas = _with_region_columns(d, reg, lead=("class_name",))

    schema = "_key binary, class_name string, geometry binary, area_m2 double"
    w = Window.partitionBy("_key").orderBy("class_name")

    def keyed(sdf):
        k = _wkb_frame(sdf).select("class_name", "geometry", "area_m2").mapInPandas(_change_keys(grid_size), schema)
        return k.withColumn("_nth", F.row_number().over(w))

    kb, ka = keyed(before).persist(), keyed(after).persist()
    try:
        m = (kb.select("_key", "_nth", F.col("class_name").alias("class_before"))
             .join(ka.select("_key", "_nth", F.col("class_name").alias("class_after"), "geometry", "area_m2"),
                   ["_key", "_nth"]))
        m = m.withColumn("_det_id", F.monotonically_increasing_id())
        pts = _point_detections(m, keep=("_det_id", "class_before", "class_after"))
        _regions_frame(spark, reg).createOrReplaceTempView("_gd_regions")
        pts.withColumn("class_name", F.lit("")).createOrReplaceTempView("_gd_matched")
        assigned = spark.sql(ASSIGN_SQL.format(detections="_gd_matched", regions="_gd_regions"))
        t = (assigned.join(pts.select("_det_id", "class_before", "class_after"), "_det_id")
             .groupBy("_region_order", "class_before", "class_after")
             .agg(F.count(F.lit(1)).alias("count"), F.sum("_area_q").alias("area_q"))
             .orderBy("_region_order", "class_before", "class_after").toPandas())
        n_b, n_a, n_m = kb.count(), ka.count(), m.count()
    finally:
        kb.unpersist()
        ka.unpersist()
    transitions = _transitions_table(t, reg)
    return ChangeReport(deltas=deltas, transitions=transitions, matched=int(n_m), unmatched_before=int(n_b - n_m),
                        unmatched_after=int(n_a - n_m), attrs={"engine": "spark"})
