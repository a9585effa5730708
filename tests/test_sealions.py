"""The sea-lion counter (LoG proposals + CNN): weights, contract, real and simulated quality floors, JPEG placement,
GSD range, training smoke."""

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import geodetect as gd
from geodetect.counts import counts
from geodetect.errors import ConfigError, GeoreferenceError, PluginError
from geodetect.metrics.points import count_rmse, match_points
from geodetect.plugins.weights import load_keras_model, sha256_of
from geodetect.simulate import make_scene
from geodetect.testing import assert_detections_equal, check_detector, check_weights_guarded
from geodetect_plugins.sea_lion_counter import (CLASSES, PATCH_WEIGHTS, PATCH_WEIGHTS_SHA256, PHOTO_GSD_M, WEIGHTS,
                                                WEIGHTS_SHA256, SeaLionCounter)
from geodetect_plugins.sea_lion_counter.dataset import EVAL_SEEDS, TRAIN_SEEDS, VAL_SEEDS
from geodetect_plugins.sea_lion_counter.real import TEST, TRAIN, VAL


@pytest.fixture(scope="module")
def counter(tf):
    det = SeaLionCounter()
    det.ensure_loaded()
    return det


def test_spec_and_weights(tf):
    spec = SeaLionCounter.spec
    assert spec.version == "4.1.0"
    assert spec.gsd_m == 0.1 and spec.gsd_range == (0.025, 0.1)
    assert spec.gsd_range[0] < PHOTO_GSD_M * 0.8 and PHOTO_GSD_M * 1.2 < spec.gsd_range[1]
    assert spec.weights_sha256 == WEIGHTS_SHA256 == sha256_of(WEIGHTS)
    assert WEIGHTS.stat().st_size < 5e6
    assert SeaLionCounter().input_channels() == 3
    model = load_keras_model(WEIGHTS, WEIGHTS_SHA256, detector="t")
    assert model.input_shape == (None, 256, 256, 3) and model.output_shape == (None, 64, 64, 6)  # dense
    patch = load_keras_model(PATCH_WEIGHTS, PATCH_WEIGHTS_SHA256, detector="t")  # 3.0.0's, kept for comparison
    assert patch.input_shape == (None, 64, 64, 3) and patch.output_shape == (None, 6)


def test_dense_tiles_without_proposals_or_smaller(counter):
    """A flat tile has no proposal; a tile smaller than the network's is padded; a larger one is refused."""
    flat = np.full((2, 256, 256, 3), 0.4, np.float32)
    assert [len(p.xy) for p in counter.predict(flat)] == [0, 0]
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:200, 0:180]
    small = np.full((1, 200, 180, 3), 0.3, np.float32)
    for x, y in rng.uniform(20, 160, (6, 2)):
        small[0] += 0.4 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18.0)[..., None]
    counter.predict(small)
    with pytest.raises(PluginError, match="tile-size 256"):
        counter.predict(np.pad(small, ((0, 0), (0, 100), (0, 120), (0, 0)), mode="edge"))


def test_weights_guarded(tmp_path, tf):
    check_weights_guarded(SeaLionCounter, WEIGHTS, tmp_path, max_bytes=5e6)


def test_tampered_weights_refused(tmp_path, tf):
    bad = tmp_path / WEIGHTS.name
    shutil.copy(WEIGHTS, bad)
    with open(bad, "r+b") as f:
        f.seek(os.path.getsize(bad) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(PluginError, match="sha256"):
        SeaLionCounter(weights=bad, sha256=WEIGHTS_SHA256).ensure_loaded()
    with pytest.raises(PluginError, match="missing"):
        SeaLionCounter(weights=tmp_path / "gone.keras", sha256=WEIGHTS_SHA256).ensure_loaded()


def test_real_split_is_by_photograph():
    assert not set(TRAIN) & set(VAL) and not (set(TRAIN) | set(VAL)) & set(TEST)
    assert set(TEST) == {"42", "50"}  # the photographs with a plain copy: nothing painted on them


def test_gsd_outside_the_range_is_refused(tmp_path, counter):
    """A scene far coarser than the detector knows (0.3 m) is refused with a clear message."""
    sim = make_scene(tmp_path / "coarse.tif", size=(200, 200), n_objects=3, seed=1, gsd_m=0.3)
    with pytest.raises(GeoreferenceError, match="trained for"):
        gd.detect(sim.path, counter, progress=False)


def test_contract(counter):
    assert check_detector(counter, n_tiles=2)["classes"] == CLASSES
    assert check_detector(SeaLionCounter(cnn=False))["task"] == "POINTS"


def test_import_is_light():
    from geodetect.testing import heavy_imports_of

    assert heavy_imports_of("geodetect_plugins.sea_lion_counter") == []


def test_one_compiled_call_per_batch(counter):
    rng = np.random.default_rng(1)
    tiles = np.full((3, 256, 256, 3), 0.3, np.float32)
    yy, xx = np.mgrid[0:256, 0:256]
    for t, n in zip(tiles, (12, 5, 8)):  # a few smooth bright blobs per tile
        for x, y in rng.uniform(30, 226, (n, 2)):
            t += 0.4 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 18.0)[..., None]
    calls = []
    infer = counter._infer
    counter._infer = lambda x: (calls.append(len(x)), infer(x))[1]
    try:
        counter.predict(tiles)
        counter.predict(tiles[:1])
    finally:
        counter._infer = infer
    assert len(calls) == 2 and calls[0] > calls[1] > 0  # all tiles of a batch in one call
    assert infer.experimental_get_tracing_count() == 1  # traced once, whatever the batch


def test_seeds_are_disjoint():
    assert not (set(TRAIN_SEEDS) | set(VAL_SEEDS)) & set(EVAL_SEEDS)


def test_simulator_detail_keeps_the_animals(tmp_path):
    plain = make_scene(tmp_path / "p.tif", size=(300, 300), n_objects=8, seed=5, texture=0.0)
    rich = make_scene(tmp_path / "r.tif", size=(300, 300), n_objects=8, seed=5)
    again = make_scene(tmp_path / "a.tif", size=(300, 300), n_objects=8, seed=5)
    assert plain.truth.class_name.tolist() == rich.truth.class_name.tolist()
    assert np.allclose(plain.truth[["px_col", "px_row"]], rich.truth[["px_col", "px_row"]])
    import rasterio

    with rasterio.open(rich.path) as a, rasterio.open(again.path) as b, rasterio.open(plain.path) as c:
        ra, rb, rc = a.read(), b.read(), c.read()
    assert np.array_equal(ra, rb)  # deterministic
    assert not np.array_equal(ra, rc)


QUALITY_SCENES = [EVAL_SEEDS[-1], EVAL_SEEDS[-2]]  # never trained on


@pytest.fixture(scope="module")
def quality(tmp_path_factory, counter):
    d = tmp_path_factory.mktemp("quality")
    sims = [make_scene(d / f"q{s}.tif", size=(800, 800), n_objects=n, seed=s)
            for s, n in zip(QUALITY_SCENES, (80, 150))]
    dets = gd.detect([s.path for s in sims], counter, progress=False)
    import pandas as pd

    truth = pd.concat([s.truth.assign(scene_id=f"q{seed}") for s, seed in zip(sims, QUALITY_SCENES)],
                      ignore_index=True)
    return dets, truth, [f"q{s}" for s in QUALITY_SCENES]


def test_quality_floor(quality):
    dets, truth, sids = quality
    rmse = count_rmse(counts(dets, scene_ids=sids), counts(truth, scene_ids=sids))
    m = match_points(dets, truth, 0.75, classes=CLASSES)
    # measured with 4.1.0 (4.0.0's dense weights, 8 views a tile): RMSE 14.74, recall 0.926, precision 0.729, macro F1
    # 0.489 (one view, 4.0.0: 16.33, 0.939, 0.699, 0.433) -- far worse than 3.0.0's patch classifier on simulated
    # scenes (2.08, 0.987, 0.958, 0.863), see MODEL_CARD.md; 2.0.0: 3.08, 1.000, 0.909, 0.856
    assert rmse <= 16.5, f"count RMSE averaged over classes {rmse:.2f} > 16.5"
    assert m.recall >= 0.90 and m.precision >= 0.69, m.summary()
    assert m.per_class.loc["macro", "f1"] >= 0.45, m.per_class


def _plain_jpeg(sim, path):
    """The scene's pixels as a plain JPEG (quality 95), without any georeferencing."""
    import rasterio

    with rasterio.open(sim.path) as src:
        arr = src.read()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="JPEG", width=arr.shape[2], height=arr.shape[1], count=3,
                           dtype="uint8", QUALITY=95) as dst:
            dst.write(arr)
    return path


@pytest.fixture(scope="module")
def jpeg_scene(tmp_path_factory):
    d = tmp_path_factory.mktemp("jpeg")
    sim = make_scene(d / "rookery.tif", crs="EPSG:32606", size=(512, 512), n_objects=40, seed=EVAL_SEEDS[-3])
    return sim, d


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_plain_jpeg_needs_placement(jpeg_scene, counter):
    sim, d = jpeg_scene
    jpg = _plain_jpeg(sim, d / "0.jpg")
    with pytest.raises(GeoreferenceError, match="has no geotransform"):
        gd.detect(jpg, counter, progress=False)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_plain_jpeg_with_bounds_or_world_file(jpeg_scene, counter):
    sim, d = jpeg_scene
    t = sim.transform
    bounds = (t.c, t.f + t.e * sim.height, t.c + t.a * sim.width, t.f)  # left, bottom, right, top
    a = gd.detect(_plain_jpeg(sim, d / "1.jpg"), counter, bounds=bounds, crs=sim.crs, progress=False)
    jpg = _plain_jpeg(sim, d / "2.jpg")
    # a world file: pixel sizes, rotations, then the centre of the upper-left pixel
    (d / "2.jgw").write_text(f"{t.a}\n{t.d}\n{t.b}\n{t.e}\n{t.c + t.a / 2}\n{t.f + t.e / 2}\n")
    b = gd.detect(jpg, counter, crs=sim.crs, progress=False)
    assert (a.scene_id == "1").all() and (b.scene_id == "2").all()
    assert_detections_equal(a.assign(scene_id="x"), b.assign(scene_id="x"), tolerance=1e-9)
    m = match_points(a, sim.truth, 0.75, classes=CLASSES)
    # measured (4.1.0): 0.925 (37 of 40), 0.638 (4.0.0: 0.950, 0.613; 3.0.0: 1.000, 0.976)
    assert m.recall >= 0.90 and m.precision >= 0.60, m.summary()


def test_train_smoke(tmp_path):
    out = tmp_path / "smoke.keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    res = subprocess.run([sys.executable, "-m", "geodetect_plugins.sea_lion_counter.train", "--smoke", "--out",
                          str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"sha256 {sha256_of(out)}" in res.stdout
    load_keras_model(out, sha256_of(out), detector="smoke")


# ----------------------------------------------------------------------------- real photographs

#: measured by evaluate_real.py on test photograph 42 (eval_real.json "test_subset"), minus a small margin
#: (measured with 4.1.0: F1 0.442, recall 0.773 (17 of 22), precision 0.309, relative count error 1.50 (55 found);
#: 4.0.0 (one view a tile) had 0.350, 0.818, 0.222, 2.68; 3.0.0 0.476, 0.909, 0.323, 1.82: far below the targets,
#: see MODEL_CARD.md; the floors catch a regression (recall: one animal fewer), they are not a claim)
REAL_FLOORS = {"f1": 0.40, "recall": 0.72, "precision": 0.27, "relative_count_error": 2.0}


def test_real_quality_on_a_test_photograph(tf, tmp_path):
    """Photograph 42 (plain, held out; 22 animals) through gd.detect, placed at 3.5 cm: the numbers of
    eval_real.json's ``test_subset``, within a small margin."""
    from conftest import real_dataset

    from geodetect_plugins.sea_lion_counter.evaluate_real import evaluate_real

    root = real_dataset("sealions-noaa")
    r = evaluate_real(root, ids=["42"], painted_check=False, with_speed=False, workdir=tmp_path, log=None)["test"]
    summary = {k: round(r[k], 3) for k in ("f1", "precision", "recall", "relative_count_error_mean", "count_rmse")}
    assert r["f1"] >= REAL_FLOORS["f1"], summary
    assert r["recall"] >= REAL_FLOORS["recall"], summary
    assert r["precision"] >= REAL_FLOORS["precision"], summary
    assert r["relative_count_error_mean"] <= REAL_FLOORS["relative_count_error"], summary


def test_tta_views_are_mapped_back(counter):
    """The 8-view map of a flipped or turned tile is the flipped or turned map of the tile (each view's cells are put
    back where they came from), and it differs from one view's map; tta is checked."""
    rng = np.random.default_rng(3)
    x = rng.random((1, 256, 256, 3), dtype=np.float32)
    views = np.concatenate([x, x[:, :, ::-1], np.rot90(x, 1, axes=(1, 2)), np.transpose(x, (0, 2, 1, 3))])
    m = counter._infer(np.ascontiguousarray(views)).numpy()
    np.testing.assert_allclose(m[1], m[0][:, ::-1], atol=1e-5)
    np.testing.assert_allclose(m[2], np.rot90(m[0], 1, axes=(0, 1)), atol=1e-5)
    np.testing.assert_allclose(m[3], np.transpose(m[0], (1, 0, 2)), atol=1e-5)
    one = SeaLionCounter(tta=1)
    one.ensure_loaded()
    assert np.abs(one._infer(x).numpy()[0] - m[0]).max() > 1e-3
    with pytest.raises(ConfigError, match="tta must be 1, 4 or 8"):
        SeaLionCounter(tta=3)
    with pytest.raises(PluginError, match="needs dense weights"):
        SeaLionCounter(weights=PATCH_WEIGHTS, sha256=PATCH_WEIGHTS_SHA256, tta=8).ensure_loaded()

