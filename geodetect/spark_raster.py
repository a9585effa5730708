"""Tile-level detection SQL functions on Sedona rasters, with the signatures of Wherobots' raster-inference functions.

After ``gds.register(spark)``, any SQL client of the session (spark.sql, a
Thrift server started from it, beeline) can call::

    RS_DETECT_BBOXES('vehicle-detector', rast)     -- struct<bboxes_wkt, confidence_scores, labels, class_names>
    RS_SEGMENT('water-segmenter', rast)            -- struct<confidence_array, class_map, class_array, width,
                                                   --        height, geometries_wkt, confidence_scores, labels>
    RS_CLASSIFY('land-use-classifier', rast)       -- map<label, confidence>
    RS_MAX_CONFIDENCE(RS_CLASSIFY(...))            -- struct<max_confidence_label, max_confidence_score>

``rast`` is a Sedona raster (``RS_FromGeoTiff(content)`` of a ``binaryFile``
read, a tile of ``RS_TileExplode``, ...), of any band count and any CRS: the
detector picks its bands and scales them exactly as :func:`geodetect.detect`
does. Each call runs :func:`geodetect.detect`'s own code on that one raster
(written as a GeoTIFF in the worker's temporary folder), so its results are
those of ``gd.detect`` on the same tile. Geometries are WKT in EPSG:4326
(lon/lat), full precision: ``ST_GeomFromWKT`` makes Sedona geometries of them.

They see one tile and do not merge seams: an object cut by a tile border is
reported (or missed) by each tile on its own, with no halo and no blend
across tiles. For whole scenes with exact seams use ``gds.detect`` or
``geodetect_detect(TABLE(scenes), detector)``.

Python UDFs (one row at a time; Sedona hands each raster to Python as a
``SedonaRaster``). Detectors are found by name in the worker's geodetect
installation, or among the Detector classes given to ``gds.register(spark,
detectors=[...])`` (pickled to the workers: their module must import there).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from geodetect.errors import ConfigError

__all__ = ["register_raster_functions", "detect_raster", "RS_FUNCTIONS", "BBOXES_TYPE", "SEGMENT_TYPE",
           "CLASSIFY_TYPE", "MAX_CONFIDENCE_TYPE"]

#: the SQL names registered by :func:`register_raster_functions`
RS_FUNCTIONS = ("RS_DETECT_BBOXES", "RS_SEGMENT", "RS_CLASSIFY", "RS_MAX_CONFIDENCE")
#: Wherobots' fields first (bboxes_wkt, confidence_scores, labels), then the class names of the labels
BBOXES_TYPE = ("struct<bboxes_wkt:array<string>,confidence_scores:array<float>,labels:array<int>,"
               "class_names:array<string>>")
#: Wherobots' fields first (confidence_array, class_map), then the per-pixel classes and the polygons
SEGMENT_TYPE = ("struct<confidence_array:array<float>,class_map:map<string,int>,class_array:array<int>,width:int,"
                "height:int,geometries_wkt:array<string>,confidence_scores:array<float>,labels:array<int>>")
CLASSIFY_TYPE = "map<string,float>"
MAX_CONFIDENCE_TYPE = "struct<max_confidence_label:string,max_confidence_score:float>"

_loaded: dict = {}


def _detector(name, extra: dict):
    """A loaded detector for ``name``: one of ``extra`` (name -> class) or a registered one; once per process."""
    from geodetect.plugins.registry import resolve_detector

    if not isinstance(name, str) or not name:
        raise ConfigError(f"the first argument must be a detector name (a string), not {name!r}")
    det = _loaded.get(name)
    if det is None:
        det = _loaded.setdefault(name, resolve_detector(extra.get(name, name)))
        from geodetect.spark import _freeze_worker_heap

        _freeze_worker_heap()  # the model's objects out of the per-task gc.collect() of reused workers
    return det


class _Recorder:
    """A detector whose raw per-tile results are kept (RS_CLASSIFY reads the class probabilities)."""

    def __init__(self, det):
        self.det, self.spec, self.raw = det, det.spec, []

    def predict(self, tiles):
        out = self.det.predict(tiles)
        self.raw.extend(out)
        return out


def _write_geotiff(raster, path: str) -> tuple:
    """Write a SedonaRaster (or copy a GeoTIFF path) to ``path``; its (transform, crs, width, height)."""
    import rasterio

    if isinstance(raster, (str, os.PathLike)):
        with rasterio.open(raster) as src:
            profile, data = src.profile, src.read()
    else:
        with raster.as_rasterio() as src:  # Sedona's own conversion: transform, CRS and nodata as Sedona has them
            profile, data = dict(src.profile), src.read()
    profile.update(driver="GTiff")
    for k in ("blockxsize", "blockysize", "tiled", "compress", "interleave"):
        profile.pop(k, None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return profile["transform"], profile.get("crs"), int(profile["width"]), int(profile["height"])


def detect_raster(detector, raster, *, extra: dict | None = None, **options):
    """Run ``detector`` on one raster (a SedonaRaster or a GeoTIFF path) with :func:`geodetect.detect`'s code.

    Returns (detections GeoDataFrame, raw per-tile detector results, (transform, crs, width, height) of the
    raster). ``options`` are those of :func:`geodetect.detect`.
    """
    from geodetect.pipeline import detect_scene, make_options

    det = _detector(detector, extra or {}) if isinstance(detector, str) else detector
    rec = _Recorder(det)
    opts = make_options(det.spec, progress=False, **options)
    fd, path = tempfile.mkstemp(prefix="geodetect-rs-", suffix=".tif")
    os.close(fd)
    try:
        grid = _write_geotiff(raster, path)
        gdf, _ = detect_scene(rec, path, opts, scene_id="tile")
    finally:
        try:
            os.remove(path)
        except OSError:
            pass
    return gdf, rec.raw, grid


def _wkt(geoms) -> list:
    import shapely

    return [str(w) for w in shapely.to_wkt(np.asarray(geoms, dtype=object), rounding_precision=-1)]


def _check_task(det, want, fn: str):
    from geodetect.plugins import Task

    if det.spec.task not in want:
        tasks = " or ".join(t.name.lower() for t in want)
        raise ConfigError(f"{fn}: detector {det.spec.name!r} does a {det.spec.task.name.lower()} task; {fn} needs a "
                          f"{tasks} detector")


def bboxes(detector, raster, extra=None) -> dict | None:
    """RS_DETECT_BBOXES on one raster: boxes (box detectors) or points (point detectors) as EPSG:4326 WKT."""
    from geodetect.plugins import Task

    if raster is None:
        return None
    det = _detector(detector, extra or {})
    _check_task(det, (Task.BOXES, Task.POINTS), "RS_DETECT_BBOXES")
    gdf, _, _ = detect_raster(det, raster)
    ids = {c: i for i, c in enumerate(det.spec.classes)}
    return {"bboxes_wkt": _wkt(gdf.geometry.values), "confidence_scores": [float(s) for s in gdf["score"]],
            "labels": [ids[c] for c in gdf["class_name"]], "class_names": [str(c) for c in gdf["class_name"]]}


def segment(detector, raster, extra=None) -> dict | None:
    """RS_SEGMENT on one raster: the polygons of :func:`geodetect.detect`, and per pixel of the raster's own grid
    (row-major) the class value (``class_map``; 0: none) and confidence of the polygon holding the pixel centre."""
    import rasterio.features
    import shapely

    from geodetect.georef import transformer
    from geodetect.plugins import Task

    if raster is None:
        return None
    det = _detector(detector, extra or {})
    _check_task(det, (Task.SEGMENTATION,), "RS_SEGMENT")
    gdf, _, (transform, crs, width, height) = detect_raster(det, raster)
    classes = det.spec.classes
    ids = {c: i for i, c in enumerate(classes)}
    labels = [ids[c] for c in gdf["class_name"]]
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    cls = np.zeros((height, width), np.int32)
    conf = np.zeros((height, width), np.float32)
    if len(geoms):
        t = transformer("EPSG:4326", crs)

        def back(xy):
            x, y = t.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        local = shapely.transform(geoms, back)
        cls = rasterio.features.rasterize(((g, k + 1) for g, k in zip(local, labels)), out_shape=(height, width),
                                          transform=transform, fill=0, dtype="int32")
        conf = rasterio.features.rasterize(((g, float(s)) for g, s in zip(local, gdf["score"])),
                                           out_shape=(height, width), transform=transform, fill=0.0, dtype="float32")
    return {"confidence_array": conf.ravel().tolist(), "class_map": {c: i + 1 for i, c in enumerate(classes)},
            "class_array": cls.ravel().tolist(), "width": width, "height": height,
            "geometries_wkt": _wkt(geoms), "confidence_scores": [float(s) for s in gdf["score"]], "labels": labels}


def classify(detector, raster, extra=None) -> dict | None:
    """RS_CLASSIFY on one raster: label -> confidence, the class probabilities of the detector's tiles on this
    raster (their mean when the raster holds several of the detector's tiles; tiles all nodata are not run)."""
    from geodetect.plugins import Task

    if raster is None:
        return None
    det = _detector(detector, extra or {})
    _check_task(det, (Task.CLASSIFICATION,), "RS_CLASSIFY")
    _, raw, _ = detect_raster(det, raster)
    if not raw:
        return None  # nothing but nodata
    p = np.mean([np.asarray(r.probs, np.float64) for r in raw], axis=0)
    return {c: float(v) for c, v in zip(det.spec.classes, p)}


def max_confidence(prediction) -> dict | None:
    """RS_MAX_CONFIDENCE: the label with the highest confidence of an RS_CLASSIFY map, and that confidence."""
    if not prediction:
        return None
    items = sorted(prediction.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"max_confidence_label": items[0][0], "max_confidence_score": float(items[0][1])}


def register_raster_functions(spark, detectors=()) -> None:
    """Register RS_DETECT_BBOXES, RS_SEGMENT, RS_CLASSIFY and RS_MAX_CONFIDENCE in ``spark`` (SQL-callable).

    ``detectors``: Detector classes the functions may name besides the installed ones.
    """
    from geodetect.plugins.registry import validate_detector_class

    extra = {}
    for cls in detectors or ():
        validate_detector_class(cls)
        extra[cls.spec.name] = cls

    def rs_detect_bboxes(model, rast):
        return bboxes(model, rast, extra)

    def rs_segment(model, rast):
        return segment(model, rast, extra)

    def rs_classify(model, rast):
        return classify(model, rast, extra)

    spark.udf.register("RS_DETECT_BBOXES", rs_detect_bboxes, BBOXES_TYPE)
    spark.udf.register("RS_SEGMENT", rs_segment, SEGMENT_TYPE)
    spark.udf.register("RS_CLASSIFY", rs_classify, CLASSIFY_TYPE)
    spark.udf.register("RS_MAX_CONFIDENCE", max_confidence, MAX_CONFIDENCE_TYPE)
