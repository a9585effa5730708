"""Vehicles seen from above at about 0.3 m: roads, parking lots, cars, trucks and buses.

Sizes follow real vehicles (cars about 4.5 x 1.8 m, trucks 8-12 x 2.5 m,
buses about 12 x 2.55 m) and the three xView classes the seed talk uses
(18 car, 23 truck, 19 bus). Scenes have asphalt roads with lane markings,
parking lots with stall lines (cars in rows, trucks and buses in a depot),
grass, soil, buildings and trees; every object casts a shadow away from one
sun direction, and each scene gets its own brightness, contrast and colour
cast. Vehicles on roads point along their lane, vehicles in lots along their
stall, a few stand anywhere at any angle.

Shapes are drawn analytically (signed distance of a rounded rectangle at
pixel centres, one pixel of anti-aliasing), so a vehicle's true footprint is
exactly where it is drawn. The truth is the oriented footprint (a polygon in
EPSG:4326) plus its axis-aligned box in pixels, the xView convention.
"""

from __future__ import annotations

import math

import numpy as np

from geodetect.simulate._grid import SimScene, nodata_frame, pixels_to_lonlat, scene_transform, write_geotiff

__all__ = ["VEHICLE_CLASSES", "VEHICLE_SIZES_M", "XVIEW_TYPE_IDS", "make_vehicles", "axis_aligned_truth"]

VEHICLE_CLASSES = ("car", "truck", "bus")
#: xView ``type_id`` of each class (the seed talk's ``vehicle_classes``)
XVIEW_TYPE_IDS = {"car": 18, "truck": 23, "bus": 19}
#: (length range, width range) in metres
VEHICLE_SIZES_M = {
    "car": ((4.1, 4.9), (1.7, 1.9)),
    "truck": ((8.0, 12.0), (2.4, 2.55)),
    "bus": ((10.5, 12.5), (2.5, 2.6)),
}
_HEIGHT_M = {"car": (1.4, 1.7), "truck": (3.0, 3.8), "bus": (3.0, 3.3)}

# paint colours seen from above (RGB on 0..255) and their shares
_CAR_COLOURS = np.array([
    (226, 226, 222), (28, 29, 32), (172, 174, 177), (112, 114, 118), (36, 50, 92), (152, 32, 30),
    (52, 84, 150), (42, 76, 52), (192, 178, 142), (102, 72, 52), (210, 170, 40), (238, 238, 236),
], float)
_CAR_SHARE = np.array([0.2, 0.17, 0.17, 0.12, 0.06, 0.07, 0.06, 0.03, 0.04, 0.03, 0.01, 0.04])
_CARGO_COLOURS = np.array([(232, 232, 230), (200, 202, 205), (170, 172, 176), (60, 90, 150), (150, 40, 36),
                           (60, 110, 70), (220, 200, 60)], float)
_CARGO_SHARE = np.array([0.42, 0.2, 0.14, 0.08, 0.07, 0.05, 0.04])
_BUS_COLOURS = np.array([(236, 236, 232), (232, 176, 28), (48, 86, 160), (170, 36, 36), (60, 120, 80),
                         (190, 192, 196), (250, 250, 250)], float)
_BUS_SHARE = np.array([0.32, 0.2, 0.14, 0.1, 0.07, 0.1, 0.07])
_GLASS = np.array((34, 40, 48), float)


# --------------------------------------------------------------------------- drawing primitives

class _Canvas:
    """An RGB float image (H, W, 3) on a 0..255 scale with analytic shape painting."""

    def __init__(self, img: np.ndarray):
        self.img = img
        self.h, self.w = img.shape[:2]

    def _frame(self, cx, cy, angle, reach):
        """Local window around (cx, cy) and pixel-centre coordinates in a frame rotated by ``angle``."""
        r = int(math.ceil(reach)) + 2
        c0, c1 = max(0, int(cx) - r), min(self.w, int(cx) + r + 1)
        r0, r1 = max(0, int(cy) - r), min(self.h, int(cy) + r + 1)
        if c0 >= c1 or r0 >= r1:
            return None
        yy, xx = np.mgrid[r0:r1, c0:c1]
        dx, dy = xx + 0.5 - cx, yy + 0.5 - cy
        ca, sa = math.cos(angle), math.sin(angle)
        return (slice(r0, r1), slice(c0, c1)), dx * ca + dy * sa, -dx * sa + dy * ca

    @staticmethod
    def _rbox_sdf(u, v, hl, hw, radius):
        radius = min(radius, hl, hw)
        qx, qy = np.abs(u) - (hl - radius), np.abs(v) - (hw - radius)
        out = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
        return out + np.minimum(np.maximum(qx, qy), 0) - radius

    def coverage_box(self, cx, cy, angle, hl, hw, radius=0.0, u0=0.0, v0=0.0, shift=None):
        """(window, coverage) of a rounded box of half-sizes (hl, hw) centred at (u0, v0) in the frame.

        ``shift`` (dx, dy, steps): the box swept along (dx, dy), for shadows.
        """
        sx, sy = (shift[0], shift[1]) if shift is not None else (0.0, 0.0)
        ca, sa = math.cos(angle), math.sin(angle)
        bx, by = cx + u0 * ca - v0 * sa, cy + u0 * sa + v0 * ca  # the box's own centre in pixels
        reach = math.hypot(hl, hw) + math.hypot(sx, sy) / 2
        fr = self._frame(bx, by, angle, reach)
        if fr is None:
            return None, None
        win, u, v = fr
        if shift is None:
            d = self._rbox_sdf(u, v, hl, hw, radius)
        else:
            d = None
            for t in np.linspace(-0.5, 0.5, int(shift[2])):
                # the swept shape: the box sampled at positions along the shift
                su, sv = t * (sx * ca + sy * sa), t * (-sx * sa + sy * ca)
                dd = self._rbox_sdf(u - su, v - sv, hl, hw, radius)
                d = dd if d is None else np.minimum(d, dd)
        return win, np.clip(0.5 - d, 0.0, 1.0)

    def paint(self, win, cov, colour, alpha=1.0):
        if win is None:
            return
        a = (cov * alpha)[..., None]
        self.img[win] = self.img[win] * (1 - a) + np.asarray(colour, float) * a

    def darken(self, win, cov, factor):
        if win is None:
            return
        self.img[win] *= (1 - cov * (1 - factor))[..., None]

    def box(self, cx, cy, angle, hl, hw, colour, radius=0.0, u0=0.0, v0=0.0, alpha=1.0):
        win, cov = self.coverage_box(cx, cy, angle, hl, hw, radius, u0, v0)
        self.paint(win, cov, colour, alpha)

    def disc(self, cx, cy, r, colour, texture=None, alpha=1.0):
        fr = self._frame(cx, cy, 0.0, r)
        if fr is None:
            return
        win, u, v = fr
        cov = np.clip(0.5 - (np.hypot(u, v) - r), 0, 1) * alpha
        col = np.broadcast_to(np.asarray(colour, float), cov.shape + (3,))
        if texture is not None:
            col = col * texture(cov.shape)[..., None]
        self.img[win] = self.img[win] * (1 - cov[..., None]) + col * cov[..., None]

    def shadow_disc(self, cx, cy, r, dx, dy, factor):
        """Shadow of a crown of radius r held above the ground: the disc swept from (cx, cy) by (dx, dy)."""
        fr = self._frame(cx + dx / 2, cy + dy / 2, 0.0, r + math.hypot(dx, dy) / 2)
        if fr is None:
            return
        win, u, v = fr
        # distance to the segment from -(dx, dy)/2 to +(dx, dy)/2, minus r
        seg2 = dx * dx + dy * dy
        t = np.clip(((u + dx / 2) * dx + (v + dy / 2) * dy) / seg2, 0, 1) if seg2 > 0 else 0.5
        d = np.hypot(u + dx / 2 - t * dx, v + dy / 2 - t * dy) - r
        cov = np.clip(0.5 - d, 0, 1)
        self.img[win] *= (1 - cov * (1 - factor))[..., None]


def _smooth_noise(rng, h, w, scale_px, octaves=2):
    """Zero-mean, unit-std smooth noise field (H, W)."""
    from scipy import ndimage

    out = np.zeros((h, w))
    for k in range(octaves):
        s = max(2, int(scale_px / (2**k)))
        g = rng.normal(0, 1, (h // s + 3, w // s + 3))
        z = ndimage.zoom(g, s, order=1)[:h, :w]
        out += z / (2**k)
    return (out - out.mean()) / (out.std() + 1e-9)


# --------------------------------------------------------------------------- the scene's layout

class _Layout:
    """Footprints already taken (shapely polygons in pixels), to keep objects apart."""

    def __init__(self):
        self.polys: list = []

    def free(self, poly, pad=0.0) -> bool:
        import shapely

        if not self.polys:
            return True
        p = poly.buffer(pad) if pad else poly
        return not bool(shapely.intersects(p, np.asarray(self.polys, dtype=object)).any())

    def add(self, poly) -> None:
        self.polys.append(poly)


def _rect_corners(cx, cy, angle, hl, hw):
    ca, sa = math.cos(angle), math.sin(angle)
    loc = np.array([(hl, hw), (hl, -hw), (-hl, -hw), (-hl, hw)])
    return np.column_stack([cx + loc[:, 0] * ca - loc[:, 1] * sa, cy + loc[:, 0] * sa + loc[:, 1] * ca])


def _rect_poly(cx, cy, angle, hl, hw):
    import shapely

    return shapely.Polygon(_rect_corners(cx, cy, angle, hl, hw))


def _draw_vehicle(cv: _Canvas, rng, cls, cx, cy, angle, L, W, px, sun, shadow_factor):
    """Shadow then body of one vehicle; L, W in pixels; ``px`` metres -> pixels; sun (dx, dy) per metre height."""
    hl, hw = L / 2, W / 2
    height = rng.uniform(*_HEIGHT_M[cls])
    sdx, sdy = sun[0] * height * px, sun[1] * height * px
    win, cov = cv.coverage_box(cx + sdx / 2, cy + sdy / 2, angle, hl, hw, 0.3 * px, shift=(sdx, sdy, 5))
    cv.darken(win, cov, shadow_factor)
    m = px  # pixels per metre
    if cls == "car":
        col = _CAR_COLOURS[rng.choice(len(_CAR_COLOURS), p=_CAR_SHARE)] * rng.uniform(0.92, 1.06)
        cv.box(cx, cy, angle, hl, hw, col, radius=0.45 * m)
        cv.box(cx, cy, angle, 0.55 * m, hw * 0.9, np.minimum(col * 1.08 + 6, 255), u0=hl - 0.6 * m)  # hood sheen
        roof_u = rng.uniform(-0.45, -0.1) * m
        roof_hl = rng.uniform(0.8, 1.1) * m
        if rng.random() < 0.12:  # estate / SUV: longer roof
            roof_hl *= 1.35
            roof_u -= 0.3 * m
        cv.box(cx, cy, angle, 0.33 * m, hw - 0.2 * m, _GLASS, radius=0.15 * m, u0=roof_u + roof_hl + 0.33 * m, alpha=0.9)
        cv.box(cx, cy, angle, 0.22 * m, hw - 0.25 * m, _GLASS, radius=0.1 * m, u0=roof_u - roof_hl - 0.22 * m, alpha=0.85)
        cv.box(cx, cy, angle, roof_hl, hw - 0.2 * m, col * 0.93, radius=0.2 * m, u0=roof_u)
        if rng.random() < 0.07:  # sunroof
            cv.box(cx, cy, angle, 0.35 * m, 0.4 * m, _GLASS, u0=roof_u + 0.2 * m, alpha=0.8)
    elif cls == "truck":
        cab_l = rng.uniform(2.0, 2.6) * m
        cab_col = _CAR_COLOURS[rng.choice(len(_CAR_COLOURS), p=_CAR_SHARE)] * rng.uniform(0.92, 1.06)
        gap = rng.uniform(0.25, 0.6) * m
        cargo_l = L - cab_l - gap
        cargo_u = -hl + cargo_l / 2
        cab_u = hl - cab_l / 2
        cab_hw = hw * rng.uniform(0.9, 0.97)
        cv.box(cx, cy, angle, (L - cab_l) / 2, hw * 0.55, (40, 40, 42), u0=-hl + (L - cab_l) / 2)  # chassis in the gap
        cv.box(cx, cy, angle, cab_l / 2, cab_hw, cab_col, radius=0.35 * m, u0=cab_u)
        cv.box(cx, cy, angle, 0.25 * m, cab_hw - 0.15 * m, _GLASS, u0=hl - 0.35 * m, alpha=0.85)
        cv.box(cx, cy, angle, cab_l * 0.28, cab_hw * 0.8, cab_col * 0.9, u0=cab_u - cab_l * 0.12)
        kind = rng.random()
        if kind < 0.75:  # box / semi-trailer
            cargo = _CARGO_COLOURS[rng.choice(len(_CARGO_COLOURS), p=_CARGO_SHARE)] * rng.uniform(0.92, 1.05)
            cv.box(cx, cy, angle, cargo_l / 2, hw, cargo, radius=0.12 * m, u0=cargo_u)
            n_ribs = int(cargo_l / (1.2 * m))
            for k in range(1, n_ribs):
                cv.box(cx, cy, angle, 0.06 * m, hw * 0.96, cargo * 0.86, u0=-hl + k * cargo_l / n_ribs, alpha=0.7)
            cv.box(cx, cy, angle, 0.12 * m, hw * 0.96, cargo * 0.8, u0=cargo_u + cargo_l / 2 - 0.12 * m)
        else:  # flatbed with a load
            bed = np.array((118, 100, 80)) * rng.uniform(0.8, 1.15)
            cv.box(cx, cy, angle, cargo_l / 2, hw, bed, u0=cargo_u)
            for _ in range(rng.integers(1, 4)):
                ll = rng.uniform(0.15, 0.3) * cargo_l
                uu = rng.uniform(-cargo_l / 2 + ll, cargo_l / 2 - ll) + cargo_u
                load = rng.uniform(60, 220, 3)
                cv.box(cx, cy, angle, ll, hw * rng.uniform(0.6, 0.9), load, u0=uu)
    else:  # bus
        col = _BUS_COLOURS[rng.choice(len(_BUS_COLOURS), p=_BUS_SHARE)] * rng.uniform(0.93, 1.04)
        col = np.minimum(col, 252)
        cv.box(cx, cy, angle, hl, hw, col, radius=0.35 * m)
        cv.box(cx, cy, angle, hl - 0.5 * m, hw * 0.82, np.minimum(col * 1.04 + 4, 255), radius=0.2 * m)  # roof panel
        cv.box(cx, cy, angle, 0.18 * m, hw - 0.12 * m, _GLASS, u0=hl - 0.22 * m, alpha=0.8)
        ac_u = rng.uniform(-0.2, 0.25) * L
        ac_hl = rng.uniform(1.1, 1.6) * m
        ac = np.array((196, 198, 200)) * rng.uniform(0.85, 1.05)
        cv.box(cx, cy, angle, ac_hl + 0.1 * m, 0.85 * m, ac * 0.7, radius=0.15 * m, u0=ac_u)
        cv.box(cx, cy, angle, ac_hl, 0.75 * m, ac, radius=0.15 * m, u0=ac_u)
        for _ in range(rng.integers(1, 3)):
            uu = rng.uniform(-hl + 1.0 * m, hl - 1.2 * m)
            if abs(uu - ac_u) > ac_hl + 0.6 * m:
                cv.box(cx, cy, angle, 0.35 * m, 0.35 * m, col * 0.72, u0=uu)
        if rng.random() < 0.25:  # articulated-looking dark band / destination stripe
            cv.box(cx, cy, angle, 0.12 * m, hw * 0.9, col * 0.6, u0=rng.uniform(-0.3, 0.3) * L)


def _sample_size(rng, cls):
    (l0, l1), (w0, w1) = VEHICLE_SIZES_M[cls]
    return rng.uniform(l0, l1), rng.uniform(w0, w1)


def make_vehicles(
    path,
    *,
    crs="EPSG:32618",
    center=(-77.03, 38.89),
    size=(1024, 1024),
    gsd_m: float = 0.3,
    n_objects: int = 150,
    class_mix=(0.7, 0.18, 0.12),
    seed: int = 0,
    dtype: str = "uint8",
    nodata_border: int = 0,
    rotation_deg: float = 0.0,
    south_up: bool = False,
    scattered: float = 0.06,
    trees: float = 1.0,
    blocksize: int = 256,
) -> SimScene:
    """Write a synthetic scene of cars, trucks and buses and return it with its ground truth.

    Parameters
    ----------
    path : output GeoTIFF (RGB).
    crs : any CRS pyproj knows; ``center`` is (lon, lat) of the scene centre.
    size : (width, height) in pixels; ``gsd_m`` metres per pixel (xView: 0.3).
    n_objects : vehicles wanted; fewer are placed when the scene has no room for them.
    class_mix : shares of car, truck, bus.
    seed : everything (layout, colours, light) follows from it.
    dtype : ``uint8``, ``uint16`` (values x 257) or ``float32`` (0..1).
    nodata_border : width in pixels of a nodata frame (nodata value 0).
    rotation_deg, south_up : grid orientation.
    scattered : share of vehicles standing anywhere at any angle (driveways, yards).
    trees : density of trees (0 = none).

    Returns
    -------
    SimScene whose ``truth`` has one row per vehicle (EPSG:4326): geometry is the
    oriented footprint polygon; columns ``class_name`` (car, truck, bus),
    ``px_xmin``, ``px_ymin``, ``px_xmax``, ``px_ymax`` (the axis-aligned box in
    continuous pixel coordinates), ``px_cx``, ``px_cy``, ``angle_deg`` (pixel
    frame, clockwise from the column axis), ``length_m``, ``width_m``.

    Examples
    --------
    >>> from geodetect.simulate import make_scene
    >>> sim = make_scene("/tmp/v.tif", kind="vehicles", size=(512, 512), n_objects=40, seed=3)  # doctest: +SKIP
    >>> sorted(sim.truth.class_name.unique())                                                   # doctest: +SKIP
    ['bus', 'car', 'truck']
    """
    import shapely

    rng = np.random.default_rng(seed)
    w, h = size
    transform, c = scene_transform(crs, center, size, gsd_m, rotation_deg, south_up)
    m = 1.0 / gsd_m  # pixels per metre
    valid = nodata_frame(h, w, nodata_border)
    lo, hi_x, hi_y = nodata_border + 1.0, w - nodata_border - 1.0, h - nodata_border - 1.0
    inner = shapely.box(lo, lo, hi_x, hi_y)

    # ---- light: sun direction (where shadows fall), shadow strength, scene exposure
    sun_az = rng.uniform(0, 2 * math.pi)
    sun_el = math.radians(rng.uniform(28, 72))
    sun = (math.cos(sun_az) / math.tan(sun_el), math.sin(sun_az) / math.tan(sun_el))  # px offset per metre height / m
    shadow_factor = rng.uniform(0.38, 0.6)

    # ---- ground: grass, dry grass and soil blended by smooth noise
    g1 = _smooth_noise(rng, h, w, 60 * m / 3.3)
    g2 = _smooth_noise(rng, h, w, 25 * m / 3.3)
    grass = np.array((78, 104, 58)) * rng.uniform(0.85, 1.15, 3)
    dry = np.array((150, 142, 100)) * rng.uniform(0.9, 1.1, 3)
    soil = np.array((142, 120, 94)) * rng.uniform(0.9, 1.1, 3)
    a = np.clip(0.5 + 0.45 * g1, 0, 1)[..., None]
    b = np.clip(0.5 * g2 - 0.4, 0, 1)[..., None]
    img = grass * (1 - a) + dry * a
    img = img * (1 - b) + soil * b
    img *= (1 + 0.06 * _smooth_noise(rng, h, w, 3 * m / 3.3, 1))[..., None]
    img += rng.normal(0, 4, (h, w, 1))
    cv = _Canvas(img)
    taken = _Layout()      # footprints of roads, lots, buildings (pixels)
    vehicles = _Layout()   # footprints of vehicles
    proposals: dict = {"car": [], "truck": [], "bus": []}  # (cx, cy, angle) slots per class

    # ---- roads: straight multi-lane asphalt bands across the scene
    diag = math.hypot(w, h)
    asphalt = np.array((92, 94, 98)) * rng.uniform(0.8, 1.2)
    n_roads = int(rng.choice([1, 2, 2, 3]))
    base_angle = rng.uniform(0, math.pi)
    for k in range(n_roads):
        ang = base_angle + (k % 2) * math.pi / 2 + rng.normal(0, 0.05)
        lanes = int(rng.choice([2, 2, 3, 4]))
        lane_w = rng.uniform(3.3, 3.7) * m
        shoulder = rng.uniform(0.4, 1.5) * m
        half = lanes * lane_w / 2 + shoulder
        off = rng.uniform(-0.3, 0.3) * min(w, h)
        nx, ny = -math.sin(ang), math.cos(ang)
        rcx, rcy = w / 2 + off * nx, h / 2 + off * ny
        win, cov = cv.coverage_box(rcx, rcy, ang, diag, half)
        tex = (1 + 0.05 * _smooth_noise(rng, h, w, 4 * m / 3.3, 1))[win]
        cv.img[win] = cv.img[win] * (1 - cov[..., None]) + (asphalt * tex[..., None]) * cov[..., None]
        white = np.array((222, 222, 214)) * rng.uniform(0.85, 1.0)
        for side in (-1, 1):  # edge lines
            cv.box(rcx, rcy, ang, diag, 0.08 * m, white, v0=side * (half - shoulder), alpha=0.9)
        for j in range(1, lanes):  # lane dividers: dashed (3 m line, 9 m gap), yellow double at the centre
            v0 = -lanes * lane_w / 2 + j * lane_w
            if lanes % 2 == 0 and j == lanes // 2:
                for s in (-0.15, 0.15):
                    cv.box(rcx, rcy, ang, diag, 0.06 * m, (214, 180, 64), v0=v0 + s * m, alpha=0.9)
            else:
                phase = rng.uniform(0, 12)
                for u0 in np.arange(-diag + phase * m, diag, 12 * m):
                    cv.box(rcx, rcy, ang, 1.5 * m, 0.07 * m, white, u0=u0, v0=v0, alpha=0.9)
        taken.add(_rect_poly(rcx, rcy, ang, diag, half + 1.0 * m))
        # lane slots: vehicles along their lane, spaced along it
        for j in range(lanes):
            v_lane = -lanes * lane_w / 2 + (j + 0.5) * lane_w
            direction = 0.0 if (j >= lanes / 2) else math.pi
            u = -diag + rng.uniform(0, 10) * m
            while u < diag:
                cls = rng.choice(VEHICLE_CLASSES, p=np.asarray(class_mix) / np.sum(class_mix))
                L, _ = _sample_size(rng, cls)
                u_c = u + L * m / 2
                px_ = rcx + u_c * math.cos(ang) - (v_lane + rng.normal(0, 0.15) * m) * math.sin(ang)
                py_ = rcy + u_c * math.sin(ang) + (v_lane + rng.normal(0, 0.15) * m) * math.cos(ang)
                if lo < px_ < hi_x and lo < py_ < hi_y:
                    proposals[str(cls)].append((px_, py_, ang + direction + rng.normal(0, 0.025), "road"))
                u += L * m + rng.uniform(1.5, 12) * m

    # ---- parking lots: stalls in double rows along aisles; cars, or a depot of trucks and buses
    n_lots = int(rng.integers(1, 4)) + (1 if w * h > 900_000 else 0)
    heavy_left = 1 if (class_mix[1] + class_mix[2]) > 0 else 0
    for _ in range(n_lots * 6):
        if n_lots <= 0:
            break
        heavy = heavy_left > 0 or rng.random() < 0.2
        if heavy:
            stall_w, stall_d, aisle = rng.uniform(3.8, 4.6) * m, rng.uniform(13.5, 15.0) * m, rng.uniform(9, 12) * m
        else:
            stall_w, stall_d, aisle = rng.uniform(2.5, 2.8) * m, rng.uniform(5.0, 5.6) * m, rng.uniform(6, 7.5) * m
        modules = int(rng.integers(1, 3))
        lot_d = modules * (2 * stall_d + aisle) + 2 * m
        lot_l = rng.uniform(0.18, 0.45) * min(w, h) + 4 * stall_w
        ang = base_angle + rng.choice([0.0, math.pi / 2]) + (rng.normal(0, 0.3) if rng.random() < 0.25 else 0.0)
        lcx, lcy = rng.uniform(lot_l / 3, w - lot_l / 3), rng.uniform(lot_d / 3, h - lot_d / 3)
        poly = _rect_poly(lcx, lcy, ang, lot_l / 2, lot_d / 2)
        if not taken.free(poly, 1 * m) or poly.intersection(inner).area < 0.6 * poly.area:
            continue
        taken.add(poly)
        n_lots -= 1
        heavy_left -= int(heavy)
        surface = (np.array((128, 128, 126)) if rng.random() < 0.6 else np.array((176, 174, 166))) * rng.uniform(0.85, 1.1)
        win, cov = cv.coverage_box(lcx, lcy, ang, lot_l / 2, lot_d / 2)
        tex = 1 + 0.04 * rng.normal(0, 1, cov.shape)
        cv.img[win] = cv.img[win] * (1 - cov[..., None]) + (surface * tex[..., None]) * cov[..., None]
        line = np.array((226, 224, 214)) if rng.random() < 0.8 else np.array((214, 184, 70))
        n_st = int((lot_l - 2 * m) // stall_w)
        u_start = -n_st * stall_w / 2
        for mod in range(modules):
            v_mod = -lot_d / 2 + 1 * m + mod * (2 * stall_d + aisle)
            for row, v_row in enumerate((v_mod + stall_d / 2, v_mod + stall_d * 1.5 + aisle)):
                for s in range(n_st + 1):  # stall lines
                    cv.box(lcx, lcy, ang, 0.07 * m, stall_d / 2 * 0.95, line, u0=u_start + s * stall_w, v0=v_row, alpha=0.9)
                for s in range(n_st):
                    uu = u_start + (s + 0.5) * stall_w + rng.normal(0, 0.12) * m
                    vv = v_row + rng.normal(0, 0.2) * m
                    sx = lcx + uu * math.cos(ang) - vv * math.sin(ang)
                    sy = lcy + uu * math.sin(ang) + vv * math.cos(ang)
                    facing = ang + math.pi / 2 + (0 if rng.random() < 0.5 else math.pi) + rng.normal(0, 0.04)
                    if heavy:
                        cls = "truck" if rng.random() < class_mix[1] / max(class_mix[1] + class_mix[2], 1e-9) else "bus"
                    else:
                        cls = "car"
                    proposals[cls].append((sx, sy, facing, "lot"))

    # ---- buildings (roofs with shadows) and small sheds: things that are not vehicles
    roofs = [np.array(v) for v in ((150, 150, 150), (110, 80, 70), (190, 188, 180), (80, 84, 90), (160, 120, 90))]
    for _ in range(int(rng.integers(1, 6)) * (w * h) // (1024 * 1024) + 1):
        small = rng.random() < 0.4
        bl = (rng.uniform(2.5, 6) if small else rng.uniform(10, 35)) * m
        bw = (rng.uniform(2.0, 4) if small else rng.uniform(8, 25)) * m
        ang = base_angle + rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.05)
        bx, by = rng.uniform(0, w), rng.uniform(0, h)
        poly = _rect_poly(bx, by, ang, bl / 2, bw / 2)
        if not taken.free(poly, 2 * m):
            continue
        taken.add(poly)
        height = (rng.uniform(2.2, 3) if small else rng.uniform(4, 12)) * m
        win, cov = cv.coverage_box(bx + sun[0] * height / 2, by + sun[1] * height / 2, ang, bl / 2, bw / 2,
                                   shift=(sun[0] * height, sun[1] * height, 9))
        cv.darken(win, cov, shadow_factor)
        roof = roofs[rng.integers(len(roofs))] * rng.uniform(0.85, 1.15)
        cv.box(bx, by, ang, bl / 2, bw / 2, roof)
        if rng.random() < 0.5:  # gabled roof: one half lit, one half in shade
            cv.box(bx, by, ang, bl / 2, bw / 4, roof * 0.8, v0=bw / 4)
        for _ in range(int(rng.integers(0, 4)) if not small else 0):  # rooftop units
            cv.box(bx, by, ang, rng.uniform(0.6, 1.5) * m, rng.uniform(0.6, 1.2) * m, roof * 1.15,
                   u0=rng.uniform(-bl / 3, bl / 3), v0=rng.uniform(-bw / 3, bw / 3))

    # ---- scattered vehicles: anywhere free, any angle
    for cls in VEHICLE_CLASSES:
        for _ in range(int(3 * scattered * n_objects) + 2):
            proposals[cls].append((rng.uniform(lo, hi_x), rng.uniform(lo, hi_y), rng.uniform(0, 2 * math.pi), "free"))

    # ---- choose the vehicles: per-class counts from the mix, lots and roads first, a few scattered
    mix = np.asarray(class_mix, float) / max(float(np.sum(class_mix)), 1e-9)
    want = np.floor(mix * n_objects).astype(int)
    want[0] += n_objects - want.sum()
    placed = []
    for ci in rng.permutation(3):
        cls = VEHICLE_CLASSES[ci]
        props = proposals[cls]
        kinds = np.array([p[3] for p in props])
        n_free = min(int(want[ci]), int(math.floor(scattered * want[ci] + rng.random())))
        free_idx = rng.permutation(np.nonzero(kinds == "free")[0]).astype(int)
        fixed_idx = rng.permutation(np.nonzero(kinds != "free")[0]).astype(int)
        # a few scattered ones first, then lots and lanes, then scattered again if those ran out
        got = 0
        for order, limit in ((free_idx[: 3 * n_free + 1], n_free), (fixed_idx, want[ci]), (free_idx, want[ci])):
            for i in order:
                if got >= limit:
                    break
                x, y, ang, kind = props[i]
                L, W = _sample_size(rng, cls)
                poly = _rect_poly(x, y, ang, L * m / 2, W * m / 2)
                if not inner.contains(poly):
                    continue
                if kind == "free" and not taken.free(poly, 0.5 * m):
                    continue
                if not vehicles.free(poly, 0.35 * m):
                    continue
                vehicles.add(poly)
                placed.append((cls, x, y, ang, L, W))
                got += 1

    # ---- draw the vehicles (shadows first so neighbours' shadows fall on the ground, not on roofs)
    for cls, x, y, ang, L, W in placed:
        _draw_vehicle(cv, rng, cls, x, y, ang, L * m, W * m, m, sun, shadow_factor)

    # ---- trees: round crowns with shadows, single, in clumps and in rows along roads; never over a vehicle
    n_trees = int(trees * rng.uniform(15, 70) * (w * h) / (1024 * 1024))
    seeds_xy = [(rng.uniform(0, w), rng.uniform(0, h)) for _ in range(max(1, n_trees // 6))]
    leaf0 = np.array((66, 94, 46)) * rng.uniform(0.8, 1.2, 3)
    for k in range(n_trees):
        r = rng.uniform(1.5, 4.5) * m
        if k % 3 == 0:  # a lone tree
            tx, ty = rng.uniform(0, w), rng.uniform(0, h)
        else:  # a clump around a seed point
            sx_, sy_ = seeds_xy[k % len(seeds_xy)]
            tx, ty = sx_ + rng.normal(0, 6 * m), sy_ + rng.normal(0, 6 * m)
        disc = shapely.Point(tx, ty).buffer(r)
        if not vehicles.free(disc, 0.5 * m) or not taken.free(disc, -0.3 * r):
            continue
        hgt = rng.uniform(4, 12)
        cv.shadow_disc(tx, ty, r, sun[0] * hgt * m, sun[1] * hgt * m, shadow_factor)
        leaf = leaf0 * rng.uniform(0.8, 1.2, 3)
        cv.disc(tx, ty, r, leaf, texture=lambda s: 1 + 0.18 * rng.normal(0, 1, s))
        cv.disc(tx - 0.25 * r, ty - 0.25 * r, 0.5 * r, np.minimum(leaf * 1.25, 255), alpha=0.5)  # lit side

    # ---- camera: optics blur, exposure, contrast, colour cast, noise
    from scipy import ndimage

    img = ndimage.gaussian_filter(cv.img, sigma=(rng.uniform(0.45, 0.75),) * 2 + (0,))
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.8, 1.2) + mean * rng.uniform(0.75, 1.2)
    img = img * rng.uniform(0.93, 1.07, 3) + rng.uniform(0, 18)  # colour cast, haze
    img += rng.normal(0, rng.uniform(1.0, 3.0), img.shape)
    img = np.clip(img, 1, 255)

    path = write_geotiff(path, img, transform, c, dtype=dtype, valid=valid, band_names=("red", "green", "blue"),
                         blocksize=blocksize)
    return SimScene(path, _truth(placed, transform, c, m), c.to_string(), transform, w, h, gsd_m)


def _truth(placed, transform, crs, m):
    import geopandas as gpd
    import shapely

    n = len(placed)
    corners = np.array([_rect_corners(x, y, a, L * m / 2, W * m / 2) for _, x, y, a, L, W in placed]).reshape(n, 4, 2)
    if n:
        lon, lat = pixels_to_lonlat(transform, crs, corners[..., 0].ravel(), corners[..., 1].ravel())
        ring = np.stack([lon.reshape(n, 4), lat.reshape(n, 4)], axis=-1)
        geoms = shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1))
    else:
        geoms = np.array([], dtype=object)
    return gpd.GeoDataFrame(
        {
            "class_name": np.array([p[0] for p in placed], dtype=object).astype(str),
            "px_xmin": corners[..., 0].min(axis=1) if n else np.zeros(0),
            "px_ymin": corners[..., 1].min(axis=1) if n else np.zeros(0),
            "px_xmax": corners[..., 0].max(axis=1) if n else np.zeros(0),
            "px_ymax": corners[..., 1].max(axis=1) if n else np.zeros(0),
            "px_cx": np.array([p[1] for p in placed], float),
            "px_cy": np.array([p[2] for p in placed], float),
            "angle_deg": np.degrees(np.array([p[3] for p in placed], float)) % 360.0,
            "length_m": np.array([p[4] for p in placed], float),
            "width_m": np.array([p[5] for p in placed], float),
        },
        geometry=geoms,
        crs="EPSG:4326",
    )


def axis_aligned_truth(scene: SimScene):
    """The truth as axis-aligned pixel boxes mapped to EPSG:4326 (what a box detector reports).

    A detector reports boxes aligned with the image grid; compare those with
    these, not with the oriented footprints.
    """
    import geopandas as gpd
    import shapely

    t = scene.truth
    n = len(t)
    cols = np.column_stack([t.px_xmin, t.px_xmax, t.px_xmax, t.px_xmin, t.px_xmin]).ravel()
    rows = np.column_stack([t.px_ymin, t.px_ymin, t.px_ymax, t.px_ymax, t.px_ymin]).ravel()
    lon, lat = pixels_to_lonlat(scene.transform, scene.crs, cols, rows)
    geoms = shapely.polygons(np.stack([lon.reshape(n, 5), lat.reshape(n, 5)], axis=-1)) if n else []
    out = gpd.GeoDataFrame(t.drop(columns="geometry"), geometry=list(geoms) if n else [], crs="EPSG:4326")
    return out
