"""``detect``: scenes in, georeferenced and de-duplicated detections out.

The host side of the plugin contract: open, tile, batch, call the detector,
check its results, stitch seams, georeference once, build the table. Reading
runs in a prefetching thread so that I/O overlaps inference.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from geodetect import georef
from geodetect.errors import ConfigError, GeodetectError, GeoreferenceError, PluginError
from geodetect.frames import empty_detections, make_detections
from geodetect.io.raster import Scene, check_footprint, open_scene, parse_bands
from geodetect.io.tiling import Tiling
from geodetect.plugins._types import RESULT_TYPE, Boxes, Detector, Labels, Mask, Points, Task
from geodetect.plugins.registry import resolve_detector

__all__ = ["detect", "detect_scene", "make_options", "SceneStats", "DetectOptions"]

log = logging.getLogger("geodetect")


@dataclass
class SceneStats:
    """What happened to one scene (attached to the result as ``dets.attrs['geodetect']``)."""

    scene_id: str
    path: str
    tiles_total: int = 0
    tiles_run: int = 0
    tiles_nodata: int = 0
    detections: int = 0
    duplicates_removed: int = 0
    on_nodata_removed: int = 0  # on nodata, or within merge_radius_px of it (edge artefacts)
    grid: tuple = ()
    resampled_from: tuple | None = None
    notes: list = field(default_factory=list)
    status: str = "ok"  # "ok" or "failed"
    error: str | None = None


@dataclass(frozen=True)
class DetectOptions:
    """Everything but the detector and the scenes: one value per ``detect`` keyword."""

    tile_size: int
    overlap: int
    batch_size: int = 8
    crs_out: object = "EPSG:4326"
    crs: object = None
    bounds: tuple | None = None
    scaling: object = None
    band_override: object = None
    gsd_tolerance: float = 0.1
    progress: bool = True
    gdal_cache_mb: int = 64


def _as_list(scenes) -> list:
    if isinstance(scenes, (str, os.PathLike)):
        return [scenes]
    return list(scenes)


def detect(
    scenes,
    detector,
    *,
    bands=None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    crs_out="EPSG:4326",
    crs=None,
    bounds=None,
    scaling=None,
    gsd_tolerance: float = 0.1,
    scene_ids: Sequence[str] | None = None,
    progress: bool = True,
    gdal_cache_mb: int = 64,
    on_error: str = "raise",
):
    """Run a detector over one or many scenes.

    Parameters
    ----------
    scenes : a path or a list of paths (any GDAL raster).
    detector : a registered name, a :class:`~geodetect.plugins.Detector` class or an instance.
    bands : override the detector's bands: ``"4,3,2"``, ``(4, 3, 2)`` or a name map ``{"nir": 1}``.
    tile_size, overlap : override the spec's tiling.
    batch_size : tiles per ``predict`` call.
    crs_out : CRS of the output geometries (EPSG:4326 by default).
    crs, bounds : placement for scenes that lack it.
    scaling : override the spec's scaling (``"dtype"``, ``"none"`` or ``(lo, hi)``).
    gsd_tolerance : relative GSD difference above which a scene is resampled on read.
    scene_ids : ids for the scenes (default: file stems).
    progress : show a progress bar per scene.
    on_error : ``"raise"`` stops at the first bad scene; ``"skip"`` records it in the
        statistics (``status="failed"``, ``error=...``) and goes on.
    gdal_cache_mb : GDAL block cache while reading (GDAL's default is 5 % of RAM, which
        would let memory grow with the scene up to that size).

    Returns
    -------
    geopandas.GeoDataFrame with the detections schema; per-scene statistics in
    ``.attrs["geodetect"]``.

    Examples
    --------
    >>> import geodetect as gd                                       # doctest: +SKIP
    >>> dets = gd.detect("scene.tif", detector="sea-lion-counter")   # doctest: +SKIP
    """
    import pandas as pd

    from geodetect.stac import expand_scenes

    paths = expand_scenes(scenes)  # STAC items / ItemCollections (files, URLs, pystac) become one scene per item
    if not paths:
        raise ConfigError("no scenes given; pass a path or a list of paths")
    if scene_ids is not None and len(scene_ids) != len(paths):
        raise ConfigError(f"scene_ids has {len(scene_ids)} ids for {len(paths)} scenes")
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    det = resolve_detector(detector)
    opts = make_options(det.spec, tile_size=tile_size, overlap=overlap, batch_size=batch_size, crs_out=crs_out,
                        crs=crs, bounds=bounds, scaling=scaling, bands=bands, gsd_tolerance=gsd_tolerance,
                        progress=progress, gdal_cache_mb=gdal_cache_mb)
    ids = list(scene_ids) if scene_ids is not None else [scene_id_of(p) for p in paths]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(
            f"scenes share the id {dup[0]!r} (file stem); every scene needs its own id: rename or pass scene_ids="
        )
    frames, stats = [], []
    for path, sid in zip(paths, ids):
        try:
            gdf, st = detect_scene(det, path, opts, scene_id=sid)
        except GeodetectError as exc:
            if on_error == "raise":
                raise
            st = SceneStats(sid, os.fspath(path), status="failed", error=str(exc))
            log.info("%s: skipped: %s", path, exc)
            gdf = empty_detections(opts.crs_out)
        frames.append(gdf)
        stats.append(st)
    out = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    out.attrs["geodetect"] = [asdict(s) for s in stats]
    return out


def segment(
    scene,
    detector,
    out,
    *,
    bands=None,
    tile_size: int | None = None,
    overlap: int | None = None,
    batch_size: int = 8,
    crs=None,
    bounds=None,
    scaling=None,
    gsd_tolerance: float = 0.1,
    scene_id: str | None = None,
    progress: bool = True,
    gdal_cache_mb: int = 64,
) -> dict:
    """Run a segmentation detector over one scene and write its class map as a GeoTIFF, without polygons.

    The same tiles, blending and threshold as :func:`detect` (whose polygons outline exactly
    this map's regions), written in blocks as the scene is read: memory does not grow with the
    scene, and no polygon is made, so this is the output for scenes whose polygons would be
    too many to hold (a flood map of a whole swath) or for raster workflows.

    The file (``out``, ``.tif``) is a tiled, deflate-compressed uint8 GeoTIFF on the grid the
    detector ran at (the scene's grid, or the resampled one when the scene's GSD was far from
    the detector's) in the scene's CRS: 0 = no class, k = the detector's k-th class
    (``classes[k - 1]``), 255 = nodata (no tile saw the pixel); the band's tags name the
    classes (``CLASS_1=water``) and a colour table shows them in QGIS. Written atomically: a
    failed run leaves no file.

    Returns a dict: ``path``, ``scene_id``, ``grid`` (width, height), ``pixels`` (per class
    name, with ``none`` and ``nodata``), ``pixel_size`` (x, y in the scene CRS's units) and
    ``stats`` (as in ``detect``'s ``.attrs["geodetect"]``).

    Examples
    --------
    >>> import geodetect as gd                                                      # doctest: +SKIP
    >>> gd.segment("sfbay.tif", "water-expert-optical", "water.tif")["pixels"]      # doctest: +SKIP
    {'none': 2031870, 'water': 1642018, 'nodata': 0}
    """
    from pathlib import Path

    from geodetect._atomic import atomic_output
    from geodetect.stac import expand_scenes

    det = resolve_detector(detector)
    spec = det.spec
    if spec.task is not Task.SEGMENTATION:
        raise ConfigError(f"detector {spec.name!r} is a {spec.task.value} detector; a class raster is written by "
                          "segmentation detectors only: use detect() for its detections")
    paths = expand_scenes(scene)
    if len(paths) != 1:
        raise ConfigError(f"segment() writes one class raster per scene; got {len(paths)} scenes: call it once for each")
    out = Path(os.fspath(out))
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise ConfigError(f"{out}: a class raster is written as a GeoTIFF; give a name ending in .tif")
    opts = make_options(spec, tile_size=tile_size, overlap=overlap, batch_size=batch_size, crs=crs, bounds=bounds,
                        scaling=scaling, bands=bands, gsd_tolerance=gsd_tolerance, progress=progress,
                        gdal_cache_mb=gdal_cache_mb)
    sid = scene_id if scene_id is not None else scene_id_of(paths[0])
    with atomic_output(out, what="the class raster", keep_temp=False) as tmp:
        _, st = detect_scene(det, paths[0], opts, scene_id=sid, raster_out=tmp)
    import rasterio

    with rasterio.open(out) as ds:
        pixel_size = (abs(ds.transform.a), abs(ds.transform.e))
    n = st.class_pixels
    pixels = {"none": int(n[0]), **{c: int(n[k]) for k, c in enumerate(spec.classes, 1)},
              "nodata": int(n[255])}
    return {"path": str(out), "scene_id": sid, "grid": st.grid, "pixels": pixels, "pixel_size": pixel_size,
            "stats": asdict(st)}


def scene_id_of(path) -> str:
    """Default scene id: the file stem (a STAC item's id)."""
    from pathlib import Path

    if getattr(path, "scene_id", None):
        return path.scene_id
    return Path(os.fspath(path).split("?")[0]).stem


#: the most memory the tile buffers of one batch may take (prefetched batches and the detector's own copies
#: come on top): a tile size or batch size beyond it is refused before the run instead of failing mid-way
MAX_BATCH_BYTES = 2 * 2**30


def _check_crs(value, what: str):
    try:
        georef.pyproj_crs(value)  # cached: the same CRS is checked again by every call and every Spark task
    except Exception as exc:  # noqa: BLE001 - pyproj's CRSError, TypeError for odd objects
        detail = " ".join(str(exc).split())[:160]
        raise ConfigError(f"{what} {value!r} is not a CRS pyproj knows ({detail}); give one like EPSG:4326") from None


def _as_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, float) and value.is_integer()):
        raise ConfigError(f"{what} must be a whole number, got {value!r}")
    return int(value)


def make_options(spec, *, tile_size=None, overlap=None, batch_size=8, crs_out="EPSG:4326", crs=None, bounds=None,
                 scaling=None, bands=None, gsd_tolerance=0.1, progress=True, gdal_cache_mb=64) -> DetectOptions:
    """Check and freeze the options of a run against a detector's spec.

    Everything a run could trip over later is checked here, before the first tile: tiling, batch
    size and the memory of one batch, the input and output CRSs, ``bounds``, the band override
    (an unknown band name is an error listing the names the detector wants).
    """
    from geodetect.io.raster import check_band_override, check_bounds

    size = _as_int(tile_size if tile_size is not None else spec.tile_size, "tile size (--tile-size)")
    ov = _as_int(overlap if overlap is not None else spec.overlap, "overlap (--overlap)")
    if not size > ov >= 0:
        raise ConfigError(f"need tile size > overlap >= 0, got tile size {size} and overlap {ov}")
    batch_size = _as_int(batch_size, "batch size (--batch-size)")
    if batch_size < 1:
        raise ConfigError(f"batch size (--batch-size) must be >= 1, got {batch_size}")
    need = size * size * len(spec.bands) * 4 * batch_size
    if need > MAX_BATCH_BYTES:
        raise ConfigError(
            f"tile size {size} x batch size {batch_size} needs {need / 2**30:.1f} GiB of tile buffers per batch "
            f"(limit {MAX_BATCH_BYTES / 2**30:.0f} GiB); use a smaller --tile-size or --batch-size"
        )
    try:
        tol = float(gsd_tolerance)
    except (TypeError, ValueError):
        tol = float("nan")
    if not (tol >= 0 and np.isfinite(tol)):
        raise ConfigError(f"gsd_tolerance must be a finite number >= 0, got {gsd_tolerance!r}")
    cache = _as_int(gdal_cache_mb, "gdal_cache_mb")
    if cache < 1:
        raise ConfigError(f"gdal_cache_mb must be >= 1, got {gdal_cache_mb!r}")
    if crs_out is None:
        raise ConfigError("crs_out (--crs-out) is needed: the CRS of the output geometries, e.g. EPSG:4326")
    _check_crs(crs_out, "output CRS (--crs-out)")
    if crs is not None:
        _check_crs(crs, "--crs")
    if bounds is not None:
        bounds = check_bounds(bounds)
    from geodetect.plugins._types import validate_scaling

    scaling = validate_scaling(scaling if scaling is not None else spec.scaling, ConfigError)
    if isinstance(scaling, tuple) and not all(np.isfinite(scaling)):
        raise ConfigError(f"scaling (lo, hi) must be finite numbers, got {scaling!r}")
    override = parse_bands(bands)
    check_band_override(spec.bands, override, detector=spec.name)
    return DetectOptions(size, ov, batch_size, crs_out, crs, bounds, scaling, override, tol, bool(progress), cache)


def detect_scene(det: Detector, path, opts: DetectOptions, *, scene_id: str | None = None, tile_rows=None,
                 raster_out=None):
    """Run a loaded detector over one scene: (detections GeoDataFrame, SceneStats). Raises GeodetectError.

    ``tile_rows=(r0, r1)`` restricts the work to one block of tile rows (Spark
    splits big scenes so); blocks of one scene report every object exactly
    once between them (see :func:`_detect_scene`). ``raster_out`` (a
    segmentation detector, whole scenes): write the class map there as a
    GeoTIFF instead of making polygons (see :func:`segment`); the frame is then empty.
    """
    import rasterio

    from geodetect.stac import scene_override, scene_source, with_item_columns

    spec = det.spec
    with rasterio.Env(GDAL_CACHEMAX=opts.gdal_cache_mb * 2**20, **_decode_threads()), \
            scene_source(path, spec.bands, opts.band_override) as src:  # a STAC item: its bands stacked in a VRT
        with open_scene(
            src,
            bands=spec.bands,
            scaling=opts.scaling,
            band_override=scene_override(path, opts.band_override, spec.n_bands),
            gsd_m=spec.gsd_m,
            gsd_tolerance=opts.gsd_tolerance,
            crs=opts.crs,
            bounds=opts.bounds,
            scene_id=scene_id,
            gsd_range=spec.gsd_range,
            detector=spec.name,
        ) as scene:
            check_footprint(scene.transform, scene.width, scene.height, scene.crs, scene.path, opts.crs_out)
            gdf, st = _detect_scene(det, scene, opts.tile_size, opts.overlap, opts.batch_size, opts.crs_out,
                                    opts.progress, tile_rows, raster_out)
            gdf = with_item_columns(gdf, path, st)  # a STAC item's datetime; its label as the stats' path
            dtype = np.dtype(scene.dataset.dtypes[scene.indexes[0] - 1])
            if np.issubdtype(dtype, np.floating) and dtype != np.float32 and opts.scaling == "dtype":
                st.notes.append(
                    f"{dtype.name} pixels are given to the detector as they are (scaling 'dtype' leaves floating-point "
                    "values unchanged: it expects them scaled to 0..1); if they are not, pass scaling=(lo, hi)"
                )
                log.info("%s: %s", scene.scene_id, st.notes[-1])
            return gdf, st


def _decode_threads() -> dict:
    """``GDAL_NUM_THREADS`` for reading a scene: the cores this process may use (at most 4), unless the user set it.

    GDAL then decodes the compressed blocks of one read in parallel; :func:`_tile_reads` reads a strip of
    tiles at once, so each read has several new blocks to decode (a lone 512 px tile at stride 448 has
    about two, too few to gain from threads). A user's ``GDAL_NUM_THREADS`` is left to GDAL.
    """
    if os.environ.get("GDAL_NUM_THREADS"):
        return {}
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return {"GDAL_NUM_THREADS": str(max(1, min(4, cores)))}


def _release_working_memory(det) -> None:
    """Call the detector's optional ``release_working_memory()`` (ONNX detectors have one); never fails the run."""
    release = getattr(det, "release_working_memory", None)
    if callable(release):
        try:
            release()
        except Exception as exc:  # noqa: BLE001 - only memory is at stake
            log.debug("release_working_memory of %s failed: %s", det.spec.name, exc)


#: at most this many bytes of pixels (as stored) read at once for one run of tiles. 8 MB reads as fast as 32 MB on
#: the io-windows bench (4 MB is slower, 2 MB slower than tile by tile) and keeps a 30,000 px wide scene's peak
#: within 16 MB of tile-by-tile reads (32 MB strips: +73 MB; a few strips are alive in the prefetch queue)
STRIP_BYTES = 8 * 2**20


def _tile_reads(scene: Scene, tiling: Tiling, tile_ids, stop: threading.Event):
    """Yield (tile id, raw pixels (C, h, w), raw validity mask or ``None``) in ``tile_ids``' order.

    Neighbouring tiles of one tile row are read as one window (a strip of up to :data:`STRIP_BYTES`)
    and cut from it: GDAL then decodes the strip's compressed blocks in one call, in parallel when
    ``GDAL_NUM_THREADS`` allows, instead of each 2 x 2 block neighbourhood per tile, and the columns
    that neighbouring tiles share are copied once. The pixels are those of per-tile reads (integer
    windows, no resampling); a resampled scene is read tile by tile, as its windows are fractional.
    """
    ids = [int(i) for i in tile_ids]
    itemsize = scene._raw_dtype.itemsize  # the dtype _read_raw reads the strip as
    k = 0
    while k < len(ids):
        if stop.is_set():
            return
        x0, y0, w, h = tiling.tile(ids[k])
        run = [(ids[k], x0, w)]
        if not scene.resampled:  # the next tiles of the same row, while the strip stays under STRIP_BYTES
            budget = STRIP_BYTES // max(1, h * len(scene.indexes) * itemsize)
            while k + len(run) < len(ids) and ids[k + len(run)] == run[-1][0] + 1:
                nx, ny, nw, nh = tiling.tile(ids[k + len(run)])
                if ny != y0 or nh != h or nx + nw - x0 > budget:
                    break
                run.append((ids[k + len(run)], nx, nw))
        width = run[-1][1] + run[-1][2] - x0
        raw, valid = scene._read_raw(x0, y0, width, h, interleaved=True)
        for i, x, tw in run:
            a = x - x0
            yield i, raw[:, :, a:a + tw], (None if valid is None else valid[:, a:a + tw])
        k += len(run)


def _batches(scene: Scene, tiling: Tiling, tile_ids, batch_size: int, stats: SceneStats, stop: threading.Event,
             core=range(0)):
    """Yield (tile_ids, raw tiles, raw validity masks, n_skipped_since_last) batches, pixels as stored.

    :func:`_to_float` makes the detector's float32 batch of them in the consuming thread, so that
    decoding the next tiles (GDAL) and converting these (numpy) run at the same time.
    Nodata tiles are counted in ``stats`` when they are in ``core`` (halo tiles of a block are not its own).
    """
    ids, raws, valids, skipped = [], [], [], 0
    for i, raw, valid in _tile_reads(scene, tiling, tile_ids, stop):
        if valid is not None and not valid.any():
            stats.tiles_nodata += i in core
            skipped += 1
            continue
        ids.append(i)
        raws.append(raw)
        valids.append(valid)
        if len(ids) == batch_size:
            yield ids, raws, valids, skipped
            ids, raws, valids, skipped = [], [], [], 0
    if ids or skipped:
        yield ids, raws, valids, skipped


def _to_float(batches, scene: Scene, size: int):
    """(tile_ids, data (N,S,S,C) float32, valids, n_skipped) from :func:`_batches`' raw batches.

    The tiles are written straight into the batch (no per-tile array, no ``np.stack`` copy); a tile
    without nodata gets a shared read-only mask.
    """
    try:
        for ids, raws, rvalids, skipped in batches:
            if not ids:
                yield ids, None, [], skipped
                continue
            data = np.empty((len(ids), size, size, len(scene.indexes)), np.float32)
            valids = [scene._to_float(raw, v, pad_to=size, out=data[k])[1]
                      for k, (raw, v) in enumerate(zip(raws, rvalids))]
            yield ids, data, valids, skipped
    finally:
        batches.close()  # closing this closes the reader too (it is joined before the scene is closed)


def _prefetch(gen, depth: int = 2, stop: threading.Event | None = None):
    """Run a generator in a thread, ``depth`` items ahead; re-raise its errors.

    Closing this generator early (an error or an interrupt in the consumer) sets ``stop``, unblocks
    the reader and joins it, so the scene is never closed under a read in progress.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = stop if stop is not None else threading.Event()

    def run():
        try:
            for item in gen:
                q.put(item)
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)
        q.put(done)

    t = threading.Thread(target=run, name="geodetect-reader", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # drain, so a reader blocked on a full queue can finish its put and stop
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        t.join()


def _read_ahead(gen, stop: threading.Event):
    """The batches of ``gen``: the first read here, the rest by a prefetching thread while the detector runs.

    The first batch is waited for either way; reading it in the calling thread saves a thread and
    its hand-offs, and a scene of one batch (most small scenes) never starts a reader thread.
    """
    try:
        first = next(gen)
    except StopIteration:
        return
    try:
        yield first
    except GeneratorExit:
        gen.close()
        raise
    if stop.is_set():
        gen.close()
        return
    rest = _prefetch(gen, stop=stop)
    try:
        yield from rest
    finally:
        rest.close()


def _check_results(det: Detector, results, n: int, size: int) -> list:
    spec = det.spec
    want = RESULT_TYPE[spec.task]
    name = spec.name
    if not isinstance(results, (list, tuple)) or len(results) != n:
        got = f"{type(results).__name__} of {len(results)}" if hasattr(results, "__len__") else type(results).__name__
        raise PluginError(f"detector {name!r}: predict() must return a list of {n} {want.__name__} (one per tile), got {got}")
    for r in results:
        if not isinstance(r, want):
            raise PluginError(
                f"detector {name!r} (task {spec.task.name}) returned {type(r).__name__} from predict(); expected {want.__name__}"
            )
        if isinstance(r, (Points, Boxes)):
            coords = r.xy if isinstance(r, Points) else r.xyxy
            if len(r.class_ids) and (r.class_ids.min() < 0 or r.class_ids.max() >= spec.n_classes):
                raise PluginError(f"detector {name!r}: class_ids must be in 0..{spec.n_classes - 1}, got {np.unique(r.class_ids).tolist()}")
            if not (np.all(np.isfinite(coords)) and np.all(np.isfinite(r.scores))):
                raise PluginError(f"detector {name!r}: predict() returned NaN or infinite coordinates or scores")
            if len(r.scores) and (r.scores.min() < 0 or r.scores.max() > 1):
                raise PluginError(f"detector {name!r}: scores must be in 0..1, got {r.scores.min():.3g}..{r.scores.max():.3g}")
        elif isinstance(r, Mask):
            if r.probs.shape != (size, size, spec.n_classes):
                raise PluginError(
                    f"detector {name!r}: Mask.probs must have shape ({size}, {size}, {spec.n_classes}), got {r.probs.shape}"
                )
        elif isinstance(r, Labels):
            if r.probs.shape != (spec.n_classes,):
                raise PluginError(f"detector {name!r}: Labels.probs must have shape ({spec.n_classes},), got {r.probs.shape}")
    return list(results)


def _on_valid(xy_tile: np.ndarray, valid: np.ndarray, extent: tuple[int, int], margin: float) -> np.ndarray:
    """Detections inside the tile, on valid pixels, at least ``margin`` px from nodata.

    ``extent`` is the (w, h) of the tile inside the image: padding beyond it
    is the image edge, not nodata, and does not count for the margin.
    """
    h, w = valid.shape
    c = np.clip(np.floor(xy_tile[:, 0]).astype(np.int64), 0, w - 1)
    r = np.clip(np.floor(xy_tile[:, 1]).astype(np.int64), 0, h - 1)
    inside = (xy_tile[:, 0] >= 0) & (xy_tile[:, 0] <= w) & (xy_tile[:, 1] >= 0) & (xy_tile[:, 1] <= h)
    ok = inside & valid[r, c]
    ew, eh = extent
    if margin > 0 and ok.any() and not valid[:eh, :ew].all():
        from scipy import ndimage

        dist = np.full(valid.shape, np.inf)
        dist[:eh, :ew] = ndimage.distance_transform_edt(valid[:eh, :ew])
        ok &= dist[r, c] > margin
    return ok


def tile_row_blocks(n_rows: int, block_rows: int) -> list[tuple[int, int]]:
    """Split ``n_rows`` tile rows into blocks of at most ``block_rows``."""
    return [(r, min(r + block_rows, n_rows)) for r in range(0, n_rows, max(1, block_rows))]


def _block_tiles(tiling: Tiling, task: Task, tile_rows):
    """Tile ids to run for a block, and the grid rows [lo, hi) whose detections the block reports.

    Points and boxes run one halo tile row on each side, so duplicates across
    the block border are resolved exactly as inside a scene; the block then
    reports only what lies in its own owned rows. Segmentation runs every tile
    that blends into the block's own pixel rows (see ``MaskMosaic(rows=...)``).
    """
    nrow, ncol = tiling.shape
    if tile_rows is None:
        return range(len(tiling)), None
    r0, r1 = max(0, int(tile_rows[0])), min(nrow, int(tile_rows[1]))
    halo = 1 if task in (Task.POINTS, Task.BOXES) else 0
    a, b = max(0, r0 - halo), min(nrow, r1 + halo)
    ids = range(a * ncol, b * ncol)
    ylo = int(tiling._y[1][r0])
    yhi = int(tiling._y[2][r1 - 1])
    if task is Task.SEGMENTATION:  # the tile rows whose pixels blend into rows [ylo, yhi)
        touch = np.flatnonzero((tiling._y[0] < yhi) & (tiling._y[0] + tiling.size > ylo))
        ids = range(int(touch[0]) * ncol, (int(touch[-1]) + 1) * ncol)
    return ids, (ylo, yhi, r0 * ncol, r1 * ncol)


class _NoBar:
    """What the pipeline uses of a tqdm bar, doing nothing (``progress=False`` needs no tqdm import)."""

    def update(self, n=1):
        pass

    def close(self):
        pass


def _detect_scene(det: Detector, scene: Scene, size: int, overlap: int, batch_size: int, crs_out, progress: bool,
                  tile_rows=None, raster_out=None):
    from geodetect.stitch import MaskMosaic, dedupe_boxes, dedupe_points

    spec = det.spec
    task = spec.task
    src_crs = georef._wkt(scene.crs)  # parsed once per scene: every later lookup hashes this string, not a CRS
    tiling = Tiling(scene.width, scene.height, size, overlap)
    tile_ids, block = _block_tiles(tiling, task, tile_rows)
    core = tile_ids if block is None else range(block[2], block[3])
    n_core = len(core)
    st = SceneStats(scene.scene_id, scene.path, tiles_total=n_core, grid=(scene.width, scene.height))
    if scene.resampled:
        st.resampled_from = (scene.dataset.width, scene.dataset.height)
        st.notes.append(
            f"resampled {scene.dataset.width}x{scene.dataset.height} -> {scene.width}x{scene.height} to the detector's {spec.gsd_m} m GSD"
        )
    coords, cids, scores, tids = [], [], [], []
    mosaic = (MaskMosaic(scene.width, scene.height, spec.n_classes, spec.threshold, min_polygon_px=spec.min_polygon_px,
                         rows=None if block is None else block[:2], margin=size)
              if task is Task.SEGMENTATION else None)
    stop = threading.Event()
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tile_ids), desc=scene.scene_id, unit="tile", leave=False)
    else:
        bar = _NoBar()
    batches = _to_float(_read_ahead(_batches(scene, tiling, tile_ids, batch_size, st, stop, core), stop), scene, size)
    finished = False
    try:
        for ids, data, valids, skipped in batches:
            bar.update(skipped)
            if not ids:
                continue
            try:
                raw = det.predict(data)
            except GeodetectError:
                raise
            except Exception as exc:  # noqa: BLE001
                raise PluginError(f"detector {spec.name!r} failed in predict() on {scene.path}: {type(exc).__name__}: {exc}") from exc
            results = _check_results(det, raw, len(ids), size)
            for i, r, valid in zip(ids, results, valids):
                x0, y0, w, h = tiling.tile(i)
                if task is Task.POINTS or task is Task.BOXES:
                    arr = r.xy if task is Task.POINTS else r.xyxy
                    centre = arr if task is Task.POINTS else np.column_stack([(arr[:, 0] + arr[:, 2]) / 2, (arr[:, 1] + arr[:, 3]) / 2])
                    ok = _on_valid(centre, valid, (w, h), spec.merge_radius_px)
                    st.on_nodata_removed += int((~ok).sum())
                    off = np.array([x0, y0] * (arr.shape[1] // 2), np.float64)
                    coords.append(arr[ok] + off)
                    cids.append(r.class_ids[ok])
                    scores.append(r.scores[ok])
                    tids.append(np.full(int(ok.sum()), i, np.int64))
                elif task is Task.SEGMENTATION:
                    mosaic.add(r.probs, valid, (x0, y0, w, h), tiling.owned(i))
                else:
                    cl, rl, ch, rh = tiling.owned(i)
                    if not valid[rl - y0 : rh - y0, cl - x0 : ch - x0].any():
                        continue
                    coords.append(np.array([[cl, rl, ch, rh]], np.float64))
                    cids.append(np.array([int(r.probs.argmax())]))
                    scores.append(np.array([float(r.probs.max())], np.float32))
                    tids.append(np.array([i]))
            st.tiles_run += sum(i in core for i in ids)
            bar.update(len(ids))
        finished = True
    finally:
        stop.set()
        batches.close()  # the reader thread stops and is joined before the scene is closed
        bar.close()
        if mosaic is not None and not finished:  # an error, Ctrl-C or SIGTERM: the on-disk blend goes too
            mosaic.cleanup()
    if mosaic is not None and len(tile_ids) > 4 * batch_size:
        _release_working_memory(det)  # a big mask is polygonised next: the model's buffers are not needed now
    width = 2 if task is Task.POINTS else 4
    xy = np.concatenate(coords) if coords else np.zeros((0, width))
    cid = np.concatenate(cids).astype(np.int64) if cids else np.zeros(0, np.int64)
    sc = np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
    tid = np.concatenate(tids) if tids else np.zeros(0, np.int64)
    if task is Task.POINTS:
        keep = dedupe_points(xy, cid, sc, tid, tiling.owned_arrays(tid), spec.merge_radius_px,
                             any_class=spec.merge_classes)
        st.duplicates_removed = int(len(xy) - keep.sum())
        xy, cid, sc = xy[keep], cid[keep], sc[keep]
        if block is not None:
            mine = (xy[:, 1] >= block[0]) & (xy[:, 1] < block[1])
            xy, cid, sc = xy[mine], cid[mine], sc[mine]
        geoms = georef.points_to_map(xy, scene.transform, src_crs, crs_out)
    elif task is Task.BOXES:
        keep = dedupe_boxes(xy, cid, sc, tid, tiling.owned_arrays(tid), spec.nms_iou, spec.merge_radius_px,
                            any_class=spec.merge_classes)
        st.duplicates_removed = int(len(xy) - keep.sum())
        xy, cid, sc = xy[keep], cid[keep], sc[keep]
        if block is not None:
            cy = (xy[:, 1] + xy[:, 3]) / 2
            mine = (cy >= block[0]) & (cy < block[1])
            xy, cid, sc = xy[mine], cid[mine], sc[mine]
        geoms = georef.boxes_to_map(xy, scene.transform, src_crs, crs_out)
    elif task is Task.SEGMENTATION and raster_out is not None:  # the class map, no polygons (gd.segment)
        try:
            st.class_pixels = mosaic.write_classes(
                raster_out, scene.transform, scene.crs, spec.classes,
                tags={"GEODETECT_DETECTOR": spec.name, "GEODETECT_VERSION": spec.version,
                      "GEODETECT_THRESHOLD": spec.threshold})
        finally:
            mosaic.cleanup()
        geoms, cid, sc = np.zeros(0, dtype=object), np.zeros(0, np.int64), np.zeros(0, np.float32)
    elif task is Task.SEGMENTATION:
        # a whole scene's polygons are made from placed coordinates, never held in pixels beside a placed copy (a
        # region with millions of holes is a scene's largest object); a Spark block's pieces are joined in pixels
        place = georef.Placement(scene.transform, src_crs, crs_out) if mosaic.rows is None else None
        try:
            polys, cid, sc = mosaic.polygons(place=place)
        finally:
            mosaic.cleanup()
        if mosaic.pieces is not None:  # a Spark block: polygons cut by its borders, joined in a second step
            st.seg_pieces = (*mosaic.pieces, scene.transform, scene.crs)
        if mosaic.small_removed:
            st.notes.append(f"{mosaic.small_removed} polygons under {spec.min_polygon_px} px (min_polygon_px) dropped")
        if place is not None:
            geoms = place.finish(polys)
        else:
            geoms = georef.polygons_to_map(polys, scene.transform, src_crs, crs_out, copy=False)
        del polys  # placed in place: the pixel-space polygons are gone, their memory reused by what follows
    else:
        geoms = georef.boxes_to_map(xy, scene.transform, src_crs, crs_out)
    empty = _check_geometries(geoms, scene.path, crs_out)
    if empty.any():  # e.g. a sliver of zero area split at the antimeridian: said, not kept as an empty row
        st.notes.append(f"{int(empty.sum())} detection(s) with no area left after georeferencing dropped")
        geoms, cid, sc = np.asarray(geoms, dtype=object)[~empty], cid[~empty], sc[~empty]
    area = georef.area_m2(geoms, crs_out)
    names = np.asarray(spec.classes, dtype=object)[cid] if len(cid) else np.zeros(0, dtype=object)
    gdf = make_detections(spec.name, spec.version, scene.scene_id, names, sc, geoms, area, crs_out)
    st.detections = len(gdf)
    if st.tiles_run == 0 and st.tiles_nodata:
        st.notes.append(f"all {st.tiles_nodata} tiles were nodata: no detections")
    elif st.tiles_nodata:
        st.notes.append(f"{st.tiles_nodata} of {st.tiles_total} tiles were entirely nodata and skipped")
    for note in st.notes:
        log.info("%s: %s", scene.scene_id, note)
    return gdf, st


def _all_finite(geoms) -> bool:
    """Whether every coordinate of ``geoms`` is finite, looked at a chunk of rows at a time, and a polygon with
    more than :data:`geodetect.frames.BIG_ROW_VERTICES` vertices (a 900 Mpx scene's region with millions of holes)
    a slice of rings at a time: its coordinates were copied whole, the largest step after its polygon was made."""
    import shapely

    from geodetect import frames

    big = np.zeros(len(geoms), bool)
    if len(geoms):
        big = shapely.get_num_coordinates(geoms) > frames.BIG_ROW_VERTICES
        big &= np.isin(shapely.get_type_id(geoms), (3, 6))  # polygons and multipolygons: looked at by rings
    rest = geoms[~big]
    step = georef.CHUNK  # coordinates of a chunk at a time, not of every polygon of a scene at once
    if not all(np.isfinite(shapely.get_coordinates(rest[i:i + step])).all() for i in range(0, len(rest), step)):
        return False
    return all(np.isfinite(shapely.get_coordinates(rings)).all()
               for g in geoms[big] for p in frames._polys(g) for rings in frames._rings(p))


def _check_geometries(geoms, path: str, crs_out) -> np.ndarray:
    """The last guard of placement: no detection leaves with a NaN or infinite coordinate.

    A non-finite coordinate means the placement or the output CRS is wrong for the scene: the
    scene is refused. Returns the mask of empty geometries (dropped and counted by the caller).
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.zeros(0, bool)
    empty = shapely.is_missing(geoms) | shapely.is_empty(geoms)
    full = geoms[~empty]
    if not _all_finite(full):
        bad = int((~np.all(np.isfinite(shapely.bounds(full)), axis=1)).sum())
        raise GeoreferenceError(
            f"{path}: {max(bad, 1)} of {len(geoms)} detections cannot be placed in {crs_out} (NaN or infinite "
            "coordinates); the scene's placement or the output CRS is wrong for it: check --bounds/--crs/--crs-out"
        )
    return empty
