"""The plugin extension point: discovery, isolation of broken plugins, validation, weights."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from detectors import BrightPoints
from geodetect.errors import DetectorNotFoundError, PluginError
from geodetect.plugins import Detector, DetectorSpec, Points, Task, get_detector, list_detectors
from geodetect.plugins.registry import register_detector, unregister_detector
from geodetect.plugins.weights import sha256_of, verify_weights
from geodetect.testing import assert_detections_equal, check_detector, make_scene

GOOD = '''
import numpy as np
from geodetect.plugins import Detector, DetectorSpec, Points, Task

class Dark(Detector):
    spec = DetectorSpec(name="{name}", version="2.0.0", task=Task.POINTS, classes=("dark",),
                        bands=(1, 2, 3), tile_size=128, overlap=32, gsd_m=0.1, merge_radius_px=6)

    def load(self):
        self.threshold = 0.22

    def predict(self, tiles):
        from scipy import ndimage
        out = []
        for t in tiles:
            lab, n = ndimage.label(t.mean(axis=2) < self.threshold)
            if n == 0:
                out.append(Points.empty()); continue
            rc = np.array(ndimage.center_of_mass(np.ones(lab.shape), lab, range(1, n + 1))).reshape(-1, 2)
            out.append(Points(rc[:, ::-1] + 0.5, np.zeros(n, int), np.full(n, 0.9)))
        return out
'''


def _dist(site: Path, dist: str, module: str, code: str, eps: dict) -> None:
    (site / module).mkdir(parents=True)
    (site / module / "__init__.py").write_text(textwrap.dedent(code))
    info = site / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[geodetect.detectors]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()))


def _cli(site: Path, *args):
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-m", "geodetect.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture
def site(tmp_path):
    s = tmp_path / "site"
    s.mkdir()
    return s


def test_external_plugin_discovered_listed_and_run(site, tmp_path):
    _dist(site, "dark-blobs", "dark_blobs", GOOD.format(name="dark-blobs"), {"dark-blobs": "dark_blobs:Dark"})
    out = _cli(site, "detectors")
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("dark-blobs"))
    assert "POINTS" in line and "dark-blobs 1.2.3" in line and "2.0.0" in line
    assert any(l.startswith("sea-lion-counter") and "BROKEN" not in l for l in out.stdout.splitlines())
    info = _cli(site, "detectors", "info", "dark-blobs")
    assert "package:         dark-blobs 1.2.3" in info.stdout
    sim = make_scene(tmp_path / "s.tif", size=(600, 500), n_objects=15, seed=4, surf=False, texture=0.0)
    res = _cli(site, "detect", sim.path, "--detector", "dark-blobs", "--out", str(tmp_path / "d.geojson"), "--no-progress")
    assert res.returncode == 0, res.stderr
    dets = gd.read(tmp_path / "d.geojson")
    pups = sim.truth[sim.truth.class_name == "pups"]  # the dark animals
    assert len(dets) == len(pups) > 0
    assert dets.crs.to_epsg() == 4326 and (dets.detector == "dark-blobs").all()
    from pyproj import Geod

    g = Geod(ellps="WGS84")
    err = [min(g.inv(x, y, tx, ty)[2] for tx, ty in zip(pups.geometry.x, pups.geometry.y))
           for x, y in zip(dets.geometry.x, dets.geometry.y)]
    assert max(err) < 0.3  # georeferenced: within 3 pixels of the true animal


def test_broken_plugins_reported_and_isolated(site, tmp_path):
    _dist(site, "needs-torch", "needs_torch", "import torch_that_is_not_here\n", {"torchy": "needs_torch:X"})
    _dist(site, "bad-spec", "bad_spec", GOOD.format(name="bad-spec").replace("overlap=32", "overlap=128"),
          {"bad-spec": "bad_spec:Dark"})
    _dist(site, "misnamed", "misnamed", GOOD.format(name="other-name"), {"misnamed": "misnamed:Dark"})
    _dist(site, "wrong-type", "wrong_type",
          GOOD.format(name="wrong-type").replace("out.append(Points.empty()); continue",
                                                 "out.append([]); continue"), {"wrong-type": "wrong_type:Dark"})
    out = _cli(site, "detectors")
    assert out.returncode == 0, out.stderr
    rows = {l.split()[0]: l for l in out.stdout.splitlines()[1:]}
    assert "BROKEN" in rows["torchy"] and "needs-torch" in rows["torchy"] and "torch_that_is_not_here" in rows["torchy"]
    assert "BROKEN" in rows["bad-spec"] and "tile_size > overlap" in rows["bad-spec"]
    assert "BROKEN" in rows["misnamed"] and "spec.name 'other-name'" in rows["misnamed"]
    assert "BROKEN" not in rows["sea-lion-counter"] and "BROKEN" not in rows["wrong-type"]
    # the broken ones fail clearly when used; the others keep working
    sim = make_scene(tmp_path / "s.tif", size=(300, 300), n_objects=0, seed=1, surf=False, texture=0.0)
    res = _cli(site, "detect", sim.path, "-d", "torchy", "--no-progress")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "needs-torch" in res.stderr
    res = _cli(site, "detect", sim.path, "-d", "wrong-type", "--no-progress", "-o", str(tmp_path / "w.parquet"))
    assert res.returncode == 2 and "'wrong-type'" in res.stderr and "expected Points" in res.stderr
    assert not (tmp_path / "w.parquet").exists()
    res = _cli(site, "detect", sim.path, "-d", "sea-lion-counter", "--no-progress", "-o", str(tmp_path / "ok.parquet"))
    assert res.returncode == 0, res.stderr


def test_two_packages_claiming_one_name(site, tmp_path):
    _dist(site, "pkg-one", "pkg_one", GOOD.format(name="twin"), {"twin": "pkg_one:Dark"})
    _dist(site, "pkg-two", "pkg_two", GOOD.format(name="twin"), {"twin": "pkg_two:Dark"})
    out = _cli(site, "detectors")
    twin = next(l for l in out.stdout.splitlines() if l.startswith("twin"))
    assert "BROKEN" in twin and "pkg-one" in twin and "pkg-two" in twin
    sim = make_scene(tmp_path / "s.tif", size=(300, 300), n_objects=0, seed=1, surf=False, texture=0.0)
    res = _cli(site, "detect", sim.path, "-d", "twin", "--no-progress")
    assert res.returncode == 2 and "pkg-one" in res.stderr and "pkg-two" in res.stderr


def test_listing_does_not_import_plugins(site, tmp_path):
    marker = tmp_path / "imported"
    _dist(site, "noisy", "noisy", f"open({str(marker)!r}, 'w').close()\n" + GOOD.format(name="noisy"),
          {"noisy": "noisy:Dark"})
    code = "import json, geodetect as gd; print(json.dumps([r.name for r in gd.list_detectors()]))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert "noisy" in json.loads(res.stdout) and not marker.exists()
    _cli(site, "detectors")  # asking for details does import
    assert marker.exists()


@pytest.mark.parametrize("name", [r.name for r in list_detectors()])
def test_check_detector_on_every_registered_detector(name):
    report = check_detector(get_detector(name))
    assert report["name"] == name


def test_check_detector_catches_broken_results():
    class WrongType(BrightPoints):
        spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "wrong-result"})

        def predict(self, tiles):
            from geodetect.plugins import Labels
            return [Labels(np.array([1.0])) for _ in tiles]

    class WrongCount(BrightPoints):
        def predict(self, tiles):
            return [Points.empty()]

    class BadClass(BrightPoints):
        def predict(self, tiles):
            return [Points([[1, 1]], [3], [0.5]) for _ in tiles]

    with pytest.raises(PluginError, match="'wrong-result' .*returned Labels.*expected Points"):
        check_detector(WrongType)
    with pytest.raises(PluginError, match="list of 3 Points"):
        check_detector(WrongCount)
    with pytest.raises(PluginError, match="class_ids must be in 0..0"):
        check_detector(BadClass)


def test_spec_validation_messages():
    base = dict(name="ok-name", version="1", task=Task.POINTS, classes=("a",), bands=(1,))
    for bad, msg in [
        ({"classes": ()}, "non-empty"),
        ({"classes": ("a", "a")}, "unique"),
        ({"tile_size": 64, "overlap": 64}, "tile_size > overlap"),
        ({"overlap": -1}, "tile_size > overlap"),
        ({"name": "Bad Name"}, "lower-case"),
        ({"bands": (0,)}, "1-based"),
        ({"task": "detect"}, "task must be one of"),
        ({"scaling": "auto"}, "scaling must be one of"),
    ]:
        with pytest.raises(PluginError, match=msg):
            DetectorSpec(**{**base, **bad})


def test_input_channels_must_match_bands():
    class ThreeChannelModel(BrightPoints):
        def input_channels(self):
            return 3

    with pytest.raises(PluginError, match="takes 3 input channel"):
        check_detector(ThreeChannelModel)


def test_register_detector_and_duplicates():
    class Mine(BrightPoints):
        spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "mine"})

    class Other(BrightPoints):
        spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "mine"})

    try:
        gd.register_detector(Mine)
        assert get_detector("mine") is Mine
        assert any(r.name == "mine" and r.package == "(registered)" for r in list_detectors())
        with pytest.raises(PluginError, match="already taken"):
            register_detector(Other)
        register_detector(Other, replace=True)
        assert get_detector("mine") is Other
        with pytest.raises(PluginError, match="already taken by the entry point"):
            register_detector(type("S", (BrightPoints,), {"spec": DetectorSpec(**{**BrightPoints.spec.__dict__,
                                                                                   "name": "sea-lion-counter"})}))
    finally:
        unregister_detector("mine")
    with pytest.raises(DetectorNotFoundError, match="unknown detector 'mine'"):
        get_detector("mine")


def test_weights_are_verified(tmp_path):
    w = tmp_path / "model.keras"
    w.write_bytes(b"not really a model")
    good = sha256_of(w)
    assert verify_weights(w, good, detector="x") == w
    with pytest.raises(PluginError, match="expected"):
        verify_weights(w, "0" * 64, detector="x")
    with pytest.raises(PluginError, match="missing"):
        verify_weights(tmp_path / "gone.keras", good, detector="x")
    with pytest.raises(PluginError, match="unverified"):
        verify_weights(w, None, detector="x")


def test_assert_detections_equal(tmp_path):
    sim = make_scene(tmp_path / "s.tif", size=(512, 512), n_objects=10, seed=2)
    a = gd.detect(sim.path, "sea-lion-counter", progress=False)
    b = gd.detect(sim.path, "sea-lion-counter", progress=False, batch_size=3)
    assert_detections_equal(a, b.iloc[::-1])  # row order does not matter
    with pytest.raises(AssertionError):
        assert_detections_equal(a, b.iloc[1:])
    moved = b.copy()
    moved["geometry"] = moved.geometry.translate(1e-5, 0)
    with pytest.raises(AssertionError, match="geometries differ"):
        assert_detections_equal(a, moved)
