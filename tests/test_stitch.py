"""Seams for every task: an object seen by two tiles is reported once, with its whole extent."""

import numpy as np
import pytest
import shapely

import geodetect as gd
from detectors import BrightBoxes, BrightMask, BrightPoints, MeanLabel
from geodetect.io.tiling import Tiling
from geodetect.simulate import seam_positions
from geodetect.stitch import dedupe_points


def _squares(shape, centres, half=2):
    img = np.zeros(shape, np.uint8)
    for c, r in centres:
        img[int(r) - half : int(r) + half, int(c) - half : int(c) + half] = 255
    return img


def test_points_on_seams_reported_once(write_raster):
    seams = seam_positions(300, 64, 16).astype(int)
    centres = [(x, y) for x in seams[::3] for y in seams[::3]] + [(x, 30) for x in seams[1::3]]
    path = write_raster(_squares((300, 300), centres))
    dets = gd.detect(path, BrightPoints, progress=False)
    assert len(dets) == len(centres)
    st = dets.attrs["geodetect"][0]
    assert st["duplicates_removed"] > 0  # the seams really produced duplicates
    # back to pixel space: each square's centre (an integer pixel corner) within 0.01 px
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32610, always_xy=True).transform(dets.geometry.x, dets.geometry.y)
    cols, rows = np.asarray(x) - 500000, 4200000 - np.asarray(y)
    got = sorted(zip(np.round(cols, 2), np.round(rows, 2)))
    assert got == sorted((float(c), float(r)) for c, r in centres)


def test_boxes_on_seams_reported_once_whole(write_raster):
    # rectangles 10 px wide straddling the seams: each tile sees a cut piece, the owner the whole box
    img = np.zeros((200, 200), np.uint8)
    rects = [(40, 10, 52, 20), (88, 90, 100, 102), (140, 140, 152, 150), (5, 180, 15, 190)]
    for c0, r0, c1, r1 in rects:
        img[r0:r1, c0:c1] = 255
    path = write_raster(img)
    dets = gd.detect(path, BrightBoxes, progress=False, crs_out="EPSG:32610")
    assert len(dets) == len(rects)
    got = sorted(tuple(np.round([b[0] - 500000, 4200000 - b[3], b[2] - 500000, 4200000 - b[1]], 6))
                 for b in dets.geometry.bounds.values)
    assert got == sorted(tuple(float(v) for v in r) for r in rects)
    assert np.allclose(sorted(dets.area_m2), sorted((c1 - c0) * (r1 - r0) for c0, r0, c1, r1 in rects), rtol=2e-3)


def test_mask_across_many_tiles_is_one_polygon(write_raster):
    img = np.zeros((400, 400), np.uint8)
    img[30:370, 50:330] = 255  # one lake over ~36 tiles
    img[100:140, 100:140] = 0  # an island: the lake has a hole
    img[380:390, 380:390] = 255  # a pond in the corner
    path = write_raster(img)
    dets = gd.detect(path, BrightMask, progress=False, crs_out="EPSG:32610")
    assert len(dets) == 2
    lake = dets.loc[dets.area_m2.idxmax()].geometry
    assert lake.is_valid and len(lake.interiors) == 1
    assert lake.area == pytest.approx(340 * 280 - 40 * 40)
    assert dets.area_m2.max() == pytest.approx(340 * 280 - 40 * 40, rel=2e-3)  # equal-area vs UTM
    assert sorted(dets.area_m2.round(-1))[0] == pytest.approx(100, abs=10)


def test_mask_polygons_joined_across_strips(write_raster, monkeypatch):
    """Polygonising in strips (bounded memory) joins polygons cut by strip borders."""
    from geodetect import stitch

    img = np.zeros((300, 120), np.uint8)
    img[10:290, 20:40] = 255  # tall bar crossing every strip
    img[50:60, 60:100] = 255  # small block inside one strip
    path = write_raster(img)
    orig = stitch.MaskMosaic.polygons
    monkeypatch.setattr(stitch.MaskMosaic, "polygons", lambda self, strip_rows=None, **kw: orig(self, strip_rows=64, **kw))
    dets = gd.detect(path, BrightMask, progress=False, crs_out="EPSG:32610")
    assert len(dets) == 2
    assert sorted(shapely.area(dets.geometry.values).round()) == [400.0, 280.0 * 20]
    assert all(g.geom_type == "Polygon" for g in dets.geometry)


def test_labels_footprints_partition_the_scene(write_raster):
    img = np.zeros((150, 200), np.uint8)
    img[:, 100:] = 255
    path = write_raster(img)
    dets = gd.detect(path, MeanLabel, progress=False, crs_out="EPSG:32610")
    t = Tiling(200, 150, 64, 0)
    assert len(dets) == len(t)
    union = shapely.union_all(dets.geometry.values)
    assert union.area == pytest.approx(200 * 150)
    assert dets.geometry.area.sum() == pytest.approx(200 * 150)  # no overlaps
    bright = dets[dets.class_name == "bright"]
    assert bright.geometry.centroid.x.min() - 500000 >= 100


def test_dedupe_prefers_the_more_central_detection():
    xy = np.array([[10.0, 10.0], [10.5, 10.2], [50.0, 50.0]])
    owned = np.array([[0, 0, 10.2, 64], [10.2, 0, 64, 64], [0, 0, 64, 64]])
    keep = dedupe_points(xy, np.zeros(3, int), np.array([0.9, 0.5, 1.0]), np.array([0, 1, 0]), owned, 2.0)
    assert keep.tolist() == [True, False, True]
    # different classes are never merged
    keep = dedupe_points(xy, np.array([0, 1, 0]), np.ones(3), np.array([0, 1, 0]), owned, 2.0)
    assert keep.tolist() == [True, True, True]
    # ... unless the detector says its tiles may disagree on the class (spec.merge_classes): the owner's stays
    keep = dedupe_points(xy, np.array([0, 1, 0]), np.ones(3), np.array([0, 1, 0]), owned, 2.0, any_class=True)
    assert keep.tolist() == [True, False, True]


def test_dedupe_boxes_any_class_merges_twins_of_other_classes():
    from geodetect.stitch import dedupe_boxes

    xyxy = np.array([[8.0, 8, 12, 12], [8.2, 8.1, 12.2, 12.1], [40.0, 40, 44, 44]])
    owned = np.array([[0, 0, 10.2, 64], [10.2, 0, 64, 64], [0, 0, 64, 64]])
    cls, tiles = np.array([0, 1, 1]), np.array([0, 1, 0])
    assert dedupe_boxes(xyxy, cls, np.ones(3), tiles, owned, 0.5, 4.0).tolist() == [True, True, True]
    # twins 0/1 (other tiles, other classes) merge; the box far away stays
    assert dedupe_boxes(xyxy, cls, np.ones(3), tiles, owned, 0.5, 4.0, any_class=True).tolist() == [True, False, True]


def test_mask_probabilities_blended_in_overlaps():
    """Two overlapping tiles that disagree: the owner wins on its side, but the neighbour is blended in."""
    from geodetect.io.tiling import Tiling
    from geodetect.stitch import MaskMosaic

    t = Tiling(112, 64, 64, 16)  # two tiles across: x 0..64 and 48..112, owned split at 56
    assert [t.tile(i) for i in range(len(t))] == [(0, 0, 64, 64), (48, 0, 64, 64)]
    m = MaskMosaic(112, 64, 1, 0.5)
    ones = np.ones((64, 64), bool)
    m.add(np.ones((64, 64, 1), np.float32), ones, t.tile(0), t.owned(0))   # tile 0: all "water"
    m.add(np.zeros((64, 64, 1), np.float32), ones, t.tile(1), t.owned(1))  # tile 1: nothing
    polys, cid, score = m.polygons()
    assert len(polys) == 1 and polys[0].bounds == (0.0, 0.0, 56.0, 64.0)  # the ownership line
    # blended: probabilities in tile 0's part of the overlap are below 1, so the mean score is too
    assert 0.5 < score[0] < 1.0


def test_min_polygon_px_drops_specks_after_joining_and_counts_them(write_raster):
    """Specks under min_polygon_px go (and are counted); a big area split over many tiles stays whole."""
    from dataclasses import replace

    from detectors import BrightMask

    img = np.zeros((300, 300), np.uint8)
    img[10:290, 100:110] = 255  # 2,800 px across many tiles
    img[50:52, 200:202] = 255   # a 4-px speck
    img[150:153, 250:253] = 255  # a 9-px speck
    path = write_raster(img)

    class Specky(BrightMask):
        spec = replace(BrightMask.spec, name="test-specky", min_polygon_px=5)

    got = gd.detect(path, Specky, progress=False)
    assert sorted(np.round(got.to_crs("EPSG:32610").area).astype(int)) == [9, 2800]
    notes = got.attrs["geodetect"][0]["notes"]
    assert any("1 polygons under 5 px" in n for n in notes)
    assert len(gd.detect(path, BrightMask, progress=False)) == 3  # without the limit all three stay


def _same_shape(x, y) -> bool:
    """Equal up to rounding: strips cut at other rows leave other (collinear) vertices, reprojected."""
    return x.symmetric_difference(y).area <= 1e-9 * x.area


def test_mask_mosaic_on_disk_equals_in_memory(write_raster, monkeypatch):
    """Scenes beyond MEMORY_BUDGET blend in a scratch GeoTIFF: same polygons, strips joined the same way."""
    from detectors import BrightMask
    from geodetect.stitch import MaskMosaic

    yy, xx = np.mgrid[0:700, 0:700]
    img = (((xx - yy) % 97 < 30) | ((xx - 350) ** 2 + (yy - 300) ** 2 < 120**2)).astype(np.uint8) * 255
    path = write_raster(img)
    small_strips = MaskMosaic.polygons.__defaults__
    monkeypatch.setattr(MaskMosaic.polygons, "__defaults__", (256, None))  # several strips to join (strip_rows, place)
    in_memory = gd.detect(path, BrightMask, progress=False)
    monkeypatch.setattr(MaskMosaic, "MEMORY_BUDGET", 0)
    on_disk = gd.detect(path, BrightMask, progress=False)
    monkeypatch.setattr(MaskMosaic.polygons, "__defaults__", small_strips)
    assert len(in_memory) == len(on_disk) > 3
    a = in_memory.sort_values("area_m2").geometry.values
    b = on_disk.sort_values("area_m2").geometry.values
    assert all(_same_shape(x, y) for x, y in zip(a, b))


def test_strips_are_narrower_for_wide_scenes(monkeypatch):
    """Strip height shrinks with scene width, so polygonising memory does not grow with a wide scene."""
    from geodetect.stitch import MaskMosaic

    calls = []
    orig = MaskMosaic._strip
    monkeypatch.setattr(MaskMosaic, "_strip", lambda self, r0, h, *a: calls.append((r0, h)) or orig(self, r0, h, *a))
    m = MaskMosaic(1000, 700, 1, 0.5)
    m.add(np.ones((700, 1000, 1), np.float32), np.ones((700, 1000), bool), (0, 0, 1000, 700), (0, 0, 1000, 700))
    m.STRIP_PIXELS = 300 * 1000
    polys, _, _ = m.polygons()
    assert calls == [(0, 300), (300, 300), (600, 100)]
    assert len(polys) == 1 and polys[0].area == 700 * 1000  # joined again across both strip borders


def test_multi_class_mask_polygons_carry_their_class_and_mean_score():
    from geodetect.stitch import MaskMosaic

    p = np.zeros((60, 100, 3), np.float32)
    p[..., 0] = 0.2                      # class 0 ("a") weak everywhere: below the threshold
    p[5:25, 5:45, 1] = 0.9               # class 1: one block
    p[5:25, 25:45, 1] = 0.7              #   with a weaker half: mean (0.9 + 0.7) / 2
    p[30:50, 60:90, 2] = 0.8             # class 2: two blocks
    p[52:58, 10:20, 2] = 0.6
    m = MaskMosaic(100, 60, 3, 0.5)
    m.add(p, np.ones((60, 100), bool), (0, 0, 100, 60), (0, 0, 100, 60))
    geoms, cids, scores = m.polygons(strip_rows=16)  # strips cut both class 1 and class 2 blocks
    got = sorted(zip(cids.tolist(), shapely.area(geoms).tolist(), scores.astype(float).tolist()))
    assert [(c, a) for c, a, _ in got] == [(1, 800.0), (2, 60.0), (2, 600.0)]
    assert [s for _, _, s in got] == pytest.approx([0.8, 0.6, 0.8], abs=1e-6)
