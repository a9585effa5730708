"""The third-party example plugin examples/tree-crowns, installed as its own package.

Proves the extension point end to end on real data: entry-point discovery, the
contract checks, verified weights, the CLI on a real georeferenced NEON scene,
and a quality floor on boxes the model never saw.
CI installs the package (`pip install -e examples/tree-crowns`, see the Makefile).
"""

import dataclasses
import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import PluginError
from geodetect.plugins import list_detectors
from geodetect.plugins.weights import sha256_of
from geodetect.testing import check_detector

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tree-crowns"
SCENE = EXAMPLE / "data" / "OSBS_029.tif"
#: F1 at IoU 0.5 on the held-out strip measured by evaluate.py for the committed weights (MODEL_CARD.md)
MEASURED_F1 = 0.744

# the plugin package is a test dependency: fail loudly, never skip, when it is missing
import geodetect_tree_crowns  # noqa: E402
from geodetect_tree_crowns import TreeCrowns  # noqa: E402


def _load_example_module(name):
    spec = importlib.util.spec_from_file_location(f"tree_crowns_example_{name}", EXAMPLE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(*args):
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "geodetect.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """`geodetect detect OSBS_029.tif --detector tree-crowns --out x.parquet`, once for the module."""
    out = tmp_path_factory.mktemp("tree-crowns") / "x.parquet"
    res = _cli("detect", str(SCENE), "--detector", "tree-crowns", "--out", str(out), "--no-progress")
    return res, out


def test_discovered_through_its_entry_point():
    from geodetect.testing import heavy_imports_of

    row = next(r for r in list_detectors() if r.name == "tree-crowns")
    assert row.package == "geodetect-tree-crowns" and row.target == "geodetect_tree_crowns:TreeCrowns"
    out = _cli("detectors")
    assert out.returncode == 0, out.stderr
    line = next(l for l in out.stdout.splitlines() if l.startswith("tree-crowns"))
    assert "BROKEN" not in line and "BOXES" in line and "geodetect-tree-crowns 0.1.0" in line
    info = _cli("detectors", "info", "tree-crowns")
    assert info.returncode == 0, info.stderr
    assert f"weights sha256:  {TreeCrowns.spec.weights_sha256}" in info.stdout
    # listing imported the plugin module, and that must not import TensorFlow
    assert heavy_imports_of("geodetect_tree_crowns") == []


def test_contract_checks_pass():
    report = check_detector(TreeCrowns)
    assert report == {"name": "tree-crowns", "task": "BOXES", "classes": ("tree",), "bands": ("red", "green", "blue")}
    det = TreeCrowns()
    det.ensure_loaded()
    assert det.input_channels() == 3 == TreeCrowns.spec.n_bands
    # a loaded instance pickles without its TensorFlow objects and loads again where it lands
    clone = pickle.loads(pickle.dumps(det))
    clone.ensure_loaded()
    tiles = np.random.default_rng(0).random((2, 256, 256, 3), dtype=np.float32)
    for a, b in zip(det.predict(tiles), clone.predict(tiles)):
        np.testing.assert_allclose(a.xyxy, b.xyxy)


def test_weights_are_small_and_verified(tmp_path, monkeypatch):
    w = geodetect_tree_crowns.WEIGHTS
    assert w.is_file() and w.stat().st_size < 5e6
    assert sha256_of(w) == TreeCrowns.spec.weights_sha256
    # a declared hash that does not match is refused
    wrong = dataclasses.replace(TreeCrowns.spec, weights_sha256="0" * 64)
    monkeypatch.setattr(TreeCrowns, "spec", wrong)
    with pytest.raises(PluginError, match="expected 000000000000"):
        TreeCrowns().load()
    monkeypatch.undo()
    # so is a tampered weights file
    bad = tmp_path / "tree_crowns.keras"
    shutil.copy(w, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setattr(geodetect_tree_crowns, "WEIGHTS", bad)
    with pytest.raises(PluginError, match="corrupt or was replaced"):
        TreeCrowns().load()


def test_cli_detect_end_to_end_georeferenced(cli_run):
    import rasterio
    import shapely
    from rasterio.warp import transform_bounds

    res, out = cli_run
    assert res.returncode == 0, res.stderr
    dets = gd.read(out)
    assert dets.crs.to_epsg() == 4326
    assert len(dets) >= 20 and set(dets.class_name) == {"tree"} and (dets.detector == "tree-crowns").all()
    assert dets.score.between(TreeCrowns.score_threshold, 1).all()
    with rasterio.open(SCENE) as ds:
        w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    footprint = shapely.box(w, s, e, n).buffer(1e-7)  # ~1 cm
    assert shapely.within(dets.geometry.values, footprint).all()
    # crowns of 1.5..8 m across at 10 cm GSD
    assert dets.area_m2.between(1.0, 80.0).all(), dets.area_m2.describe()


def test_quality_on_the_held_out_strip(cli_run):
    res, out = cli_run
    assert res.returncode == 0, res.stderr
    evaluate = _load_example_module("evaluate")
    r = evaluate.evaluate(gd.read(out))
    assert r["n_truth"] == 18
    assert r["f1"] >= MEASURED_F1 - 0.1, r
