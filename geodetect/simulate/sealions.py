"""Steller sea-lion rookeries: animals of the five Kaggle classes on rock with surf.

Relative body sizes and pelage colours follow the species: bulls about 3 m,
cows about 2.2 m, pups about 1 m and nearly black.

Two levels of detail:

* ``texture=0``: flat rock, and every animal a smooth symmetric ellipse
  rendered analytically at pixel centres, so an animal's true centre is
  exactly its rendered centre (the placement tests use this).
* ``texture>0`` (default 1): what makes aerial rookery photographs hard, scaled
  by ``texture``: textured rock; boulders (a few tan ones), pale guano patches
  and dark tide pools of animal size that fool a blob detector; each animal a
  body with a head and fore-flippers, shaded towards the sun with a shadow on
  the far side; some animals wet (dark, with a shine along the back); scene
  illumination, colour cast and sensor noise varying from scene to scene. The
  true centre is the body's centre of mass (where the Kaggle annotators put
  their dots), within about a pixel of the brightest blob response.

The extra detail draws from its own random stream, so the animals' positions,
classes, sizes and colours for a given ``seed`` do not depend on ``texture``.
"""

from __future__ import annotations

import math

import numpy as np

from geodetect.simulate._grid import (
    SimScene,
    blend_ellipse,
    nodata_frame,
    pixels_to_lonlat,
    random_positions,
    scene_transform,
    write_geotiff,
)

__all__ = ["SEA_LION_CLASSES", "SEA_LION_SIZES_M", "SEA_LION_RGB", "make_rookery"]

SEA_LION_CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups")
# body length x width in metres (Steller sea lion: bulls ~3 m, cows ~2.3-2.5 m, pups ~1 m)
SEA_LION_SIZES_M = {
    "adult_males": (3.0, 1.3),
    "subadult_males": (2.5, 1.05),
    "adult_females": (2.2, 0.85),
    "juveniles": (1.6, 0.65),
    "pups": (1.0, 0.5),
}
# mean RGB of dry pelage seen from above: bulls and cows tan/buff, pups nearly black
SEA_LION_RGB = {
    "adult_males": (165, 125, 88),
    "subadult_males": (178, 138, 96),
    "adult_females": (196, 160, 118),
    "juveniles": (150, 118, 90),
    "pups": (48, 38, 32),
}
# share of each class in a rookery count (roughly the Kaggle training totals)
SEA_LION_SHARE = (0.08, 0.07, 0.45, 0.15, 0.25)


def _background(rng, w, h, texture: float = 1.0, surf: bool = True):
    """Dark rock with smooth texture, and a band of surf along one edge."""
    from scipy import ndimage

    rock = rng.normal(0, 1, (h // 8 + 2, w // 8 + 2))
    rock = ndimage.zoom(ndimage.gaussian_filter(rock, 1.5), 8, order=1)[:h, :w]
    base = 78 + texture * (14 * rock / (rock.std() + 1e-9) + rng.normal(0, 3, (h, w)))
    img = np.repeat(base[..., None], 3, axis=2) * np.array([1.0, 0.98, 0.95])
    if surf:
        yy, xx = np.mgrid[0:h, 0:w]
        edge = (xx + 0.3 * yy) / max(w, 1)
        churn = ndimage.gaussian_filter(rng.random((h, w)), 10)
        churn = (churn - churn.mean()) / (churn.std() + 1e-9)
        foam = np.clip((edge - 0.85) * 12 + 0.08 * churn, 0, 1)
        img = img * (1 - foam[..., None]) + 225 * foam[..., None]
    return np.clip(img, 1, 255)


# ---------------------------------------------------------------- detail (texture > 0)


def _window(img, cx, cy, reach):
    h, w = img.shape[:2]
    r = int(math.ceil(reach + 3))
    c0, c1 = max(0, int(cx) - r), min(w, int(cx) + r + 1)
    r0, r1 = max(0, int(cy) - r), min(h, int(cy) + r + 1)
    if c0 >= c1 or r0 >= r1:
        return None
    yy, xx = np.mgrid[r0:r1, c0:c1]
    return (slice(r0, r1), slice(c0, c1)), xx + 0.5 - cx, yy + 0.5 - cy


def _ellipse_q(dx, dy, length_px, width_px, angle):
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / max(length_px / 2, 1e-6)
    v = (-dx * sa + dy * ca) / max(width_px / 2, 1e-6)
    return u, v, u * u + v * v


def _paint(img, cx, cy, length_px, width_px, angle, rgb, *, power=2.0, shade=0.15, sun=None, relief=0.0,
           grain=None, grain_amp=0.0):
    """Blend an ellipse of colour ``rgb``: ``power`` sets edge sharpness (2 smooth, 4+ hard-edged rock),
    ``shade`` darkens the rim, ``relief`` brightens the side facing the sun (unit vector ``sun``)."""
    win = _window(img, cx, cy, max(length_px, width_px) / 2)
    if win is None:
        return
    sl, dx, dy = win
    _, _, q = _ellipse_q(dx, dy, length_px, width_px, angle)
    wgt = np.exp(-(q ** power))
    gain = 1.0 - shade * np.clip(q, 0, 1)
    if sun is not None and relief:  # the side facing the sun is brighter
        nrm = np.sqrt(dx * dx + dy * dy) + 1e-6
        gain = gain * (1.0 + relief * np.clip(q, 0, 1) * (dx * sun[0] + dy * sun[1]) / nrm)
    col = np.asarray(rgb, float)[None, None, :] * gain[..., None]
    if grain is not None and grain_amp:
        g = grain[sl]
        col = col * (1.0 + grain_amp * g[..., None])
    img[sl] = img[sl] * (1 - wgt[..., None]) + col * wgt[..., None]


def _darken(img, cx, cy, length_px, width_px, angle, amount, power=2.0):
    """Multiply a soft ellipse of the image by ``1 - amount`` (shadows)."""
    win = _window(img, cx, cy, max(length_px, width_px) / 2)
    if win is None:
        return
    sl, dx, dy = win
    _, _, q = _ellipse_q(dx, dy, length_px, width_px, angle)
    img[sl] *= (1.0 - amount * np.exp(-(q ** power)))[..., None]


def _clutter(xr, img, gsd_m, texture, sun, grain, avoid, avoid_r):
    """Boulders, guano and tide pools, sized like animals, away from the animals' bodies."""
    h, w = img.shape[:2]
    area_100m2 = w * h * gsd_m * gsd_m / 100.0

    def spot():
        for _ in range(20):
            p = xr.uniform([0, 0], [w, h])
            if len(avoid) == 0 or np.min(np.hypot(*(avoid - p).T) - avoid_r) > 0.3 / gsd_m:
                return p
        return None

    # guano: pale, irregular (a few overlapping blobs), larger than animals
    for _ in range(xr.poisson(texture * area_100m2 * xr.uniform(0.0, 0.25))):
        p = spot()
        if p is None:
            continue
        tone = xr.uniform(170, 225)
        for _k in range(xr.integers(2, 5)):
            q = p + xr.normal(0, 0.6 / gsd_m, 2)
            size = xr.uniform(0.8, 2.5) / gsd_m
            _paint(img, q[0], q[1], size, size * xr.uniform(0.4, 1), xr.uniform(0, math.pi),
                   (tone, tone * 0.98, tone * 0.9), power=1.5, shade=0.0, grain=grain, grain_amp=0.05)
    # tide pools: dark, bluish, smooth; the small ones are pup-sized
    for _ in range(xr.poisson(texture * area_100m2 * xr.uniform(0.0, 0.3))):
        p = spot()
        if p is None:
            continue
        size = xr.uniform(0.7, 3.0) / gsd_m
        tone = xr.uniform(28, 50)
        _paint(img, p[0], p[1], size, size * xr.uniform(0.4, 0.9), xr.uniform(0, math.pi),
               (tone * 0.8, tone * 0.9, tone * 1.1), power=2.5, shade=-0.2)
    # boulders: grey, hard-edged, grainy, lit from the sun side with a shadow; a few tan ones
    for _ in range(xr.poisson(texture * area_100m2 * xr.uniform(0.3, 2.0))):
        p = spot()
        if p is None:
            continue
        length = xr.uniform(0.4, 3.0) / gsd_m
        width = length * xr.uniform(0.45, 1.0)
        ang = xr.uniform(0, math.pi)
        if xr.random() < 0.06:
            rgb = np.array([160, 130, 100]) * xr.uniform(0.8, 1.15, 3)
        else:
            g = xr.uniform(45, 165)
            rgb = g * np.array([1.0, 0.98, 0.94]) * xr.uniform(0.95, 1.05, 3)
        _darken(img, p[0] - sun[0] * 0.15 * width, p[1] - sun[1] * 0.15 * width, length * 1.05, width * 1.1, ang,
                0.45, power=3.0)
        _paint(img, p[0], p[1], length, width, ang, rgb, power=xr.uniform(3.0, 6.0), shade=0.25, sun=sun,
               relief=0.35, grain=grain, grain_amp=0.12)


def _animal(xr, img, cx, cy, length_px, width_px, angle, rgb, cls, sun, wet, grain):
    """Body + head + fore-flippers with shading and a shadow; the body's centre of mass at (cx, cy)."""
    ax = np.array([math.cos(angle), math.sin(angle)])
    lat = np.array([-ax[1], ax[0]])
    c = np.array([cx, cy])
    body_c = c - ax * 0.05 * length_px  # the head pulls the centre of mass forward
    # shadow: same outline, offset away from the sun
    off = -np.asarray(sun) * 0.3 * width_px
    _darken(img, body_c[0] + off[0], body_c[1] + off[1], length_px * 1.02, width_px * 1.1, angle,
            xr.uniform(0.3, 0.5))
    rgb = np.asarray(rgb, float) * xr.uniform(0.96, 1.04, 3)
    if wet:
        rgb = rgb * xr.uniform(0.6, 0.8) * np.array([0.95, 0.95, 1.0])
    flipper = rgb * 0.8
    for side in (-1, 1):
        f = body_c + ax * 0.12 * length_px + lat * side * 0.45 * width_px
        _paint(img, f[0], f[1], 0.28 * length_px, 0.22 * width_px, angle + side * 0.9, flipper, shade=0.1)
    _paint(img, body_c[0], body_c[1], length_px * 0.88, width_px, angle, rgb, shade=0.2, sun=sun, relief=0.25,
           grain=grain, grain_amp=0.04)
    head = body_c + ax * 0.42 * length_px
    _paint(img, head[0], head[1], 0.24 * length_px, 0.62 * width_px, angle, rgb * 0.92, shade=0.2, sun=sun,
           relief=0.2)
    if wet and cls != "pups":  # wet fur shines along the back
        s = body_c + np.asarray(sun) * 0.12 * width_px
        _paint(img, s[0], s[1], 0.55 * length_px, 0.18 * width_px, angle, np.minimum(rgb * 2.0, 245),
               shade=0.0, power=1.5)


def _light(xr, img, texture):
    """Scene illumination: gain, colour cast, a soft cloud-shadow field, sensor noise."""
    from scipy import ndimage

    h, w = img.shape[:2]
    gain = 1.0 + texture * (xr.uniform(0.78, 1.2) - 1.0)
    cast = 1.0 + texture * (xr.uniform(0.94, 1.06, 3) - 1.0)
    field = ndimage.zoom(xr.normal(0, 1, (h // 128 + 3, w // 128 + 3)), 128, order=1)[:h, :w]
    field = 1.0 + texture * 0.08 * field / (field.std() + 1e-9)
    img = img * (gain * field)[..., None] * cast
    blur = texture * xr.uniform(0.0, 0.6)
    if blur > 0.2:
        img = ndimage.gaussian_filter(img, (blur, blur, 0))
    return img + texture * xr.normal(0, 2.0, img.shape)


def make_rookery(
    path,
    *,
    crs="EPSG:32606",
    center=(-150.0, 60.0),
    size=(1024, 1024),
    gsd_m: float = 0.1,
    n_objects: int = 50,
    positions=None,
    classes=None,
    seed: int = 0,
    dtype: str = "uint8",
    nodata_border: int = 0,
    rotation_deg: float = 0.0,
    south_up: bool = False,
    min_spacing_m: float = 3.5,
    texture: float = 1.0,
    surf: bool = True,
    blocksize: int = 256,
) -> SimScene:
    """Write a synthetic sea-lion rookery scene and return it with its ground truth.

    Parameters
    ----------
    path : output GeoTIFF.
    crs : any CRS pyproj knows; ``center`` is (lon, lat) of the scene centre.
    size : (width, height) in pixels; ``gsd_m`` metres per pixel.
    n_objects : number of animals placed at random (ignored when ``positions`` is given).
    positions : optional (K, 2) continuous pixel positions [col, row] of the animals.
    classes : optional class names for ``positions`` (default: random, rookery proportions).
    dtype : ``uint8``, ``uint16`` (values x 257) or ``float32`` (0..1).
    nodata_border : width in pixels of a nodata frame (nodata value 0).
    rotation_deg, south_up : grid orientation.
    texture : strength of the scene's detail (0 = flat rock and plain symmetric ellipses; 1 = rock
        texture, boulders, guano, tide pools, shaped and shadowed animals, some wet, varied light;
        see the module docstring); surf : draw surf along one edge.

    Returns
    -------
    SimScene whose ``truth`` has one point per animal (EPSG:4326) with
    ``class_name``, ``px_col``, ``px_row``, ``length_m`` and ``wet``.
    """
    import geopandas as gpd

    rng = np.random.default_rng(seed)
    w, h = size
    transform, c = scene_transform(crs, center, size, gsd_m, rotation_deg, south_up)
    img = _background(rng, w, h, texture, surf)
    margin = nodata_border + 3.5 / gsd_m / 2 + 2
    if positions is None:
        positions = random_positions(rng, n_objects, w, h, margin, min_spacing_m / gsd_m)
    positions = np.asarray(positions, float).reshape(-1, 2)
    if classes is None:
        classes = rng.choice(SEA_LION_CLASSES, size=len(positions), p=np.array(SEA_LION_SHARE))
    classes = np.asarray(classes, dtype=object)
    detail = texture > 0
    # the detail draws from its own stream: positions, classes, sizes and colours stay those of `seed`
    xr = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EA1])
    sun = grain = None
    wet = np.zeros(len(positions), bool)
    if detail:
        from scipy import ndimage

        az = xr.uniform(0, 2 * math.pi)
        sun = (math.cos(az), math.sin(az))
        grain = ndimage.gaussian_filter(xr.normal(0, 1, (h, w)), 0.8)
        grain /= grain.std() + 1e-9
        wet_share = xr.uniform(0.0, 0.35) * min(texture, 1.0)
        wet = (xr.random(len(positions)) < wet_share) & (classes != "pups")
        reach = np.array([SEA_LION_SIZES_M[k][0] for k in classes]) * 0.55 / gsd_m
        _clutter(xr, img, gsd_m, texture, sun, grain, positions, reach)
    lengths = []
    for k, ((cx, cy), cls) in enumerate(zip(positions, classes)):
        lm, wm = SEA_LION_SIZES_M[cls]
        scale = rng.uniform(0.9, 1.1)
        rgb = np.array(SEA_LION_RGB[cls]) * rng.uniform(0.92, 1.08)
        angle = rng.uniform(0, math.pi)
        if detail:
            angle += math.pi * (xr.random() < 0.5)  # heads point any way
            _animal(xr, img, cx, cy, lm * scale / gsd_m, wm * scale / gsd_m, angle, rgb, cls, sun, wet[k], grain)
        else:
            blend_ellipse(img, cx, cy, lm * scale / gsd_m, wm * scale / gsd_m, angle, rgb)
        lengths.append(lm * scale)
    if detail:
        img = _light(xr, img, texture)
    valid = nodata_frame(h, w, nodata_border)
    path = write_geotiff(path, img, transform, c, dtype=dtype, valid=valid, band_names=("red", "green", "blue"),
                         blocksize=blocksize)
    lon, lat = pixels_to_lonlat(transform, c, positions[:, 0], positions[:, 1])
    truth = gpd.GeoDataFrame(
        {
            "class_name": classes.astype(str),
            "px_col": positions[:, 0],
            "px_row": positions[:, 1],
            "length_m": np.asarray(lengths, float),
            "wet": wet,
        },
        geometry=gpd.points_from_xy(lon, lat),
        crs="EPSG:4326",
    )
    return SimScene(path, truth, c.to_string(), transform, w, h, gsd_m)
