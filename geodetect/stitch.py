"""Seams: results of overlapping tiles become one set of detections per scene.

Every tile *owns* a region of the grid (see :mod:`geodetect.io.tiling`).

* Points and boxes: a tile keeps the detections whose centre lies in its owned
  region widened by a margin; detections of one class from two different tiles
  that are closer than ``merge_radius_px`` (points) or overlap more than
  ``nms_iou`` (boxes; IoU or intersection over the smaller box, so a box cut
  by a tile edge is matched with the whole one) are the same object, and the
  one seen more centrally in its tile is reported.
* Masks: probabilities are blended in overlaps (the owning tile dominates);
  the blend is kept in memory or, for big scenes, on disk, and polygonised in
  strips of rows (:mod:`geodetect.outlines`); polygons cut by strip borders are joined again.
* Labels: one label per tile, its footprint the tile's owned region, so
  footprints never overlap.

All of it is vectorised over detections.
"""

from __future__ import annotations

import functools
import os
import tempfile

import numpy as np

__all__ = ["owned_distance", "dedupe_points", "dedupe_boxes", "MaskMosaic", "join_pieces"]


def owned_distance(centres: np.ndarray, owned: np.ndarray) -> np.ndarray:
    """Chebyshev distance (pixels) of each centre outside its tile's owned box; 0 inside."""
    dx = np.maximum(np.maximum(owned[:, 0] - centres[:, 0], centres[:, 0] - owned[:, 2]), 0.0)
    dy = np.maximum(np.maximum(owned[:, 1] - centres[:, 1], centres[:, 1] - owned[:, 3]), 0.0)
    return np.maximum(dx, dy)


def _drop_losers(pairs: np.ndarray, priority_dist: np.ndarray, scores: np.ndarray, n: int) -> np.ndarray:
    """For each duplicate pair drop the less central (then lower-scoring) detection."""
    keep = np.ones(n, bool)
    if len(pairs) == 0:
        return keep
    i, j = pairs[:, 0], pairs[:, 1]
    i_wins = (priority_dist[i] < priority_dist[j]) | (
        (priority_dist[i] == priority_dist[j]) & ((scores[i] > scores[j]) | ((scores[i] == scores[j]) & (i < j)))
    )
    keep[np.where(i_wins, j, i)] = False
    return keep


def dedupe_points(xy, class_ids, scores, tile_ids, owned, radius: float, any_class: bool = False) -> np.ndarray:
    """Boolean keep-mask for points in grid pixels; ``owned`` (K, 4) is each point's tile owned box.

    ``any_class``: twins from two tiles are merged even when the tiles gave them different classes."""
    from geodetect._pairs import close_pairs

    xy = np.asarray(xy, np.float64)
    n = len(xy)
    if n == 0:
        return np.zeros(0, bool)
    dist = owned_distance(xy, owned)
    keep = dist <= radius
    # only points near an owned edge can have a twin from another tile: a twin lies at most
    # `radius` outside its own tile's owned box, so it is at least depth - radius away
    depth = np.minimum(np.minimum(xy[:, 0] - owned[:, 0], owned[:, 2] - xy[:, 0]),
                       np.minimum(xy[:, 1] - owned[:, 1], owned[:, 3] - xy[:, 1]))
    idx = np.nonzero(keep & (depth < 2 * radius))[0]
    if radius > 0 and len(idx) > 1:
        pairs = close_pairs(xy[idx], radius)  # numpy: importing scipy.spatial cost more than most scenes
        pairs = idx[pairs] if len(pairs) else pairs.reshape(0, 2)
        same = (any_class | (class_ids[pairs[:, 0]] == class_ids[pairs[:, 1]])) & (
            tile_ids[pairs[:, 0]] != tile_ids[pairs[:, 1]])
        keep &= _drop_losers(pairs[same], dist, scores, n)
    return keep


def dedupe_boxes(xyxy, class_ids, scores, tile_ids, owned, iou: float, margin: float,
                 any_class: bool = False) -> np.ndarray:
    """Boolean keep-mask for boxes in grid pixels (cross-tile NMS); ``any_class`` as for :func:`dedupe_points`."""
    import shapely

    xyxy = np.asarray(xyxy, np.float64)
    n = len(xyxy)
    if n == 0:
        return np.zeros(0, bool)
    centres = np.column_stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2])
    dist = owned_distance(centres, owned)
    keep = dist <= margin
    idx = np.nonzero(keep)[0]
    if len(idx) > 1:
        b = xyxy[idx]
        tree = shapely.STRtree(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]))
        a_, b_ = tree.query(shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3]), predicate="intersects")
        m = a_ < b_
        pairs = np.column_stack([idx[a_[m]], idx[b_[m]]])
        i, j = pairs[:, 0], pairs[:, 1]
        cross = (any_class | (class_ids[i] == class_ids[j])) & (tile_ids[i] != tile_ids[j])
        pairs, i, j = pairs[cross], i[cross], j[cross]
        iw = np.clip(np.minimum(xyxy[i, 2], xyxy[j, 2]) - np.maximum(xyxy[i, 0], xyxy[j, 0]), 0, None)
        ih = np.clip(np.minimum(xyxy[i, 3], xyxy[j, 3]) - np.maximum(xyxy[i, 1], xyxy[j, 1]), 0, None)
        inter = iw * ih
        ai = (xyxy[i, 2] - xyxy[i, 0]) * (xyxy[i, 3] - xyxy[i, 1])
        aj = (xyxy[j, 2] - xyxy[j, 0]) * (xyxy[j, 3] - xyxy[j, 1])
        with np.errstate(divide="ignore", invalid="ignore"):
            iou_ = inter / (ai + aj - inter)
            iomin = inter / np.minimum(ai, aj)
        dup = np.nan_to_num(np.maximum(iou_, iomin)) >= iou
        keep &= _drop_losers(pairs[dup], dist, scores, n)
    return keep


#: colours of the class raster's classes 1, 2, ... (its colour table, as QGIS and GDAL show it)
_PALETTE = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
            (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


class _MemRaster:
    """The part of a rasterio dataset :class:`MaskMosaic` uses (windowed read/write), on a numpy array."""

    def __init__(self, count: int, height: int, width: int, dtype):
        self.a = np.zeros((count, height, width), dtype)

    def _sl(self, window):
        r0, c0 = int(window.row_off), int(window.col_off)
        return (slice(None), slice(r0, r0 + int(window.height)), slice(c0, c0 + int(window.width)))

    def read(self, window):
        return self.a[self._sl(window)]  # a view: callers write it back (or discard it) anyway

    def write(self, arr, window):
        dst = self.a[self._sl(window)]
        if not np.shares_memory(dst, arr):  # a modified view is already in place
            dst[...] = arr

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


#: scratch folders of the on-disk blend are named ``geodetect-mosaic-<pid>-<random>``
SCRATCH_PREFIX = "geodetect-mosaic-"
#: a scratch folder of a process that is gone, untouched for this long, is removed by the next mosaic
STALE_SCRATCH_S = 600


def sweep_stale_scratch(workdir: str | None = None) -> list[str]:
    """Remove scratch folders left by processes that died without cleaning up (SIGKILL, power loss).

    Interrupted runs (Ctrl-C, SIGTERM, errors) remove their own scratch; a killed one cannot,
    so each new on-disk mosaic sweeps what dead processes left: folders named
    ``geodetect-mosaic-<pid>-*`` whose process no longer exists and whose files have not
    changed for :data:`STALE_SCRATCH_S` seconds. Returns the folders removed.
    """
    import shutil
    import time

    base = workdir or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(base) if n.startswith(SCRATCH_PREFIX)]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        pid_text = name[len(SCRATCH_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # alive (or another user's): not ours to remove
        except ProcessLookupError:
            pass
        except OSError:
            continue
        path = os.path.join(base, name)
        try:
            newest = max([os.path.getmtime(path)] + [os.path.getmtime(os.path.join(path, f)) for f in os.listdir(path)])
        except OSError:
            continue
        if now - newest >= STALE_SCRATCH_S:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


class MaskMosaic:
    """Blended probabilities of a whole scene, thresholded and polygonised in strips.

    Each tile's probabilities are added with a weight that is 1 on the region
    the tile owns (see :mod:`geodetect.io.tiling`) and falls linearly to 0
    halfway to the tile's edges (the outer half of each overlap margin, seen by
    the network with the least context, gets no weight), so in an overlap
    the owner dominates and its neighbour is blended in. The accumulator (C weighted sums + the weight sum,
    float32) is a numpy array when it fits in :attr:`MEMORY_BUDGET`, and a tiled
    scratch GeoTIFF beyond, so memory does not grow with the scene.

    Polygons come from strips of rows: a pixel's class is the best blended
    probability if it reaches the threshold, and each connected area of one
    class becomes a polygon scored with its mean probability; polygons cut by a
    strip border are joined again.

    A block of a scene (Spark splits big scenes in blocks of tile rows):
    ``rows=(lo, hi)`` are the pixel rows the block reports; the accumulator
    holds only rows ``[lo - margin, hi + margin)`` (``margin``: the tile size,
    so every tile touching the block's rows fits). :meth:`polygons` then
    returns the polygons that touch no block or strip border, and keeps the
    ones that do in :attr:`pieces` (grid pixels, with their pixel counts) for
    :func:`join_pieces` to join with the neighbouring blocks' pieces.
    """

    #: scenes whose accumulator fits in this many bytes are blended in memory, larger ones on disk
    MEMORY_BUDGET = 128 * 2**20

    def __init__(self, width: int, height: int, n_classes: int, threshold: float, workdir: str | None = None,
                 min_polygon_px: int = 0, rows: tuple[int, int] | None = None, margin: int = 0):
        self.width, self.height, self.n_classes, self.threshold = width, height, n_classes, threshold
        self.min_polygon_px = min_polygon_px
        self.small_removed = 0
        self.rows = None if rows is None or tuple(rows) == (0, height) else (int(rows[0]), int(rows[1]))
        self.pieces = None
        self._y0, self._y1 = (0, height) if self.rows is None else (max(0, self.rows[0] - margin),
                                                                    min(height, self.rows[1] + margin))
        self._in_memory = (n_classes + 1) * width * (self._y1 - self._y0) * 4 <= self.MEMORY_BUDGET
        self._dir = None
        if not self._in_memory:
            sweep_stale_scratch(workdir)
            self._dir = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=workdir)
        self._acc = self._open(n_classes + 1)

    def _open(self, count):
        import warnings

        import rasterio
        from rasterio.errors import NotGeoreferencedWarning

        if self._in_memory:
            return _MemRaster(count, self._y1 - self._y0, self.width, "float32")
        h = self._y1 - self._y0
        bs = 256 if (self.width >= 256 and h >= 256) else None
        profile = dict(driver="GTiff", width=self.width, height=h, count=count, dtype="float32")
        if bs:
            profile.update(tiled=True, blockxsize=bs, blockysize=bs)
        with warnings.catch_warnings():  # a grid-pixel scratch file: it has no georeference on purpose
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(os.path.join(self._dir, "blend.tif"), "w+", **profile)

    def add(self, probs: np.ndarray, valid: np.ndarray, tile: tuple, owned: tuple) -> None:
        """Blend one tile's probabilities (H, W, C) into the scene."""
        from rasterio.windows import Window

        x0, y0, w, h = tile
        cl, rl, ch, rh = owned
        weight = _tile_weight(h, rl - y0, rh - y0, w, cl - x0, ch - x0)  # the same for most tiles: cached
        v = valid[:h, :w]
        if not v.all():
            weight = weight * v
        win = Window(x0, y0 - self._y0, w, h)
        acc = self._acc.read(window=win)
        for c in range(self.n_classes):
            acc[c] += probs[:h, :w, c] * weight
        acc[-1] += weight
        self._acc.write(acc, window=win)

    def _classes(self, acc: np.ndarray):
        """Accumulator rows ``acc`` (C + 1, h, w), normalised in place: (class map uint8, 0 = below the threshold
        and k = class k - 1; the best class's blended probability)."""
        wsum = np.maximum(acc[-1], np.float32(1e-30))  # no weight -> sums are 0 -> probability 0
        p = acc[:-1]
        np.divide(p, wsum, out=p)  # float32, in place
        if len(p) == 1:  # one class: no argmax needed
            pbest = p[0]
            return (pbest >= self.threshold).view(np.uint8), pbest  # threshold > 0: pixels without weight stay off
        best = p.argmax(axis=0)
        pbest = np.take_along_axis(p, best[None], axis=0)[0]
        return np.where(pbest >= self.threshold, best + 1, 0).astype(np.uint8), pbest

    #: the class raster's nodata value: pixels no tile gave a weight (the scene's nodata)
    CLASS_NODATA = 255

    def write_classes(self, path, transform, crs, class_names, *, tags: dict | None = None) -> np.ndarray:
        """Write the class map of the whole scene as a tiled, deflate-compressed uint8 GeoTIFF at ``path``.

        0 = no class reached the threshold, k = ``class_names[k - 1]``, :attr:`CLASS_NODATA` = no tile saw the
        pixel (nodata in the scene). Written in windows of whole 256 x 256 blocks of at most
        :attr:`STRIP_PIXELS`, so memory does not grow with the scene; no polygon is made. Returns the pixel
        count of each value (length 256).
        """
        import rasterio
        from rasterio.windows import Window

        if self.rows is not None:
            raise ValueError("MaskMosaic.write_classes: a whole scene only, not a block")
        if len(class_names) >= self.CLASS_NODATA:
            raise ValueError(f"a class raster holds at most {self.CLASS_NODATA - 1} classes")
        bs = 256
        rows = max(bs, self.STRIP_PIXELS // max(1, self.width) // bs * bs)
        cols = max(bs, self.STRIP_PIXELS // rows // bs * bs)
        counts = np.zeros(256, np.int64)
        profile = dict(driver="GTiff", width=self.width, height=self.height, count=1, dtype="uint8", crs=crs,
                       transform=transform, nodata=self.CLASS_NODATA, compress="deflate", BIGTIFF="IF_SAFER")
        if self.width >= bs and self.height >= bs:
            profile.update(tiled=True, blockxsize=bs, blockysize=bs)
        with rasterio.open(path, "w", **profile) as dst:
            for r0 in range(0, self.height, rows):
                h = min(rows, self.height - r0)
                for c0 in range(0, self.width, cols):
                    w = min(cols, self.width - c0)
                    acc = self._acc.read(window=Window(c0, r0, w, h))
                    seen = acc[-1] > 0
                    cls, _ = self._classes(acc)
                    cls = np.where(seen, cls, np.uint8(self.CLASS_NODATA))
                    counts += np.bincount(cls.ravel(), minlength=256)
                    dst.write(cls, 1, window=Window(c0, r0, w, h))
            dst.set_band_description(1, "class")
            dst.update_tags(1, **{"CLASS_0": "none", **{f"CLASS_{k}": str(n) for k, n in enumerate(class_names, 1)},
                                  f"CLASS_{self.CLASS_NODATA}": "nodata"})
            if tags:
                dst.update_tags(**{k: str(v) for k, v in tags.items()})
            palette = {0: (0, 0, 0), self.CLASS_NODATA: (0, 0, 0)}  # a GeoTIFF palette has no alpha: nodata hides 255
            for k in range(1, len(class_names) + 1):
                palette[k] = _PALETTE[(k - 1) % len(_PALETTE)]
            dst.write_colormap(1, palette)
        return counts

    def _strip(self, r0: int, h: int, next_id: int):
        """Regions of rows [r0, r0 + h): (region ids from ``next_id`` on (0 = none), their classes, pixel counts,
        score sums)."""
        from rasterio.windows import Window
        from scipy import ndimage

        acc = self._acc.read(window=Window(0, r0 - self._y0, self.width, h))  # in memory: a view of final rows
        cls, pbest = self._classes(acc)
        one = self.n_classes == 1
        if one:
            present = [1] if cls.any() else []
        else:
            present = np.flatnonzero(np.bincount(cls.ravel(), minlength=256)[1:]) + 1
        dtype = np.int32 if next_id + cls.size < 2**31 else np.int64
        ids = None
        classes, cnts, sums = [], [], []
        for c in present:
            on = cls.view(bool) if one else cls == c
            lab, n = ndimage.label(on, output=dtype)
            idx = np.flatnonzero(on)  # statistics over the class's own pixels only: often a small part
            lab_on = lab.ravel()[idx]
            if ids is None:  # the first class's label image becomes the strip's ids (0 off its pixels)
                ids = lab
            if ids is not lab or next_id > 1:  # later classes, or ids that continue a previous strip's
                ids.ravel()[idx] = lab_on + (next_id - 1)
            next_id += n
            cnts.append(np.bincount(lab_on, minlength=n + 1)[1:].astype(np.float64))
            sums.append(np.bincount(lab_on, weights=pbest.ravel()[idx], minlength=n + 1)[1:])
            classes.append(np.full(n, int(c) - 1, np.int64))
        if ids is None:  # nothing above the threshold
            ids = np.zeros((h, self.width), dtype)
        cat = (lambda v, t: np.concatenate(v) if v else np.zeros(0, t))
        return ids, cat(classes, np.int64), cat(cnts, np.float64), cat(sums, np.float64)

    #: pixels per strip: bounds the memory of polygonising (accumulator, labels and the boundary edges being
    #: linked) whatever the scene's width. Smaller strips were also faster, down to this size (36 Mpx of speckle,
    #: 390,348 polygons: 2^25 px strips 42 s and 1.77 GB peak, 2^21 px 26 s and 0.98 GB, 2^20 the same)
    STRIP_PIXELS = 2**21

    def polygons(self, strip_rows: int | None = None, place=None):
        """Polygons in grid pixels (or placed, with ``place``): (geometries, class_ids, scores).

        Rows are labelled strip by strip; :class:`geodetect.outlines.Outliner` joins regions across strip
        borders in raster space and outlines each region once, however many strips it spans. ``place`` (a
        :class:`geodetect.georef.Placement`, whole scenes only: a block's pieces are joined in grid pixels)
        makes them from placed coordinates instead, so that none is held in pixels beside its placed copy;
        its ``finish`` is then the caller's.
        """
        from .outlines import Outliner, outline_polygons

        if place is not None and self.rows is not None:
            raise ValueError("MaskMosaic.polygons: place= is for whole scenes; a block's pieces stay in grid pixels")
        if strip_rows is None:
            strip_rows = max(256, min(2048, self.STRIP_PIXELS // max(1, self.width)))
        lo, hi = self.rows or (0, self.height)
        if hi - lo <= strip_rows:  # one strip: nothing to join, its regions are outlined directly
            try:
                ids, cids, npix, sums = self._strip(lo, hi - lo, 1)
            finally:
                self.cleanup()
            geoms = outline_polygons(ids, len(cids), row0=lo, place=place)
            return self._finish(geoms, cids, sums / np.maximum(npix, 1), npix, lo, hi)
        outliner = Outliner(self.width, place=place)
        classes, cnts, sums = [np.zeros(1, np.int64)], [np.zeros(1)], [np.zeros(1)]  # id 0: no region
        next_id = 1
        try:
            for r0 in range(lo, hi, strip_rows):
                ids, c, n, s = self._strip(r0, min(strip_rows, hi - r0), next_id)
                outliner.add(ids, r0, c)
                next_id += len(c)
                classes.append(c); cnts.append(n); sums.append(s)
        finally:
            self.cleanup()
        classes = np.concatenate(classes)
        geoms, region = outliner.finish()
        seen = region >= 0
        npix = np.bincount(region[seen], weights=np.concatenate(cnts)[seen], minlength=len(geoms))
        scores = np.bincount(region[seen], weights=np.concatenate(sums)[seen], minlength=len(geoms)) / np.maximum(npix, 1)
        cids = np.zeros(len(geoms), np.int64)
        cids[region[seen]] = classes[seen]
        return self._finish(geoms, cids, scores, npix, lo, hi)

    def _finish(self, geoms, cids, scores, npix, lo: int, hi: int):
        """Keep the pieces of a block that touch its borders aside, drop polygons under ``min_polygon_px``."""
        import shapely

        if self.rows is not None:  # a block: what touches a border is joined later, with the other blocks' pieces
            b = shapely.bounds(geoms) if len(geoms) else np.zeros((0, 4))
            edge = ((lo > 0) & (b[:, 1] <= lo)) | ((hi < self.height) & (b[:, 3] >= hi))
            self.pieces = (geoms[edge], cids[edge], scores[edge].astype(np.float64), npix[edge].astype(np.float64))
            geoms, cids, scores, npix = geoms[~edge], cids[~edge], scores[~edge], npix[~edge]
        if self.min_polygon_px and len(geoms):
            big = npix >= self.min_polygon_px  # grid pixels: area = pixel count
            self.small_removed = int((~big).sum())
            geoms, cids, scores = geoms[big], cids[big], scores[big]
        return geoms, cids, np.asarray(scores).astype(np.float32)

    def cleanup(self) -> None:
        """Remove the scratch files; safe to call twice."""
        import shutil

        try:
            self._acc.close()
        except Exception:  # noqa: BLE001
            pass
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)


def _ramp(length: int, lo: int, hi: int) -> np.ndarray:
    """Blend weights along one axis of a tile: 1 on its owned part [lo, hi), rising linearly from 0 over the inner
    half of each margin; the outer half, next to the tile's edge, gets no weight (not even a small one: beside a
    probability near the threshold, a 0.001 weight on an edge pixel's very different value flips the pixel).

    A margin only exists where a neighbouring tile owns those pixels, so every pixel keeps weight 1 from its
    owner. The pixels next to a tile's edge are the ones its network saw with the least context (zero padding
    inside the receptive field): giving them no weight makes a blended scene equal a whole-scene pass wherever
    the network's receptive field reaches less than a quarter of the overlap beyond a pixel.
    """
    x = np.arange(length) + 0.5
    w = np.ones(length, np.float32)
    if lo > 0:
        m = x < lo
        w[m] = np.clip((x[m] - lo / 2) / (lo / 2), 0.0, 1.0)
    if length - hi > 0:
        half = (length - hi) / 2
        m = x > hi
        w[m] = np.clip((length - x[m] - half) / half, 0.0, 1.0)
    return w


@functools.lru_cache(maxsize=64)
def _tile_weight(h: int, r_lo: int, r_hi: int, w: int, c_lo: int, c_hi: int) -> np.ndarray:
    """(h, w) blend weights of a tile whose owned part is rows [r_lo, r_hi) x columns [c_lo, c_hi) (read-only)."""
    out = np.outer(_ramp(h, r_lo, r_hi), _ramp(w, c_lo, c_hi))
    out.flags.writeable = False
    return out


def join_pieces(geoms, cids, scores, npix, min_polygon_px: int = 0):
    """Join the :attr:`MaskMosaic.pieces` of all blocks of a scene as one mosaic joins its strips.

    Returns (geometries, class ids, scores, number of polygons under ``min_polygon_px`` dropped), grid pixels.
    """
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    cids, scores, npix = np.asarray(cids, np.int64), np.asarray(scores, np.float64), np.asarray(npix, np.float64)
    if len(geoms):
        geoms, cids, scores = _join_across_strips(geoms, cids, scores, npix, np.ones(len(geoms), bool))
    small = 0
    if min_polygon_px and len(geoms):
        big = shapely.area(geoms) >= min_polygon_px
        small = int((~big).sum())
        geoms, cids, scores = geoms[big], cids[big], scores[big]
    return geoms, np.asarray(cids, np.int64), np.asarray(scores, np.float32), small


def _join_across_strips(geoms, cids, scores, npix, edge):
    """Union polygons of one class that share an edge across a strip border."""
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    e = np.nonzero(edge)[0]
    tree = shapely.STRtree(geoms[e])
    a, b = tree.query(geoms[e], predicate="intersects")
    m = (a < b) & (cids[e][a] == cids[e][b])
    a, b = a[m], b[m]
    if len(a):
        shared = shapely.length(shapely.intersection(geoms[e][a], geoms[e][b])) > 0
        a, b = a[shared], b[shared]
    n = len(e)
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    ncomp, comp = connected_components(graph, directed=False)
    new_g, new_c, new_s = [], [], []
    for k in range(ncomp):
        members = e[comp == k]
        if len(members) == 1:
            i = members[0]
            new_g.append(geoms[i]); new_c.append(cids[i]); new_s.append(scores[i])
            continue
        # the cut leaves collinear vertices where an outline crossed it: dropped (exact in whole pixels), so a
        # joined polygon has the vertices of the same area polygonised whole
        new_g.append(shapely.simplify(shapely.union_all(geoms[members]), 0))
        new_c.append(cids[members[0]])
        new_s.append(float(np.average(scores[members], weights=npix[members])))
    inner = np.nonzero(~edge)[0]
    out_g = np.concatenate([geoms[inner], np.array(new_g, dtype=object)])
    out_c = np.concatenate([cids[inner], np.array(new_c, dtype=np.int64)])
    out_s = np.concatenate([scores[inner], np.array(new_s, dtype=np.float64)])
    return out_g, out_c, out_s
