import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.transform import xy as rio_xy

import geodetect as gd
from detectors import BrightMask
from geodetect import georef
from geodetect.errors import GeoreferenceError


@pytest.mark.parametrize("t", [
    Affine(0.5, 0.0, 100.0, 0.0, -0.5, 200.0),
    Affine.translation(500, 600) @ Affine.rotation(33) @ Affine.scale(2, -2),
    Affine(1.0, 0.3, 10.0, 0.2, 1.0, 20.0),  # sheared, south-up
])
def test_pixel_centres_match_rasterio(t):
    rows, cols = np.array([0, 3, 7]), np.array([0, 5, 2])
    x, y = georef.pixel_to_crs(t, cols + 0.5, rows + 0.5)
    ex, ey = rio_xy(t, rows, cols, offset="center")
    assert np.allclose(x, ex) and np.allclose(y, ey)
    c, r = georef.crs_to_pixel(t, x, y)
    assert np.allclose(c, cols + 0.5) and np.allclose(r, rows + 0.5)


def test_area_in_equal_area_projection():
    sq = shapely.box(500000, 4000000, 500100, 4000100)  # 100 m x 100 m in UTM 10N
    geo = georef.polygons_to_map(np.array([sq]), Affine.identity(), "EPSG:32610", "EPSG:4326")
    a = georef.area_m2(geo, "EPSG:4326")[0]
    assert a == pytest.approx(10000, rel=2e-3)  # UTM scale factor ~0.9996 at the CM
    assert georef.area_m2(np.array([shapely.Point(0, 0)]), "EPSG:4326")[0] == 0.0


def test_polygon_across_antimeridian_is_split_and_valid():
    # a 2 km square centred on 180 degrees, in UTM zone 1N
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32601, always_xy=True).transform(180.0, 52.0)
    sq = shapely.box(x - 1000, y - 1000, x + 1000, y + 1000)
    geo = georef.polygons_to_map(np.array([sq]), Affine.identity(), "EPSG:32601", "EPSG:4326")[0]
    assert geo.is_valid and geo.geom_type == "MultiPolygon"
    xmin, _, xmax, _ = geo.bounds
    assert xmin == pytest.approx(-180) and xmax == pytest.approx(180)
    assert all(p.bounds[2] - p.bounds[0] < 1 for p in geo.geoms)
    assert georef.area_m2(np.array([geo]), "EPSG:4326")[0] == pytest.approx(4e6, rel=3e-3)


def test_points_wrap_to_plus_minus_180():
    from pyproj import Transformer

    x, y = Transformer.from_crs(4326, 32601, always_xy=True).transform([179.999, -179.999], [52.0, 52.0])
    pts = georef.points_to_map(np.column_stack([x, y]), Affine.identity(), "EPSG:32601", "EPSG:4326")
    assert shapely.get_x(pts) == pytest.approx([179.999, -179.999], abs=1e-6)


def test_segmentation_across_antimeridian_end_to_end(write_raster):
    from pyproj import Transformer
    from rasterio.transform import from_origin

    x, y = Transformer.from_crs(4326, 32601, always_xy=True).transform(180.0, 52.0)
    img = np.zeros((200, 200), np.uint8)
    img[50:150, 50:150] = 255  # 100 x 100 px at 10 m: 1 km2 across 180 degrees
    path = write_raster(img, crs="EPSG:32601", transform=from_origin(x - 1000, y + 1000, 10, 10))
    dets = gd.detect(path, BrightMask, progress=False)
    assert len(dets) == 1
    g = dets.geometry.iloc[0]
    assert g.is_valid and g.geom_type == "MultiPolygon"
    assert dets.area_m2.iloc[0] == pytest.approx(1e6, rel=3e-3)


def test_scene_without_crs_needs_crs_argument(write_raster):
    path = write_raster(np.full((1, 80, 80), 10, np.uint8), crs=None)
    with pytest.raises(GeoreferenceError, match="has no CRS"):
        gd.detect(path, BrightMask, progress=False)
    dets = gd.detect(path, BrightMask, progress=False, crs="EPSG:32610")
    assert len(dets) == 0 and dets.crs.to_epsg() == 4326


def test_unplaced_image_with_bounds(write_raster):
    img = np.zeros((100, 100), np.uint8)
    img[40:60, 40:60] = 255
    path = write_raster(img, crs=None, transform=Affine.identity())
    with pytest.raises(GeoreferenceError, match="no geotransform"):
        gd.detect(path, BrightMask, progress=False)
    dets = gd.detect(path, BrightMask, progress=False, crs="EPSG:32610", bounds=(500000, 4000000, 500100, 4000100))
    assert dets.area_m2.iloc[0] == pytest.approx(400, rel=3e-3)


def test_transforms_in_chunks_give_what_one_pass_gives(monkeypatch):
    """Polygons are georeferenced and measured in chunks (bounded memory on millions of polygons): same results."""
    import numpy as np
    import shapely
    from affine import Affine

    from geodetect import georef

    rng = np.random.default_rng(5)
    polys = shapely.buffer(shapely.points(rng.random((50, 2)) * 600), rng.uniform(1, 9, 50), quad_segs=3)
    tr = Affine(0.5, 0.1, 400000, 0.05, -0.5, 5000000)
    whole = georef.polygons_to_map(polys, tr, "EPSG:32633", "EPSG:4326")
    area = georef.area_m2(whole, "EPSG:4326")
    monkeypatch.setattr(georef, "CHUNK", 7)
    parts = georef.polygons_to_map(polys, tr, "EPSG:32633", "EPSG:4326")
    assert len(parts) == 50 and all(shapely.equals_exact(a, b, 0) for a, b in zip(whole, parts))
    assert np.array_equal(georef.area_m2(parts, "EPSG:4326"), area) and (area > 0).all()
    assert shapely.get_coordinates(polys).max() > 100  # copy=True (the default) left the caller's polygons in pixels
    mine = polys.copy()
    placed = georef.polygons_to_map(mine, tr, "EPSG:32633", "EPSG:4326", copy=False)
    assert placed is mine and all(shapely.equals_exact(a, b, 0) for a, b in zip(whole, mine))


def _area_by_copy(geoms, crs):
    """The former area_m2: an equal-area copy of each polygon, measured by GEOS."""
    geoms = np.asarray(geoms, dtype=object)
    tr = georef.transformer(crs, georef.EQUAL_AREA_CRS)

    def fn(c):
        xs, ys = tr.transform(c[:, 0], c[:, 1])
        return np.column_stack([xs, ys])

    out = np.zeros(len(geoms))
    poly = np.isin(shapely.get_type_id(geoms), (3, 6, 7))
    out[poly] = shapely.area(shapely.transform(geoms[poly], fn))
    return out


def _holed_mix(rng, n, scale, x0, y0):
    """Polygons with 0-2 holes, MultiPolygons of them, empties, None, a point, a line, a collection, shuffled."""
    c = rng.random((n, 2)) * scale + (x0, y0)
    r = rng.uniform(0.01, 0.08, n) * scale
    polys = shapely.buffer(shapely.points(c), r, quad_segs=int(rng.integers(1, 6)))
    polys = shapely.difference(polys, shapely.buffer(shapely.points(c + rng.normal(0, 0.2, (n, 2)) * r[:, None]),
                                                     r * rng.uniform(0.05, 0.3, n), quad_segs=2))
    polys = shapely.difference(polys, shapely.buffer(shapely.points(c - 0.5 * r[:, None]), r * 0.2, quad_segs=2))
    multi = shapely.multipolygons([[a, b] for a, b in zip(polys[:n // 5], polys[n // 5:2 * n // 5])])
    odd = [shapely.Polygon(), shapely.MultiPolygon(), None, shapely.Point(x0, y0),
           shapely.LineString([(x0, y0), (x0 + scale, y0 + scale)]),
           shapely.GeometryCollection([polys[0], shapely.Point(x0, y0)]),
           shapely.Polygon([(x0, y0), (x0 + scale * 0.01, y0), (x0, y0 + scale * 0.01)])]
    mixed = np.concatenate([polys, multi, np.array(odd, dtype=object)]).astype(object)
    rng.shuffle(mixed)
    return mixed


@pytest.mark.parametrize("crs,scale,x0,y0", [
    ("EPSG:32633", 5000.0, 400000.0, 5000000.0),
    ("EPSG:4326", 0.05, 12.0, 45.0),
    ("EPSG:4326", 0.5, -60.0, -70.0),
    ("EPSG:3857", 2000.0, 1e6, 6e6),
    ("EPSG:6933", 3000.0, 2e6, 3e6),  # the equal-area CRS itself
])
@pytest.mark.parametrize("small", [False, True])
def test_area_from_coordinates_equals_area_of_equal_area_copy(crs, scale, x0, y0, small, monkeypatch):
    """area_m2 sums the shoelace over transformed coordinates (no polygon copied): the copy's GEOS area, to 1e-9,
    also when rings, vertices and MultiPolygons are taken a few at a time (rings then cut across slices)."""
    if small:
        monkeypatch.setattr(georef, "_RINGS", 5)
        monkeypatch.setattr(georef, "_VERTICES", 7)
        monkeypatch.setattr(georef, "CHUNK", 3)
    geoms = _holed_mix(np.random.default_rng(int(x0) % 1000 + small), 120, scale, x0, y0)
    got, want = georef.area_m2(geoms, crs), _area_by_copy(geoms, crs)
    assert np.allclose(got, want, rtol=1e-9, atol=0) and (want > 0).sum() > 100
    assert (got[~np.isin(shapely.get_type_id(geoms), (3, 6, 7))] == 0).all()


def test_area_near_the_antimeridian_as_before():
    """Polygons placed across +/-180 (split into MultiPolygons) and beside it measure as their equal-area copies do."""
    rng = np.random.default_rng(3)
    c = rng.random((60, 2)) * 50000 + (745000, 4000000)  # UTM 60N, about 180 at x = 770 km
    px = shapely.difference(shapely.buffer(shapely.points(c), 3000, quad_segs=4), shapely.buffer(shapely.points(c), 500))
    geo = georef.polygons_to_map(px, Affine.identity(), "EPSG:32660", "EPSG:4326")
    assert (shapely.get_type_id(geo) == 6).any()
    assert np.allclose(georef.area_m2(geo, "EPSG:4326"), _area_by_copy(geo, "EPSG:4326"), rtol=1e-9, atol=0)


def test_area_of_a_polygon_with_many_holes(monkeypatch):
    """A polygon with more holes than a block of rings, built flat: measured in blocks, equal to its copy's area."""
    monkeypatch.setattr(georef, "_RINGS", 4096)
    monkeypatch.setattr(georef, "_VERTICES", 5000)
    k = 150  # 22,500 square holes in a 1500² grid of pixels, in metres of UTM 33N
    gx, gy = (a.ravel() * 10.0 + 3.0 for a in np.meshgrid(np.arange(k), np.arange(k)))
    sq = np.array([(0, 0), (0, 4), (4, 4), (4, 0), (0, 0)], np.float64)
    coords = np.r_[[(0, 0), (1500, 0), (1500, 1500), (0, 1500), (0, 0)],
                   np.column_stack([(gx[:, None] + sq[:, 0]).ravel(), (gy[:, None] + sq[:, 1]).ravel()])]
    coords += (400000.0, 5000000.0)
    poly = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords,
                                     (np.arange(0, 5 * (k * k + 2), 5), np.array([0, k * k + 1])))[0]
    geoms = np.array([poly, shapely.box(400000, 5000000, 400010, 5000010)], dtype=object)
    got = georef.area_m2(geoms, "EPSG:32633")
    assert np.allclose(got, _area_by_copy(geoms, "EPSG:32633"), rtol=1e-9, atol=0)
    assert got[0] == pytest.approx((1500 ** 2 - 16 * k * k), rel=2e-3)
