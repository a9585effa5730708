"""Urban scenes seen from above at 0.3 m (the Inria aerial resolution): buildings, shadows, roads, trees.

Each scene has a street grid (at a scene-wide angle), paved lots, grass and
bare soil, and buildings between the streets: rectangles and L-shapes, most
aligned with the streets, some at any angle, 5 to 45 m across, with flat or
gabled roofs in grey, red tile, dark, white or brown. Every building casts a
shadow away from one sun direction, its length set by the building's height.
Round tree canopies (with their own shadows) stand along streets and in
yards and may overhang roofs. Each scene gets its own brightness, contrast,
colour cast and sensor noise.

Footprints are polygons, rasterised at pixel centres (``rasterio.features.
rasterize``, the rule the pipeline's polygonisation inverts), so a
building's truth polygon covers exactly the pixels drawn as roof (before
trees are drawn over some of them). Truth: one row per building, class
``building``, the footprint polygon in EPSG:4326, plus ``height_m``,
``roof`` and ``shape``.

Drawing is vectorised: one rasterisation each for roads, lots, roofs and
shadows; trees are drawn in small windows. A 1024 x 1024 scene takes about
0.5 s on one core.
"""

from __future__ import annotations

import math

import numpy as np

from geodetect.simulate._grid import SimScene, nodata_frame, pixels_to_lonlat, scene_transform, write_geotiff

__all__ = ["ROOF_COLOURS", "make_urban", "footprint_mask"]

#: roof colours (RGB on 0..255) and their shares
ROOF_COLOURS = {
    "grey": ((150, 150, 152), 0.34),
    "red tile": ((160, 78, 58), 0.2),
    "dark": ((62, 62, 66), 0.18),
    "white": ((222, 222, 218), 0.14),
    "brown": ((118, 92, 70), 0.14),
}
_GRASS = np.array((88, 120, 62), float)
_DRY_GRASS = np.array((138, 140, 92), float)
_SOIL = np.array((140, 118, 92), float)
_ASPHALT = np.array((92, 94, 98), float)
_PAVING = np.array((160, 156, 148), float)
_TREE = np.array((52, 84, 44), float)


def _smooth_noise(rng, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in 0..1: a coarse random grid, bilinearly upsampled."""
    gh, gw = h // cell + 2, w // cell + 2
    g = rng.random((gh, gw))
    ys = (np.arange(h) + 0.5) / cell
    xs = (np.arange(w) + 0.5) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx


def _rect(cx, cy, length, width, angle):
    """Rotated rectangle polygon (shapely) centred at (cx, cy), pixel coordinates."""
    import shapely

    ca, sa = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    pts = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
    return shapely.Polygon([(cx + u * ca - v * sa, cy + u * sa + v * ca) for u, v in pts])


def _building(rng, cx, cy, angle, px_per_m):
    """One footprint: (polygon, its convex parts (rectangles, for shadows), shape name)."""
    import shapely

    length = rng.uniform(7, 40) * px_per_m
    width = min(length, rng.uniform(6, 20) * px_per_m)
    main = _rect(cx, cy, length, width, angle)
    if rng.random() < 0.3:  # L-shape: a wing on one end of the main block, out to one side
        ww = rng.uniform(0.5, 1.0) * width
        reach = rng.uniform(0.6, 1.4) * width
        su = rng.choice([-1, 1]) * (length - ww) / 2
        sv = rng.choice([-1, 1]) * (width / 2 + reach / 2)
        ca, sa = math.cos(angle), math.sin(angle)
        wx, wy = cx + su * ca - sv * sa, cy + su * sa + sv * ca
        wing = _rect(wx, wy, ww, reach + 1.0 * px_per_m, angle)  # overlaps the main block by 1 m
        poly = shapely.union(main, wing).normalize()  # always one polygon: the wing overlaps the block
        if poly.geom_type != "Polygon":
            return main, [main], "rectangle"
        return shapely.Polygon(poly.exterior), [main, wing], "L-shape"
    return main, [main], "rectangle"


def make_urban(
    path,
    *,
    crs="EPSG:32618",
    center=(-77.03, 38.89),
    size=(1024, 1024),
    gsd_m: float = 0.3,
    seed: int = 0,
    n_buildings: int | None = None,
    n_trees: int | None = None,
    roads: bool = True,
    sun_azimuth_deg: float | None = None,
    rotation_deg: float = 0.0,
    nodata_border: int = 0,
    dtype: str = "uint8",
    blank: bool = False,
    n_objects: int | None = None,
) -> SimScene:
    """Write an urban RGB scene to ``path``; return it with the building footprints as truth.

    Parameters
    ----------
    crs, center, size, gsd_m : the grid: CRS, centre (lon, lat), (width, height) in pixels, metres per pixel.
    seed : everything random comes from this seed.
    n_buildings : buildings to place (default: a density drawn from the seed, 25 to 75 per hectare-ish
        scene of 1024 x 1024 px at 0.3 m); fewer are placed when the scene is full.
        ``n_objects`` is an alias (the CLI's ``--n-objects``).
    n_trees : tree canopies (default from the seed).
    roads : draw a street grid.
    sun_azimuth_deg : direction the sun comes from, degrees clockwise from image up (default random).
    rotation_deg, nodata_border, dtype : as in the other simulators (rotated grid, nodata frame, uint8/uint16/float32).
    blank : ground, roads and trees only, no buildings (truth empty).

    Returns
    -------
    SimScene with ``truth``: GeoDataFrame (EPSG:4326) of footprints, ``class_name`` ``"building"``.
    """
    import geopandas as gpd
    import shapely
    from affine import Affine
    from rasterio.features import rasterize
    from scipy import ndimage

    if n_objects is not None and n_buildings is None:
        n_buildings = n_objects
    rng = np.random.default_rng(seed)
    w, h = int(size[0]), int(size[1])
    ppm = 1.0 / gsd_m  # pixels per metre
    img = np.empty((h, w, 3), float)
    ident = Affine.identity()

    # ---- ground: grass, dry grass and soil in smooth patches
    n1 = _smooth_noise(rng, h, w, max(8, int(40 * ppm)))
    n2 = _smooth_noise(rng, h, w, max(4, int(12 * ppm)))
    soil_share = rng.uniform(0.1, 0.6)
    grass = _GRASS * (1 - n2[..., None] * 0.6) + _DRY_GRASS * (n2[..., None] * 0.6)
    ground = np.where((n1 < soil_share)[..., None], _SOIL * (0.85 + 0.3 * n2[..., None]), grass)
    img[:] = ground * (0.9 + 0.2 * _smooth_noise(rng, h, w, max(2, int(2 * ppm))))[..., None]

    # ---- street grid and paved lots
    grid_angle = rng.uniform(0, math.pi / 2) if rng.random() < 0.5 else rng.choice([0.0, math.pi / 2])
    obstacles = []  # shapely geometries buildings must avoid
    road_polys = []
    diag = math.hypot(w, h)
    if roads:
        spacing = rng.uniform(70, 130) * ppm
        for axis in (0, 1):
            a = grid_angle + axis * math.pi / 2
            off = rng.uniform(0, spacing)
            for k in range(-int(diag / spacing) - 1, int(diag / spacing) + 2):
                d = off + k * spacing  # signed offset of the road's centre line from the scene centre
                nx, ny = -math.sin(a), math.cos(a)
                cx, cy = w / 2 + d * nx, h / 2 + d * ny
                if abs(d) > diag / 2 + 20:
                    continue
                if rng.random() < 0.15:
                    continue  # not every street of the grid exists
                rw = rng.uniform(6, 12) * ppm
                road_polys.append((_rect(cx, cy, diag * 1.5, rw, a), rw))
    lots = []
    for _ in range(int(rng.integers(0, 4) * (w * h) / 1024**2 + 0.5)):
        lots.append(_rect(rng.uniform(0, w), rng.uniform(0, h), rng.uniform(15, 45) * ppm, rng.uniform(12, 30) * ppm,
                          grid_angle + rng.choice([0, math.pi / 2])))
    if lots:
        lot = rasterize([(p, 1) for p in lots], out_shape=(h, w), transform=ident, dtype="uint8").astype(bool)
        img[lot] = _PAVING * rng.uniform(0.75, 1.05) * (0.95 + 0.1 * n2[lot][:, None])
        obstacles += lots
    if road_polys:
        # sidewalks (a paler band) under the asphalt
        side = rasterize([(p.buffer(rng.uniform(1.5, 3) * ppm, join_style="mitre"), 1) for p, _ in road_polys],
                         out_shape=(h, w), transform=ident, dtype="uint8").astype(bool)
        img[side] = _PAVING * (0.92 + 0.1 * n2[side][:, None])
        road = rasterize([(p, 1) for p, _ in road_polys], out_shape=(h, w), transform=ident, dtype="uint8").astype(bool)
        img[road] = _ASPHALT * rng.uniform(0.8, 1.2) * (0.95 + 0.1 * n2[road][:, None])
        obstacles += [p.buffer(2.5 * ppm) for p, _ in road_polys]

    # ---- buildings
    area = w * h / 1024**2
    if n_buildings is None:
        n_buildings = int(rng.integers(25, 75) * area + 0.5)
    if blank:
        n_buildings = 0
    polys, parts, shapes_, heights, roofs = [], [], [], [], []
    placed = np.array([], dtype=object)
    obst = np.array(obstacles, dtype=object)
    roof_names = list(ROOF_COLOURS)
    roof_p = np.array([ROOF_COLOURS[k][1] for k in roof_names])
    tries = 0
    while len(polys) < n_buildings and tries < n_buildings * 30:
        tries += 1
        cx, cy = rng.uniform(-0.02 * w, 1.02 * w), rng.uniform(-0.02 * h, 1.02 * h)
        ang = grid_angle + rng.choice([0, math.pi / 2]) if rng.random() < 0.8 else rng.uniform(0, math.pi)
        poly, pp, shp = _building(rng, cx, cy, ang, ppm)
        gap = poly.buffer(rng.uniform(1.5, 4) * ppm)
        if len(placed) and shapely.intersects(placed, gap).any():
            continue
        if len(obst) and shapely.intersects(obst, poly).any():
            continue
        polys.append(poly)
        parts.append(pp)
        shapes_.append(shp)
        heights.append(float(rng.uniform(3, 9) if rng.random() < 0.8 else rng.uniform(9, 25)))
        roofs.append(roof_names[rng.choice(len(roof_names), p=roof_p)])
        placed = np.append(placed, poly)

    # ---- shadows (on the ground, away from the sun), then roofs
    sun = math.radians(sun_azimuth_deg if sun_azimuth_deg is not None else rng.uniform(0, 360))
    elev = math.radians(rng.uniform(35, 65))
    sdx, sdy = -math.sin(sun), math.cos(sun)  # image down = +row; the sun comes from azimuth `sun`
    if polys:
        shadow_geoms = []
        for pp, ht in zip(parts, heights):
            L = ht / math.tan(elev) * ppm
            for p in pp:
                moved = shapely.affinity.translate(p, sdx * L, sdy * L)
                shadow_geoms.append(shapely.convex_hull(shapely.union(p, moved)))
        shadow = rasterize([(g, 1) for g in shadow_geoms], out_shape=(h, w), transform=ident, dtype="uint8").astype(bool)
        img[shadow] *= rng.uniform(0.35, 0.55)
        labels = rasterize([(p, i + 1) for i, p in enumerate(polys)], out_shape=(h, w), transform=ident,
                           dtype="int32")
        on = labels > 0
        lab = labels[on] - 1
        base = np.array([ROOF_COLOURS[r][0] for r in roofs], float)
        base *= rng.uniform(0.85, 1.12, (len(roofs), 1)) * rng.uniform(0.95, 1.05, (len(roofs), 3))
        # gabled roofs: the two halves either side of the ridge (the long axis) are lit differently
        rows, cols = np.nonzero(on)
        cen = np.array([[p.centroid.x, p.centroid.y] for p in polys])
        ang = np.array([_long_axis_angle(pp[0]) for pp in parts])
        gable = rng.random(len(polys)) < 0.5
        light = rng.uniform(0.78, 0.92, len(polys))
        v = -(cols + 0.5 - cen[lab, 0]) * np.sin(ang[lab]) + (rows + 0.5 - cen[lab, 1]) * np.cos(ang[lab])
        side = np.where(v >= 0, 1.0, light[lab])
        side = np.where(gable[lab], side, 1.0)
        tex = 0.96 + 0.08 * n2[on]
        img[on] = base[lab] * (side * tex)[:, None]
        # a darker rim (parapet / eaves) one pixel wide
        rim = on & ~ndimage.binary_erosion(on)
        img[rim] *= 0.85
    else:
        labels = np.zeros((h, w), np.int32)

    # ---- trees: round canopies with a shadow, along streets and in yards, some over roof edges
    if n_trees is None:
        n_trees = int(rng.integers(20, 120) * area + 0.5)
    tree_xy = rng.uniform([0, 0], [w, h], (n_trees, 2))
    radii = rng.uniform(2.0, 6.0, n_trees) * ppm
    tree_layer = np.zeros((h, w), float)
    tree_shade = np.zeros((h, w), float)
    for (tx, ty), r in zip(tree_xy, radii):
        _disc(tree_shade, tx + sdx * r * 0.9, ty + sdy * r * 0.9, r)
        _disc(tree_layer, tx, ty, r)
    img *= (1 - 0.45 * tree_shade * (1 - tree_layer))[..., None]
    leaf = _TREE * rng.uniform(0.8, 1.15) * (0.75 + 0.5 * _smooth_noise(rng, h, w, max(2, int(1.2 * ppm))))[..., None]
    img = img * (1 - tree_layer[..., None]) + leaf * tree_layer[..., None]

    # ---- sensor: blur, illumination, colour cast, contrast, noise
    img = ndimage.gaussian_filter(img, sigma=(0.6, 0.6, 0))
    gain = rng.uniform(0.8, 1.2) * rng.uniform(0.93, 1.07, 3)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.85, 1.2) + mean
    img = img * gain * (0.94 + 0.12 * n1[..., None])
    img += rng.normal(0, rng.uniform(2, 6), img.shape)
    img = np.clip(img, 1, 255)

    # ---- write and georeference
    transform, c = scene_transform(crs, center, (w, h), gsd_m, rotation_deg=rotation_deg)
    valid = nodata_frame(h, w, nodata_border)
    write_geotiff(path, img, transform, c, dtype=dtype, valid=valid, band_names=("red", "green", "blue"))
    geoms = []
    for p in polys:
        xy = np.asarray(p.exterior.coords)
        lon, lat = pixels_to_lonlat(transform, c, xy[:, 0], xy[:, 1])
        geoms.append(shapely.Polygon(np.column_stack([lon, lat])))
    truth = gpd.GeoDataFrame(
        {"class_name": ["building"] * len(polys), "height_m": np.round(heights, 2), "roof": roofs, "shape": shapes_},
        geometry=geoms, crs="EPSG:4326",
    )
    return SimScene(str(path), truth, c.to_string(), transform, w, h, gsd_m)


def _long_axis_angle(rect) -> float:
    xy = np.asarray(rect.exterior.coords)[:3]
    e1, e2 = xy[1] - xy[0], xy[2] - xy[1]
    e = e1 if np.hypot(*e1) >= np.hypot(*e2) else e2
    return math.atan2(e[1], e[0])


def _disc(layer: np.ndarray, cx: float, cy: float, r: float) -> None:
    """Max-blend a soft-edged disc (1 inside, ~1 px falloff) into ``layer``."""
    h, w = layer.shape
    c0, c1 = max(0, int(cx - r) - 2), min(w, int(cx + r) + 3)
    r0, r1 = max(0, int(cy - r) - 2), min(h, int(cy + r) + 3)
    if c0 >= c1 or r0 >= r1:
        return
    yy, xx = np.ogrid[r0:r1, c0:c1]
    d = np.hypot(xx + 0.5 - cx, yy + 0.5 - cy)
    np.maximum(layer[r0:r1, c0:c1], np.clip(r - d + 0.5, 0, 1), out=layer[r0:r1, c0:c1])


def footprint_mask(truth, transform, crs, shape) -> np.ndarray:
    """Rasterise footprints (GeoDataFrame, any CRS) on a grid: bool (H, W), pixel centres inside.

    ``shape`` is (height, width). Used for training targets and for tests.
    """
    from rasterio.features import rasterize

    if truth is None or len(truth) == 0:
        return np.zeros(shape, bool)
    g = truth.to_crs(crs).geometry
    return rasterize([(geom, 1) for geom in g if geom is not None and not geom.is_empty], out_shape=shape,
                     transform=transform, dtype="uint8").astype(bool)
