"""Vectorised outlines of labelled regions: the polygons GDAL's polygonize gives, valid, one per label."""

import numpy as np
import pytest
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage

from geodetect.outlines import outline_polygons


def _gdal(lab, n, row0=0, col0=0):
    """Reference: GDAL polygonize (4-connected), one polygon per label."""
    out = [None] * n
    for g, v in rasterio.features.shapes(lab.astype(np.int32), mask=lab > 0, connectivity=4,
                                         transform=Affine.translation(col0, row0)):
        assert out[int(v) - 1] is None
        out[int(v) - 1] = shapely.geometry.shape(g)
    return out


def _check(lab, n, row0=0, col0=0):
    got = outline_polygons(lab, n, row0=row0, col0=col0)
    assert len(got) == n
    ref = _gdal(lab, n, row0, col0)
    for k in range(n):
        assert shapely.is_valid(got[k]), (k, shapely.is_valid_reason(got[k]))
        assert got[k].area == (lab == k + 1).sum()  # whole pixels, nothing lost or added
        assert got[k].equals(ref[k]), k
    return got


@pytest.mark.parametrize("seed", range(6))
def test_random_regions_equal_gdal(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(5, 60, 2)
    on = rng.random((h, w)) < rng.uniform(0.3, 0.7)  # speckle: many corner contacts and holes
    if seed % 2:
        on = ndimage.binary_opening(ndimage.gaussian_filter(rng.random((h, w)), 2) > 0.5) | (rng.random((h, w)) < 0.03)
    lab, n = ndimage.label(on)
    assert n > 0
    _check(lab, n, row0=int(rng.integers(0, 5000)), col0=int(rng.integers(0, 50)))


def test_holes_islands_and_corner_contacts():
    on = np.zeros((12, 12), bool)
    on[1:10, 1:10] = True
    on[3:7, 3:7] = False  # a hole ...
    on[4:6, 4:6] = True  # ... with an island (another region) in it
    on[10, 10] = True  # touches the big region only at a corner: a region of its own
    on[2, 2] = False  # a hole pixel ...
    lab, n = ndimage.label(on)
    assert n == 3
    got = _check(lab, n)
    big = got[lab[1, 1] - 1]
    assert len(big.interiors) == 2


def test_region_touching_itself_at_a_corner_is_valid():
    """A ring of pixels whose inner pixel meets the outside at one corner: shell and hole touch there."""
    on = np.array([[1, 1, 1, 0],
                   [1, 0, 1, 0],
                   [1, 1, 0, 0]], bool)
    on = np.pad(on, 1)
    lab, n = ndimage.label(on)
    assert n == 1
    (poly,) = _check(lab, n)
    assert len(poly.interiors) == 1


def test_labels_must_be_complete():
    lab = np.zeros((4, 4), np.int32)
    lab[1, 1] = 2  # label 1 missing
    with pytest.raises(ValueError, match="1..n"):
        outline_polygons(lab, 2)
    assert len(outline_polygons(np.zeros((3, 3), np.int32), 0)) == 0


def _strip_ids(cls, bounds, ncls):
    """Label each strip of a class map on its own, with ids unique over the image (as MaskMosaic does)."""
    from geodetect.outlines import Outliner

    h, w = cls.shape
    out, classes, next_id = Outliner(w), [0], 1
    for r0, r1 in zip(bounds[:-1], bounds[1:]):
        ids = np.zeros((r1 - r0, w), np.int64)
        strip_classes = []
        for c in range(1, ncls + 1):
            lab, n = ndimage.label(cls[r0:r1] == c)
            ids[lab > 0] = lab[lab > 0] + next_id - 1
            strip_classes += [c] * n
            next_id += n
        out.add(ids, r0, strip_classes)
        classes += strip_classes
    return out.finish(), np.array(classes)


@pytest.mark.parametrize("seed", range(8))
def test_strips_joined_in_raster_space_equal_the_whole_image(seed):
    """Regions cut by strip borders come out as the polygons of the image outlined whole, classes apart."""
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 60, 2)
    ncls = int(rng.integers(1, 4))
    cls = rng.integers(0, ncls + 1, (h, w))
    if seed % 2:
        cls = np.where(ndimage.gaussian_filter(rng.random((h, w)), 1.5) > 0.5, cls, 0)
    bounds = [0, *sorted(set(rng.integers(1, h, 3).tolist())), h]
    (polys, region), classes = _strip_ids(cls, bounds, ncls)
    ref, ref_cls = [], []
    for c in range(1, ncls + 1):
        lab, n = ndimage.label(cls == c)
        ref += list(outline_polygons(lab, n))
        ref_cls += [c] * n
    assert len(polys) == len(ref)
    got_cls = np.zeros(len(polys), int)
    got_cls[region[region >= 0]] = classes[region >= 0]
    key = lambda g, c: (c, g.bounds, g.area)  # noqa: E731
    a = sorted(zip(polys, got_cls), key=lambda t: key(*t))
    b = sorted(zip(ref, ref_cls), key=lambda t: key(*t))
    for (x, cx), (y, cy) in zip(a, b):
        assert cx == cy and shapely.is_valid(x) and x.equals(y)


def test_a_region_spanning_every_strip_is_one_polygon():
    on = np.zeros((40, 10), bool)
    on[:, 2:5] = True  # a river through every strip
    on[5:35, 3] = False  # with a long hole crossing three borders
    lab = on.astype(np.int64)
    (polys, region), _ = _strip_ids(lab, [0, 10, 20, 30, 40], 1)
    assert len(polys) == 1
    assert polys[0].area == on.sum() and len(polys[0].interiors) == 1
    assert len(polys[0].exterior.coords) == 5  # no vertex left where the borders cut the outline


def _plain_walk(nxt):
    """Reference for the walking order: follow each cycle from its smallest edge, cycles by smallest edge."""
    seen, order, ids = set(), [], []
    for i in range(len(nxt)):
        if i in seen:
            continue
        j = i
        while j not in seen:
            seen.add(j)
            order.append(j)
            ids.append(i)
            j = int(nxt[j])
    return np.array(order, np.int64), np.array(ids, np.int64)


@pytest.mark.parametrize("seed", range(5))
def test_walk_order_follows_each_cycle_from_its_smallest_edge(seed):
    from geodetect.outlines import _walk_order

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 500))
    perm, nxt = rng.permutation(n), np.empty(n, np.int64)
    cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(0, n)), replace=False)) if n > 1 else []
    for cycle in np.split(perm, cuts):  # cycles of random lengths over scattered edges
        nxt[cycle] = np.roll(cycle, -1)
    order, ids = _walk_order(nxt)
    ref_order, ref_ids = _plain_walk(nxt)
    assert np.array_equal(order, ref_order) and np.array_equal(ids, ref_ids)


@pytest.mark.parametrize("seed", range(3))
def test_many_thin_strips_of_speckle_equal_the_whole_image(seed):
    """Regions inside a strip are outlined as the strip comes, the others at the end: the same polygons."""
    rng = np.random.default_rng(100 + seed)
    h, w, ncls = 90, 70, 2
    cls = np.where(ndimage.gaussian_filter(rng.random((h, w)), 1.0) > 0.5, rng.integers(1, ncls + 1, (h, w)), 0)
    bounds = list(range(0, h, int(rng.integers(3, 12)))) + [h]
    (polys, region), classes = _strip_ids(cls, bounds, ncls)
    ref = []
    for c in range(1, ncls + 1):
        lab, n = ndimage.label(cls == c)
        ref += [(c, g) for g in outline_polygons(lab, n)]
    got_cls = np.zeros(len(polys), int)
    got_cls[region[region >= 0]] = classes[region >= 0]
    assert len(polys) == len(ref) > 100
    key = lambda c, g: (c, g.bounds, g.area)  # noqa: E731
    for (cx, x), (cy, y) in zip(sorted(zip(got_cls, polys), key=lambda t: key(*t)), sorted(ref, key=lambda t: key(*t))):
        assert cx == cy and shapely.is_valid(x) and x.equals(y)


def test_holes_of_a_region_still_open_are_outlined_as_they_close():
    """A region spanning every strip (speckle above the percolation threshold) does not keep the edges of its
    holes until the end: a hole is let go as vertices once closed, and the polygons equal the whole image's."""
    from geodetect.outlines import Outliner

    rng = np.random.default_rng(5)
    h, w = 200, 160
    on = rng.random((h, w)) < 0.62
    on[:, 0] = True  # one region through every strip, whatever the speckle does
    out, next_id, waiting = Outliner(w), 1, []
    for r0 in range(0, h, 10):
        lab, n = ndimage.label(on[r0:r0 + 10])
        out.add(np.where(lab > 0, lab + next_id - 1, 0), r0, np.ones(n, np.int64))
        next_id += n
        waiting.append(sum(len(p[0]) for p in out._parts))
    early = sum(len(t[3]) for t in out._holes)
    polys, _ = out.finish()
    lab, n = ndimage.label(on)
    ref = outline_polygons(lab, n)
    big = max(ref, key=lambda g: g.area)
    assert len(big.interiors) > 300 and early > 0.8 * len(big.interiors)  # most holes closed before the end
    # what waits is the outer outline and the holes not yet closed, a small part of all the region's edges
    assert max(waiting) < 0.25 * big.length
    key = lambda g: (g.bounds, g.area)  # noqa: E731
    assert len(polys) == n
    for x, y in zip(sorted(polys, key=key), sorted(ref, key=key)):
        assert shapely.is_valid(x) and x.equals(y) and len(x.interiors) == len(y.interiors)


def test_holes_outlined_early_are_let_go_before_their_region_polygon_is_made(monkeypatch):
    """The vertices of a region's early-closed holes are freed before its polygon is made (at 900 Mpx they were
    held, as int64, beside the flat coordinates and the polygon: a gigabyte); the polygons are unchanged."""
    import weakref

    from geodetect.outlines import Outliner

    rng = np.random.default_rng(5)
    h, w = 120, 100
    on = rng.random((h, w)) < 0.62
    on[:, 0] = True
    taken, alive = [], []
    take = Outliner._take_holes

    def spy_take(self, *a):
        holes = take(self, *a)
        if holes is not None:
            assert holes[0].dtype == np.int32 and holes[1].dtype == np.int32  # 8 bytes a vertex, as they waited
            taken.append(weakref.ref(holes[0]))
        return holes

    make = shapely.from_ragged_array

    def spy_make(*a, **k):
        alive.extend(r() is not None for r in taken)
        return make(*a, **k)

    monkeypatch.setattr(Outliner, "_take_holes", spy_take)
    monkeypatch.setattr(shapely, "from_ragged_array", spy_make)
    out, next_id = Outliner(w), 1
    for r0 in range(0, h, 10):
        lab, n = ndimage.label(on[r0:r0 + 10])
        out.add(np.where(lab > 0, lab + next_id - 1, 0), r0, np.ones(n, np.int64))
        next_id += n
    polys, _ = out.finish()
    assert taken and not any(alive)
    lab, n = ndimage.label(on)
    ref = outline_polygons(lab, n)
    key = lambda g: (g.bounds, g.area)  # noqa: E731
    assert len(polys) == n
    for x, y in zip(sorted(polys, key=key), sorted(ref, key=key)):
        assert x.equals(y) and len(x.interiors) == len(y.interiors)


@pytest.mark.parametrize("seed", range(4))
def test_vertices_placed_a_slice_at_a_time_give_the_same_polygons(seed, monkeypatch):
    """_assemble puts each ring's vertices in place a slice at a time (no index array as long as the vertices):
    any slice, however it cuts rings and holes outlined early, gives the same polygons, vertex for vertex."""
    from geodetect import outlines

    rng = np.random.default_rng(40 + seed)
    h, w = 60, 50
    cls = (rng.random((h, w)) < 0.6).astype(np.int64)
    cls[:, 0] = 1  # a region through every strip: holes outlined early, added at the end
    bounds = list(range(0, h, 7)) + [h]
    lab, n = ndimage.label(cls)
    whole, (polys, region) = outline_polygons(lab, n, 3.0, 2.0), _strip_ids(cls, bounds, 1)[0]
    monkeypatch.setattr(outlines, "_SLICE", int(rng.integers(1, 40)))
    assert all(a.wkb == b.wkb for a, b in zip(whole, outline_polygons(lab, n, 3.0, 2.0)))
    polys2, region2 = _strip_ids(cls, bounds, 1)[0]
    assert len(polys2) == len(polys) and np.array_equal(region, region2)
    assert all(a.wkb == b.wkb for a, b in zip(polys, polys2)) and max(len(p.interiors) for p in polys) > 20


@pytest.mark.parametrize("crs_out", ["EPSG:4326", "EPSG:32633", "EPSG:3857"])
def test_polygons_made_from_placed_coordinates_equal_placed_polygons(crs_out):
    """place= (a georef.Placement) makes the polygons in the map CRS: vertex for vertex what polygons_to_map makes
    of the pixel polygons, whole image and strips (holes outlined early included)."""
    from geodetect import georef
    from geodetect.outlines import Outliner

    rng = np.random.default_rng(7)
    cls = (rng.random((70, 40)) < 0.6).astype(np.int64)
    cls[:, 0] = 1
    t = Affine(10.0, 0.5, 399000.0, 0.3, -10.0, 5001000.0)
    lab, n = ndimage.label(cls)
    place = georef.Placement(t, "EPSG:32633", crs_out)
    want = georef.polygons_to_map(outline_polygons(lab, n, 5.0, 0.0), t, "EPSG:32633", crs_out)
    got = place.finish(outline_polygons(lab, n, 5.0, 0.0, place=place))
    assert len(got) == n and all(a.wkb == b.wkb for a, b in zip(got, want))
    px, region = _strip_ids(cls, list(range(0, 70, 9)) + [70], 1)[0]
    out, next_id = Outliner(40, place=place), 1
    for r0 in list(range(0, 70, 9)):
        lab, k = ndimage.label(cls[r0:r0 + 9])
        out.add(np.where(lab > 0, lab + next_id - 1, 0), r0, np.ones(k, np.int64))
        next_id += k
    placed, region2 = out.finish()
    assert np.array_equal(region, region2) and max(len(p.interiors) for p in px) > 20
    want = georef.polygons_to_map(px, t, "EPSG:32633", crs_out)
    assert all(a.wkb == b.wkb for a, b in zip(place.finish(placed), want))


def test_placement_splits_polygons_across_the_antimeridian_as_polygons_to_map_does():
    from geodetect import georef

    lab = np.zeros((30, 30), np.int64)
    lab[5:25, 3:27] = 1
    lab[10:15, 10:12] = 0
    t = Affine(1000.0, 0.0, 760000.0, 0.0, -1000.0, 4000000.0)  # UTM 60N, 180 at about x = 770 km
    place = georef.Placement(t, "EPSG:32660", "EPSG:4326")
    got = place.finish(outline_polygons(lab, 1, place=place))
    want = georef.polygons_to_map(outline_polygons(lab, 1), t, "EPSG:32660", "EPSG:4326")
    assert got[0].geom_type == "MultiPolygon" and got[0].wkb == want[0].wkb
