"""Urban scenes (simulator), the Inria loader and the building-segmenter plugin: weights, contract, the Dubai split,
the quality floor on real held-out Dubai images, GSD refusal, blank scenes, training smoke."""

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import GeodetectError
from geodetect.simulate import make_scene
from geodetect.simulate.urban import footprint_mask

PLUGIN_DIR = Path(__file__).resolve().parents[1] / "plugins" / "building_segmenter"


def _plugin():
    """The installed plugin package."""
    name = "geodetect_plugins.building_segmenter"
    return importlib.import_module(name)


# ---------------------------------------------------------------- simulator

def _edge_contrast(img, labels, n):
    """Mean over buildings of |colour just inside - colour just outside| of each labelled footprint."""
    from scipy import ndimage

    ids = np.arange(1, n + 1)
    inside = np.where(ndimage.binary_erosion(labels > 0, iterations=2), labels, 0)
    grown = ndimage.grey_dilation(labels, size=5)
    ring = np.where((labels == 0) & (ndimage.grey_dilation(labels, size=3) == 0) & (grown > 0), grown, 0)
    diff = [np.asarray(ndimage.mean(img[..., c], inside, ids)) - np.asarray(ndimage.mean(img[..., c], ring, ids))
            for c in range(3)]
    return float(np.nanmean(np.linalg.norm(np.stack(diff), axis=0)))


@pytest.mark.parametrize("crs, centre, extra", [
    ("EPSG:32618", (-77.03, 38.89), {}),
    ("EPSG:4326", (4.35, 50.85), {}),
    ("EPSG:32633", (16.37, 48.21), {"rotation_deg": 20.0}),
], ids=["utm", "geographic", "rotated"])
def test_truth_footprints_sit_on_their_roofs(tmp_path, crs, centre, extra):
    """Truth polygons, rasterised on the written file's grid, line up with the drawn roofs' edges to the pixel."""
    import rasterio
    from rasterio.features import rasterize

    sim = make_scene(tmp_path / "u.tif", kind="urban", crs=crs, center=centre, size=(512, 384), seed=11,
                     n_buildings=25, n_trees=0, **extra)
    t = sim.truth
    assert 15 <= len(t) <= 25 and set(t.class_name) == {"building"} and t.crs.to_epsg() == 4326
    assert t.geometry.is_valid.all() and set(t["shape"]) <= {"rectangle", "L-shape"}
    areas = t.to_crs(t.estimate_utm_crs()).area
    assert areas.between(30, 2400).all()  # 6 x 5 m sheds to 40 x 20 m blocks with a wing
    with rasterio.open(sim.path) as ds:
        assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (512, 384, 3, "uint8")
        assert ds.descriptions == ("red", "green", "blue")
        img = np.moveaxis(ds.read(), 0, -1).astype(float)
        geoms = t.to_crs(ds.crs).geometry
        labels = rasterize([(g, i + 1) for i, g in enumerate(geoms)], out_shape=img.shape[:2],
                           transform=ds.transform, dtype="int32")
    assert labels.max() == len(t) and (labels > 0).mean() > 0.03
    # contrast across the footprint outline is highest where the truth is, not a pixel or two beside it
    contrast = {(dx, dy): _edge_contrast(img, np.roll(labels, (dy, dx), axis=(0, 1)), len(t))
                for dx in (-2, -1, 0, 1, 2) for dy in (-2, -1, 0, 1, 2)}
    best = max(contrast, key=contrast.get)
    assert best == (0, 0), {k: round(v, 1) for k, v in contrast.items()}
    assert contrast[(0, 0)] > 1.05 * max(contrast[(2, 0)], contrast[(0, 2)], contrast[(-2, 0)], contrast[(0, -2)])
    # footprint_mask (used for training targets) is the same rasterisation
    assert (footprint_mask(t, sim.transform, sim.crs, (sim.height, sim.width)) == (labels > 0)).all()


def test_simulation_is_deterministic_and_blank_scenes_are_empty(tmp_path):
    import pandas as pd

    a = make_scene(tmp_path / "a.tif", kind="urban", size=(256, 256), seed=3)
    b = make_scene(tmp_path / "b.tif", kind="urban", size=(256, 256), seed=3)
    pd.testing.assert_frame_equal(a.truth.drop(columns="geometry"), b.truth.drop(columns="geometry"))
    assert a.truth.geometry.geom_equals_exact(b.truth.geometry, 0).all()
    assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
    blank = make_scene(tmp_path / "e.tif", kind="urban", size=(256, 256), seed=3, blank=True)
    assert len(blank.truth) == 0


# ---------------------------------------------------------------- Inria loader

def _write(path, arr, **kw):
    import rasterio
    from affine import Affine

    kw.setdefault("crs", "EPSG:32614")  # Inria files are georeferenced 0.3 m orthophotos
    kw.setdefault("transform", Affine(0.3, 0, 620000, 0, -0.3, 3350000))
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, **kw) as ds:
        ds.write(arr)


@pytest.fixture
def inria(tmp_path):
    """Two 300 x 200 image/mask pairs in the Inria layout; returns (root, {name: (image HWC, mask HW 0/255)})."""
    rng = np.random.default_rng(0)
    data = {}
    for name in ("vienna2", "austin1"):
        img = rng.integers(1, 256, (3, 200, 300), dtype=np.uint8)
        mask = np.zeros((200, 300), np.uint8)
        mask[20:60, 30:100] = 255
        mask[150:190, 250:300] = 255
        _write(tmp_path / "images" / f"{name}.tif", img)
        _write(tmp_path / "gt" / f"{name}.tif", mask)
        data[name] = (np.moveaxis(img, 0, -1), mask)
    return tmp_path, data


def test_inria_pairs_by_name_and_cuts_thesis_windows(inria):
    from geodetect.train.inria import cut_tiles, load_tiles, pair_inria

    root, data = inria
    _write(root / "gt" / "chicago9.tif", np.zeros((10, 10), np.uint8))  # a mask without image: ignored
    pairs = pair_inria(root)
    assert [p.name for p in pairs] == ["austin1", "vienna2"]
    assert all(p.image.parent.name == "images" and p.gt.parent.name == "gt" and p.image.stem == p.gt.stem
               for p in pairs)
    items = list(cut_tiles(pairs))
    # 300 px -> windows at 0, 128, 172 (the last shifted inside); 200 px -> 0, 72: 6 per image
    assert len(items) == 12
    offsets = sorted({o for _, _, n, o in items if n == "austin1"})
    assert offsets == [(0, 0), (0, 72), (128, 0), (128, 72), (172, 0), (172, 72)]
    for img, m, name, (x0, y0) in items:
        src_img, src_mask = data[name]
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8 and m.dtype == np.uint8
        np.testing.assert_array_equal(img, src_img[y0:y0 + 128, x0:x0 + 128])
        np.testing.assert_array_equal(m, src_mask[y0:y0 + 128, x0:x0 + 128] // 255)
    X, Y = load_tiles(root, skip_empty=True)
    assert X.shape[1:] == (128, 128, 3) and Y.shape[1:] == (128, 128) and set(np.unique(Y)) == {0, 1}
    assert len(X) == sum(m.any() for _, m, _, _ in items) < 12
    # overlapping windows on the pipeline's grid
    assert len(list(cut_tiles(pairs, tile=128, overlap=32))) == 2 * 3 * 2


def test_inria_errors_name_the_file(inria, tmp_path_factory):
    from geodetect.train.inria import InriaDataError, InriaFileMissingError, cut_tiles, pair_inria

    root, _ = inria
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(InriaFileMissingError, match=r"images.*not found|images/<name>.tif"):
        pair_inria(empty)
    (empty / "images").mkdir()
    (empty / "gt").mkdir()
    with pytest.raises(InriaFileMissingError, match="holds no .tif images"):
        pair_inria(empty)
    with pytest.raises(InriaFileMissingError, match="not found"):
        pair_inria(empty / "nowhere")
    # an image without its mask
    _write(root / "images" / "kitsap4.tif", np.ones((3, 50, 50), np.uint8))
    with pytest.raises(InriaFileMissingError, match=r"gt/kitsap4.tif missing.*same name"):
        pair_inria(root)
    os.remove(root / "images" / "kitsap4.tif")
    # a mask of another size
    _write(root / "gt" / "vienna2.tif", np.zeros((100, 300), np.uint8))
    with pytest.raises(InriaDataError, match=r"vienna2.tif: mask is 300 x 100 px but its image .* is 300 x 200"):
        list(cut_tiles(root))
    # a mask that is not 0/255
    bad = np.zeros((200, 300), np.uint8)
    bad[5:9, 5:9] = 1
    bad[100, 100] = 128
    _write(root / "gt" / "vienna2.tif", bad)
    with pytest.raises(InriaDataError, match=r"vienna2.tif: mask values must be 0 .* or 255 .*found 0, 1, 128"):
        list(cut_tiles(root))
    assert issubclass(InriaDataError, GeodetectError) and issubclass(InriaFileMissingError, FileNotFoundError)


# ---------------------------------------------------------------- the plugin

def test_module_import_is_light():
    from geodetect.testing import heavy_imports_of

    assert heavy_imports_of("geodetect_plugins.building_segmenter") == []


@pytest.fixture(scope="module")
def detector(tf):
    det = _plugin().BuildingSegmenter()
    det.ensure_loaded()
    return det


def test_weights_load_with_their_hash_and_tampering_is_refused(detector, tmp_path):
    from geodetect.testing import check_weights_guarded

    mod = _plugin()
    assert detector.input_channels() == 3
    check_weights_guarded(mod.BuildingSegmenter, mod.WEIGHTS, tmp_path, max_bytes=16e6)


def test_check_detector(detector):
    from geodetect.testing import check_detector

    report = check_detector(detector)
    assert report["task"] == "SEGMENTATION" and report["classes"] == ("building",)
    spec = detector.spec
    assert (spec.tile_size, spec.gsd_m, spec.gsd_range) == (256, 1.0, (0.25, 1.25)) and 0 < spec.overlap < 64
    assert 0.3 <= spec.threshold <= 0.7 and spec.min_polygon_px == round(detector.min_area_m2 / spec.gsd_m ** 2)
    # tiles of other sizes are padded for the network and cropped back
    out = detector.predict(np.random.default_rng(0).random((2, 100, 120, 3), dtype=np.float32))
    assert [m.probs.shape for m in out] == [(100, 120, 1)] * 2


def test_tta_is_the_mean_of_the_flipped_and_transposed_views(detector):
    """predict (8 views inside one compiled function) equals the mean of the bare network over the 8 flips/rotations,
    each turned back; 4 views: the four flips. Tiles need not be square (sides multiples of 32 for the bare network)."""
    mod = _plugin()
    x = np.random.default_rng(1).random((2, 96, 128, 3), dtype=np.float32)
    net = detector._net

    def bare(a):
        return net(np.ascontiguousarray(a), training=False).numpy()

    def flips(a):
        return (bare(a) + bare(a[:, :, ::-1])[:, :, ::-1] + bare(a[:, ::-1])[:, ::-1]
                + bare(a[:, ::-1, ::-1])[:, ::-1, ::-1]) / 4

    four = flips(x)
    eight = (four + flips(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)) / 2
    assert detector.tta == 8
    got = np.stack([m.probs for m in detector.predict(x)])
    np.testing.assert_allclose(got, eight, atol=1e-5)
    assert np.abs(bare(x) - eight).max() > 0.01  # the views do differ: the test can tell TTA from none
    np.testing.assert_allclose(mod.tta_model(net, 4)(x, training=False).numpy(), four, atol=1e-5)
    for bad in (2, 3, "eight", 1.5):
        with pytest.raises(GeodetectError, match="tta must be 1, 4 or 8"):
            mod.BuildingSegmenter(tta=bad)
    assert mod.BuildingSegmenter(tta="1").tta == 1


def test_inference_settings_are_the_validation_choice():
    """The spec's threshold, min_area_m2 and tta are val_sweep.json's choice, and that choice follows its rule
    (the highest validation IoU; ties within 0.001 to fewer views, smaller min_area_m2, threshold nearer 0.5)."""
    import json

    mod = _plugin()
    sweep = json.loads((PLUGIN_DIR / "val_sweep.json").read_text())
    assert sweep["split"] == "val" and all(k.endswith("image_part_005") for k in sweep["images"])
    rows = sweep["table"]
    assert len(rows) == len(sweep["grid"]["tta"]) * len(sweep["grid"]["threshold"]) * len(sweep["grid"]["min_area_m2"])
    best = max(r["iou"] for r in rows)
    rule = min((r for r in rows if r["iou"] >= best - 0.001),
               key=lambda r: (r["tta"], r["min_area_m2"], abs(r["threshold"] - 0.5)))
    assert rule == sweep["chosen"]
    det = mod.BuildingSegmenter()
    assert (det.tta, det.spec.threshold, det.min_area_m2) == (rule["tta"], rule["threshold"], rule["min_area_m2"])


def test_dubai_split_is_fixed_by_image():
    dubai = importlib.import_module("geodetect_plugins.building_segmenter.dubai")
    names = [f"image_part_{i:03d}" for i in range(1, 10)]
    splits = [dubai.split_of(n) for n in names]
    assert splits.count("test") == 2 and splits.count("val") == 1 and splits.count("train") == 6
    assert all(k.split("/")[1] in dubai.TEST_PARTS for k in dubai.QUICK_TEST)


#: measured by plugins/building_segmenter/evaluate_real.py on the fixed subset dubai.QUICK_TEST of the real
#: test images (eval_real.json, test.quick_subset; 0.4.0): IoU QUICK_IOU, pixel accuracy QUICK_ACC; the floors sit
#: 0.02 under (0.3.0 measured 0.593 / 0.931 there: a return to it fails)
QUICK_IOU, QUICK_ACC = 0.648, 0.943


def test_quality_floor_on_real_dubai_test_images(detector, tmp_path):
    """Real held-out Dubai images (never trained on), placed at their declared 1 m, through gd.detect: IoU and
    pixel accuracy."""
    import json

    from conftest import real_dataset

    ev = importlib.import_module("geodetect_plugins.building_segmenter.evaluate_real")
    dubai = importlib.import_module("geodetect_plugins.building_segmenter.dubai")
    images = dubai.load_split(real_dataset("buildings-dubai"), "test", keys=dubai.QUICK_TEST)
    total = np.zeros(4, np.int64)
    for key, pred, tgt, st in ev.detect_masks(detector, images, tmp_path):
        total += ev.counts(pred, tgt)
    s = ev.summary(total)
    committed = json.loads((PLUGIN_DIR / "eval_real.json").read_text())["test"]["quick_subset"]["scores"]
    assert abs(s["iou"] - committed["iou"]) < 0.005, (s, committed)  # the committed JSON is this model's
    assert s["iou"] >= QUICK_IOU - 0.02, s
    assert s["pixel_accuracy"] >= QUICK_ACC - 0.02, s


def test_scenes_coarser_than_1_25m_are_refused(detector, tmp_path):
    """A 2 m scene would be blown up 2 times: refused with the range in the message."""
    from geodetect.errors import GeoreferenceError
    from geodetect.train.placement import write_placed

    path = write_placed(np.full((64, 64, 3), 120, np.uint8), tmp_path / "coarse.tif", 2.0)
    with pytest.raises(GeoreferenceError, match=r"outside the 0.25-1.25 m building-segmenter was trained for"):
        gd.detect(path, detector, progress=False)


def test_blank_and_uniform_scenes_give_almost_no_buildings(detector, tmp_path):
    import rasterio

    from geodetect.simulate._grid import scene_transform, write_geotiff

    blank = make_scene(tmp_path / "blank.tif", kind="urban", size=(512, 512), seed=903, blank=True, gsd_m=1.0)
    transform, crs = scene_transform("EPSG:32618", (-77.03, 38.89), (384, 384), 1.0)
    for name, rgb in (("grey", (128, 128, 128)), ("green", (80, 120, 60)), ("sand", (215, 205, 190))):
        write_geotiff(tmp_path / f"{name}.tif", np.full((384, 384, 3), rgb, float), transform, crs,
                      band_names=("red", "green", "blue"))
    paths = [blank.path] + [str(tmp_path / f"{n}.tif") for n in ("grey", "green", "sand")]
    dets = gd.detect(paths, detector, progress=False)
    for p in paths:
        with rasterio.open(p) as ds:
            scene_m2 = ds.width * ds.height * 1.0
        d = dets[dets.scene_id == Path(p).stem]
        # 0.3.0 (8 views, threshold 0.35) drew no polygon on any of the four scenes; 0.4.0: MODEL_CARD.md
        assert d.area_m2.sum() < 0.005 * scene_m2, (p, len(d), d.area_m2.sum())


def test_train_smoke(tmp_path, tf):
    out = tmp_path / "smoke.keras"
    res = subprocess.run([sys.executable, str(PLUGIN_DIR / "train.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "step 1/1" in res.stdout and "threshold chosen on validation" in res.stdout
    assert "sha256" in res.stdout and out.is_file()
