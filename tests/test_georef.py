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
