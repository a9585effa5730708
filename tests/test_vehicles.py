"""Vehicle scenes (simulator) and the vehicle-detector plugin: weights, contract, real and simulated quality floors,
training smoke.

The floors are the numbers of plugins/vehicle_detector/eval_real.json (written by evaluate.py) less a small margin."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

import geodetect as gd
from conftest import real_dataset
from geodetect.simulate import make_scene
from geodetect.simulate.vehicles import axis_aligned_truth

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "vehicle_detector"
CLASSES = ("car", "truck", "bus")
EVAL = json.loads((PLUGIN_DIR / "eval_real.json").read_text())


def _plugin():
    """The installed plugin package."""
    name = "geodetect_plugins.vehicle_detector"
    return importlib.import_module(name)


# ---------------------------------------------------------------- simulator

@pytest.mark.parametrize("crs, centre, extra", [
    ("EPSG:32618", (-77.03, 38.89), {}),
    ("EPSG:4326", (13.4, 52.5), {"dtype": "uint16"}),
    ("EPSG:32633", (15.0, 45.0), {"rotation_deg": 25.0, "nodata_border": 20}),
], ids=["utm", "geographic", "rotated-nodata"])
def test_simulated_scene_is_georeferenced_with_truth_in_place(tmp_path, crs, centre, extra):
    import rasterio

    sim = make_scene(tmp_path / "v.tif", kind="vehicles", crs=crs, center=centre, size=(512, 384), n_objects=40,
                     seed=7, **extra)
    t = sim.truth
    assert 30 <= len(t) <= 40 and set(t.class_name) == set(CLASSES)
    assert t.crs.to_epsg() == 4326 and t.geometry.geom_type.eq("Polygon").all()
    with rasterio.open(sim.path) as ds:
        assert (ds.width, ds.height, ds.count) == (512, 384, 3)
        assert ds.dtypes[0] == extra.get("dtype", "uint8") and ds.nodata == 0
        assert ds.crs.to_string() == rasterio.crs.CRS.from_user_input(crs).to_string()
        to_px = ~ds.transform
        to_crs = Transformer.from_crs("EPSG:4326", ds.crs, always_xy=True)
        centroid = shapely.centroid(t.geometry.values)  # in lon/lat: exact enough over a few metres
        cx, cy = to_crs.transform(shapely.get_x(centroid), shapely.get_y(centroid))
        col, row = to_px * (np.asarray(cx), np.asarray(cy))
        valid = ds.read_masks(1) > 0
    # the footprint's centroid maps back into its pixel box, onto the drawn centre
    assert np.all((t.px_xmin < col) & (col < t.px_xmax) & (t.px_ymin < row) & (row < t.px_ymax))
    np.testing.assert_allclose(col, t.px_cx, atol=0.05)
    np.testing.assert_allclose(row, t.px_cy, atol=0.05)
    # footprints have the vehicles' sizes, in metres
    areas = t.to_crs(t.estimate_utm_crs()).area.to_numpy()
    np.testing.assert_allclose(areas, t.length_m * t.width_m, rtol=0.01)
    assert t[t.class_name == "car"].length_m.between(4.0, 5.0).all()
    assert t[t.class_name == "bus"].length_m.between(10.4, 12.6).all()
    # boxes lie on valid pixels
    assert valid[t.px_ymin.astype(int), t.px_xmin.astype(int)].all()
    assert valid[np.ceil(t.px_ymax).astype(int) - 1, np.ceil(t.px_xmax).astype(int) - 1].all()
    # axis-aligned truth: the pixel boxes, in lon/lat
    aa = axis_aligned_truth(sim)
    assert len(aa) == len(t) and (shapely.area(aa.geometry.values) >= shapely.area(t.geometry.values) * 0.999).all()


def test_simulation_is_deterministic(tmp_path):
    a = make_scene(tmp_path / "a.tif", kind="vehicles", size=(300, 300), n_objects=20, seed=3)
    b = make_scene(tmp_path / "b.tif", kind="vehicles", size=(300, 300), n_objects=20, seed=3)
    import pandas as pd

    pd.testing.assert_frame_equal(a.truth.drop(columns="geometry"), b.truth.drop(columns="geometry"))
    empty = make_scene(tmp_path / "e.tif", kind="vehicles", size=(300, 300), n_objects=0, seed=3)
    assert len(empty.truth) == 0 and len(axis_aligned_truth(empty)) == 0


# ---------------------------------------------------------------- the plugin

def test_module_import_is_light():
    from geodetect.testing import heavy_imports_of

    assert heavy_imports_of("geodetect_plugins.vehicle_detector") == []


@pytest.fixture(scope="module")
def detector(tf):
    det = _plugin().VehicleDetector()
    det.ensure_loaded()
    return det


def test_weights_load_with_their_hash_and_tampering_is_refused(detector, tmp_path):
    from geodetect.testing import check_weights_guarded

    mod = _plugin()
    assert detector.input_channels() == 3
    check_weights_guarded(mod.VehicleDetector, mod.WEIGHTS, tmp_path, max_bytes=8e6)
    assert EVAL["weights_sha256"] == mod.WEIGHTS_SHA256  # the committed numbers are this file's


def test_check_detector(detector):
    from geodetect.testing import check_detector

    report = check_detector(detector)
    assert report["task"] == "BOXES" and report["classes"] == CLASSES
    spec = detector.spec
    assert spec.gsd_m == 0.15 and spec.gsd_range == (0.09, 0.3) and spec.overlap > 12.5 / 0.15
    # the shipped threshold is the one chosen on the validation bands
    assert EVAL["real"]["validation"]["threshold_matches_validation"]
    assert detector.score_threshold == EVAL["real"]["validation"]["chosen_threshold"]


def test_scene_outside_gsd_range_is_refused(detector, tmp_path):
    from geodetect.errors import GeoreferenceError
    from geodetect.train.placement import write_placed

    path = write_placed(np.full((64, 64, 3), 90, np.uint8), tmp_path / "coarse.tif", 0.6)
    with pytest.raises(GeoreferenceError, match="0.09-0.3 m"):
        gd.detect(path, detector, progress=False)


def _kit_ais():
    """The split module and the evaluation script, from the installed plugin package."""
    return (importlib.import_module("geodetect_plugins.vehicle_detector.kit_ais"),
            importlib.import_module("geodetect_plugins.vehicle_detector.evaluate"))


def test_real_quality_on_the_quick_test_subset(detector, tmp_path):
    """Held-out KIT AIS bands (frames MOS89, MOS176; ground never trained on) through gd.detect at the measured GSD."""
    K, E = _kit_ais()
    parts, gsd = K.load_parts(real_dataset("vehicles-kit-ais"), roles=("test",), names=K.QUICK_TEST)
    assert sorted(p.name for p in parts) == sorted(K.QUICK_TEST)
    assert {s: g["gsd_m"] for s, g in gsd.items()} == {s: g["gsd_m"] for s, g in EVAL["real"]["gsd_measurement"].items()}
    paths, truth = E.place_parts(parts, tmp_path)
    dets = gd.detect(paths, detector, progress=False)
    assert dets.crs.to_epsg() == 4326 and set(dets.class_name) <= set(CLASSES)
    m = E._metrics(dets, truth, CLASSES)
    want = EVAL["real"]["test_quick_subset"]["metrics"]["car"]
    assert m.loc["car", "n_true"] == want["n_true"]
    got = m.loc["car"]
    assert got.f1 >= want["f1"] - 0.03 and got.precision >= want["precision"] - 0.04 and got.recall >= want["recall"] - 0.04, (
        m.round(3).to_string())


def test_simulated_quality_with_trucks(detector, tmp_path):
    """Trucks have no real example: the 0.15 m simulated evaluation scene (seed 5) of evaluate.py, floors from its JSON."""
    import geopandas as gpd

    from geodetect.metrics.boxes import box_metrics

    _, E = _kit_ais()
    (seed, gsd, n), = [s for s in E.SIM_SCENES if s[1] == 0.15]
    sim = make_scene(tmp_path / f"eval_{seed}.tif", kind="vehicles", size=(E.SIM_SIZE, E.SIM_SIZE), gsd_m=gsd,
                     n_objects=n, seed=seed, class_mix=(0.55, 0.25, 0.2))
    dets = gd.detect(sim.path, detector, progress=False)
    t = axis_aligned_truth(sim)
    t["scene_id"] = Path(sim.path).stem
    m = box_metrics(dets, gpd.GeoDataFrame(t, crs="EPSG:4326"), CLASSES)
    want = EVAL["simulated"]["0.15 m"]["metrics"]
    for c in CLASSES:
        assert m.loc[c, "n_true"] == want[c]["n_true"]
        assert m.loc[c, "f1"] >= want[c]["f1"] - 0.05, m.round(3).to_string()


def test_train_smoke(tf, tmp_path):
    data = real_dataset("vehicles-kit-ais")
    out = tmp_path / "smoke.keras"
    res = subprocess.run([sys.executable, str(PLUGIN_DIR / "train.py"), "--smoke", "--data", str(data), "--out", str(out)],
                         capture_output=True, text=True, timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "step 2/2" in res.stdout and "sha256" in res.stdout and out.is_file()
