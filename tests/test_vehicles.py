"""Vehicle scenes (simulator) and the vehicle-detector plugin: weights, contract, quality floor, training smoke."""

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely
from pyproj import Transformer

import geodetect as gd
from geodetect.simulate import make_scene
from geodetect.simulate.vehicles import axis_aligned_truth

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "vehicle_detector"
CLASSES = ("car", "truck", "bus")


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
def detector():
    pytest.importorskip("tensorflow")
    det = _plugin().VehicleDetector()
    det.ensure_loaded()
    return det


def test_weights_load_with_their_hash_and_tampering_is_refused(detector, tmp_path):
    from geodetect.testing import check_weights_guarded

    mod = _plugin()
    assert detector.input_channels() == 3
    check_weights_guarded(mod.VehicleDetector, mod.WEIGHTS, tmp_path, max_bytes=8e6)


def test_check_detector(detector):
    from geodetect.testing import check_detector

    report = check_detector(detector)
    assert report["task"] == "BOXES" and report["classes"] == CLASSES
    spec = detector.spec
    assert spec.gsd_m == 0.3 and spec.overlap > 12.5 / 0.3


def test_quality_floor_on_two_unseen_scenes(detector, tmp_path):
    """Seeds 901 and 902 (training uses 10000+): F1 at IoU 0.5 >= 0.8 for every class, through gd.detect."""
    import geopandas as gpd
    import pandas as pd

    from geodetect.metrics.boxes import box_metrics

    scenes = [make_scene(tmp_path / f"q{s}.tif", kind="vehicles", size=(768, 768), n_objects=110, seed=s,
                         class_mix=(0.6, 0.22, 0.18)) for s in (901, 902)]
    dets = gd.detect([s.path for s in scenes], detector, progress=False)
    truth = []
    for s in scenes:
        t = axis_aligned_truth(s)
        t["scene_id"] = Path(s.path).stem
        truth.append(t)
    truth = gpd.GeoDataFrame(pd.concat(truth, ignore_index=True), crs="EPSG:4326")
    m = box_metrics(dets, truth, CLASSES)
    assert (m.loc[list(CLASSES), "n_true"] >= 20).all()
    assert (m.loc[list(CLASSES), "f1"] >= 0.8).all(), m.round(3).to_string()
    assert set(dets.class_name) <= set(CLASSES) and dets.crs.to_epsg() == 4326


def test_train_smoke(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "smoke.keras"
    res = subprocess.run([sys.executable, str(PLUGIN_DIR / "train.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "step 1/1" in res.stdout and "sha256" in res.stdout and out.is_file()
