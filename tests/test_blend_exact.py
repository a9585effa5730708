"""Blending tiles of a local segmentation model gives exactly the whole-scene result.

A detector whose output at a pixel depends only on a small neighbourhood (here a 5x5 box mean of a
binary band, radius 2) is run through ``gd.detect`` with 64 px tiles and 16 px overlap (the overlap is
8 times the radius). Pixels within 2 px of a tile's edge see zero padding instead of their neighbours,
so they are wrong there; the blend (``geodetect.stitch._ramp``) gives the outer half of each overlap
margin (up to overlap / 4 = 4 px from the edge) no weight, so the blended mask must equal the box
filter run over the whole scene at once, pixel for pixel. The old linear blend (weight rising from the
tile's edge) lets those wrong edge pixels tip pixels near the threshold: the second test checks that it
is *not* exact on the same scene, so the first test really tests the blend.
"""

from __future__ import annotations

import numpy as np
import pytest

import geodetect as gd
from geodetect.plugins import Detector, DetectorSpec, Mask, Task

RADIUS = 2
CRS = "EPSG:32610"


def box_mean(a: np.ndarray) -> np.ndarray:
    """5x5 mean of a 2-D 0/1 array, zero outside it (sums of 0/1 floats are exact integers)."""
    k = 2 * RADIUS + 1
    p = np.pad(a.astype(np.float32), RADIUS)
    return np.lib.stride_tricks.sliding_window_view(p, (k, k)).sum(axis=(-1, -2)) / np.float32(k * k)


class BoxFilter(Detector):
    """Test detector: the 5x5 box mean of band 1 as a one-class probability (zero padding at tile edges)."""

    spec = DetectorSpec(name="test-box-filter", version="0.0.1", task=Task.SEGMENTATION, classes=("on",),
                        bands=(1,), tile_size=64, overlap=16)

    def predict(self, tiles):
        return [Mask(box_mean(t[..., 0] > 0.5)[..., None]) for t in tiles]


def _scene(write_raster):
    rng = np.random.default_rng(7)
    img = (rng.random((230, 310)) < 0.5).astype(np.uint8) * 255  # 5 x 7 tiles; box means near 0.5 everywhere
    return write_raster(img), img > 127


def _detected_mask(path, shape) -> np.ndarray:
    from rasterio.features import rasterize
    from rasterio.transform import from_origin

    dets = gd.detect(path, BoxFilter, progress=False, crs_out=CRS)
    assert dets.attrs["geodetect"][0]["tiles_run"] == 35  # several tiles each way
    if len(dets) == 0:
        return np.zeros(shape, bool)
    return rasterize(list(dets.geometry), out_shape=shape, transform=from_origin(500000, 4200000, 1.0, 1.0),
                     fill=0, dtype="uint8") == 1


def test_blended_local_model_equals_whole_scene_pass(write_raster):
    path, on = _scene(write_raster)
    want = box_mean(on) >= 0.5  # the host's threshold (spec default 0.5), the whole scene at once
    got = _detected_mask(path, on.shape)
    assert want.sum() > 10_000
    assert np.array_equal(got, want), f"{int((got != want).sum())} pixels differ from the whole-scene pass"


def test_old_linear_blend_is_not_exact_on_the_same_scene(write_raster, monkeypatch):
    """The same scene with the previous blend (linear fall to the tile's edge): edge pixels leak in."""
    from geodetect import stitch

    def old_ramp(length, lo, hi):
        x = np.arange(length) + 0.5
        w = np.ones(length, np.float32)
        if lo > 0:
            m = x < lo
            w[m] = 1.0 - (lo - x[m]) / (lo + 0.5)
        if length - hi > 0:
            m = x > hi
            w[m] = 1.0 - (x[m] - hi) / (length - hi + 0.5)
        return np.maximum(w, np.float32(1e-3))  # the old floor: edge pixels never had zero weight

    path, on = _scene(write_raster)
    want = box_mean(on) >= 0.5
    stitch._tile_weight.cache_clear()  # tile weights are cached per shape
    monkeypatch.setattr(stitch, "_ramp", old_ramp)
    try:
        got = _detected_mask(path, on.shape)
    finally:
        stitch._tile_weight.cache_clear()
    assert int((got != want).sum()) > 0, "the old blend was exact here: the scene does not test the blend"
    # ... and only near tile seams: every differing pixel is within 2 px of some tile's edge
    from geodetect.io.tiling import Tiling

    t = Tiling(on.shape[1], on.shape[0], 64, 16)
    near = np.zeros(on.shape, bool)
    for i in range(len(t)):
        x0, y0, w, h = t.tile(i)
        inner = np.zeros(on.shape, bool)
        inner[y0 + RADIUS:y0 + h - RADIUS, x0 + RADIUS:x0 + w - RADIUS] = True
        tile = np.zeros(on.shape, bool)
        tile[y0:y0 + h, x0:x0 + w] = True
        near |= tile & ~inner
    assert not ((got != want) & ~near).any()



class NearThreshold(Detector):
    """Test detector: 0.5 + 1e-5 everywhere, 0 on the 2 px next to a tile's edge (as zero padding would give)."""

    spec = DetectorSpec(name="test-near-threshold", version="0.0.1", task=Task.SEGMENTATION, classes=("on",),
                        bands=(1,), tile_size=64, overlap=16)

    def predict(self, tiles):
        p = np.full(tiles.shape[:3] + (1,), 0.5 + 1e-5, np.float32)
        p[:, :2], p[:, -2:], p[:, :, :2], p[:, :, -2:] = 0, 0, 0, 0
        return [Mask(t) for t in p]


def test_edge_pixels_get_no_weight_at_all(write_raster):
    """A probability just over the threshold stays over it wherever a neighbour's edge pixels overlap: even a
    0.001 weight on their value (the old blend's floor) would tip it under the threshold there."""
    path = write_raster(np.full((230, 310), 100, np.uint8))
    dets = gd.detect(path, NearThreshold, progress=False, crs_out=CRS)
    # one polygon without holes: the scene less the 2 px frame its border tiles really give 0 (no neighbour there)
    assert len(dets) == 1
    assert dets.to_crs(CRS).area.iloc[0] == pytest.approx((230 - 4) * (310 - 4), abs=1e-3)
