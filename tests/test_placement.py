"""Ground truth placement: objects on tile seams and corners, in three CRSs, found once and in place."""

import numpy as np
import pytest
from pyproj import Geod

import geodetect as gd
from geodetect.simulate import make_scene, seam_positions

GEOD = Geod(ellps="WGS84")
SPEC = gd.plugins.get_detector("sea-lion-counter").spec


def _seam_layout(size: int):
    """Animals on vertical seams, horizontal seams and their crossings (tile corners)."""
    seams = seam_positions(size, SPEC.tile_size, SPEC.overlap)
    # one position per overlap (its start, middle or end in turn) so animals do not touch
    groups = np.split(seams, np.nonzero(np.diff(seams) > SPEC.overlap)[0] + 1)
    on = np.array([g[k % len(g)] for k, g in enumerate(groups)], float)
    interior = (on[:-1] + on[1:]) / 2
    corners = [(x, y) for x in on for y in on]
    vertical = [(x, y) for x in on for y in interior[::2]]
    horizontal = [(x, y) for x in interior[1::2] for y in on]
    pos = np.array(corners + vertical + horizontal, float)
    return pos


def _match(dets, truth):
    d = np.array([[GEOD.inv(tx, ty, dx, dy)[2] for dx, dy in zip(dets.geometry.x, dets.geometry.y)]
                  for tx, ty in zip(truth.geometry.x, truth.geometry.y)])
    return d


CASES = [
    # id, CRS, centre, extra simulate args
    ("utm", "EPSG:32606", (-150.0, 60.0), {}),
    ("geographic", "EPSG:4326", (-122.4, 37.8), {"dtype": "uint16"}),
    ("antimeridian", "EPSG:32601", (180.0, 51.8), {"dtype": "float32"}),
    ("rotated", "EPSG:32633", (15.0, 45.0), {"rotation_deg": 30.0}),
    ("south-up", "EPSG:3857", (10.0, -20.0), {"south_up": True}),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_objects_on_seams_found_once_within_half_a_pixel(tmp_path, case):
    name, crs, centre, extra = case
    size = 1000
    pos = _seam_layout(size)
    rng = np.random.default_rng(0)
    classes = rng.choice(["adult_males", "adult_females", "juveniles", "pups"], len(pos))
    # sub-pixel jitter so positions are not all on pixel corners
    pos = pos + rng.uniform(-0.45, 0.45, pos.shape)
    sim = make_scene(tmp_path / f"{name}.tif", crs=crs, center=centre, size=(size, size), positions=pos,
                     classes=classes, texture=0.0, surf=False, **extra)
    dets = gd.detect(sim.path, "sea-lion-counter", progress=False)
    assert dets.crs.to_epsg() == 4326
    assert len(dets) == len(sim.truth), f"{len(dets)} detections for {len(sim.truth)} animals"
    d = _match(dets, sim.truth)
    nearest = d.argmin(axis=1)
    assert len(np.unique(nearest)) == len(sim.truth)  # each animal matched by its own detection
    err = d.min(axis=1)
    assert err.max() <= 0.5 * sim.gsd_m, f"worst placement error {err.max():.3f} m > half a pixel"
    if name == "antimeridian":
        assert (dets.geometry.x > 179).any() and (dets.geometry.x < -179).any()
        assert dets.geometry.x.between(-180, 180).all()


def test_resampled_scene_keeps_positions(tmp_path):
    """A scene at 0.05 m is read at the detector's 0.1 m: positions still within half a detector pixel."""
    pos = np.array([[200.3, 200.7], [640.0, 384.0], [1200.2, 900.9], [1536.0, 1536.0]])
    sim = make_scene(tmp_path / "fine.tif", crs="EPSG:32606", center=(-150, 60), size=(2000, 2000), gsd_m=0.05,
                     positions=pos, classes=["adult_males"] * 4, texture=0.0, surf=False)
    dets = gd.detect(sim.path, "sea-lion-counter", progress=False)
    st = dets.attrs["geodetect"][0]
    assert st["resampled_from"] == (2000, 2000) and st["grid"] == (1000, 1000)
    assert len(dets) == 4
    assert _match(dets, sim.truth).min(axis=1).max() <= 0.5 * SPEC.gsd_m


def test_textured_scene_counts(tmp_path):
    """On textured rock with surf every animal is found once, in place. Since 2.0.0 the counter is
    trained mostly on real photographs and calls some simulated boulders animals (20 of 60 here when
    it was retrained): this test is about placement, so it bounds them loosely. With 4.1.0's 8 views a tile
    55 of the 60 are found (one view: 57 or more)."""
    sim = make_scene(tmp_path / "rook.tif", size=(1024, 1024), n_objects=60, seed=3)
    dets = gd.detect(sim.path, "sea-lion-counter", progress=False)
    d = _match(dets, sim.truth)
    found = (d.min(axis=1) < 1.0).sum()
    false = (d.min(axis=0) >= 1.0).sum()
    assert found >= 0.9 * len(sim.truth), (found, false)
    assert false <= 0.4 * len(sim.truth), (found, false)
