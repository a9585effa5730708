"""ONNX detectors described by STAC MLM documents: the four result types, checksums, registration, the CLI,
and the built-in Keras detectors exported to ONNX giving the Keras detections."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import PluginError
from geodetect.mlm import detector_class, read_mlm, write_mlm
from geodetect.plugins import DetectorSpec, Task, unregister_detector
from geodetect.testing import check_detector

import onnx  # the dev extra (tests build small models with it); onnxruntime is a core dependency
from onnx import TensorProto, helper


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _tiny(kind: str, path: Path, size: int = 64) -> Path:
    """Small hand-written ONNX models, NCHW float32 input of 3 bands, one per layout."""
    x = helper.make_tensor_value_info("tiles", TensorProto.FLOAT, ["n", 3, size, size])
    nodes, inits = [], []

    def const(name, arr):
        inits.append(helper.make_tensor(name, TensorProto.FLOAT, np.shape(arr), np.ravel(arr).astype(np.float32)))

    if kind == "labels":  # two classes: P(bright) = sigmoid(10 (mean - 0.5))
        const("axes_unused", [0.0])
        nodes += [helper.make_node("ReduceMean", ["tiles"], ["m"], axes=[2, 3], keepdims=0),  # (n, 3)
                  helper.make_node("ReduceMean", ["m"], ["m1"], axes=[1], keepdims=1)]  # (n, 1)
        const("k", [[-10.0, 10.0]])
        const("b", [[5.0, -5.0]])
        nodes += [helper.make_node("Mul", ["m1", "k"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
                  helper.make_node("Softmax", ["z"], ["probs"], axis=1)]
        out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 2])
    elif kind == "mask":  # one class: bright pixels of band 1
        const("k", [20.0])
        const("b", [-10.0])
        nodes += [helper.make_node("Slice", ["tiles", "s0", "s1", "ax"], ["b1"]),
                  helper.make_node("Mul", ["b1", "k"], ["z0"]), helper.make_node("Add", ["z0", "b"], ["z"]),
                  helper.make_node("Sigmoid", ["z"], ["probs"])]
        inits += [helper.make_tensor("s0", TensorProto.INT64, [1], [0]),
                  helper.make_tensor("s1", TensorProto.INT64, [1], [1]),
                  helper.make_tensor("ax", TensorProto.INT64, [1], [1])]
        out = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 1, size, size])
    else:  # one detection per tile at its centre, scored by the tile's mean, class 0
        nodes.append(helper.make_node("ReduceMean", ["tiles"], ["m"], axes=[1, 2, 3], keepdims=1))  # (n,1,1,1)
        inits.append(helper.make_tensor("shp", TensorProto.INT64, [3], [-1, 1, 1]))
        nodes.append(helper.make_node("Reshape", ["m", "shp"], ["score"]))  # (n, 1, 1)
        const("zero", np.zeros((1, 1, 1)))
        nodes.append(helper.make_node("Mul", ["score", "zero"], ["z"]))  # (n, 1, 1) of zeros
        c = size / 2
        geom = [c - 4, c - 4, c + 4, c + 4] if kind == "boxes" else [c, c]
        const("g", np.array(geom, np.float32).reshape(1, 1, -1))
        nodes.append(helper.make_node("Add", ["z", "g"], ["xy"]))  # broadcast to (n, 1, len(geom))
        nodes.append(helper.make_node("Concat", ["xy", "score", "z"], ["dets"], axis=2))
        out = helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["n", 1, len(geom) + 2])
    graph = helper.make_graph(nodes, kind, [x], [out], initializer=inits)
    return _save(graph, path)


_TASKS = {"labels": (Task.CLASSIFICATION, ("dark", "bright"), ["classification"], ["batch", "class"], [-1, 2]),
          "mask": (Task.SEGMENTATION, ("bright",), ["semantic-segmentation"], ["batch", "class", "height", "width"],
                   [-1, 1, 64, 64]),
          "points": (Task.POINTS, ("thing",), ["object-detection"], ["batch", "detection", "attribute"], [-1, 1, 4]),
          "boxes": (Task.BOXES, ("thing",), ["object-detection"], ["batch", "detection", "attribute"], [-1, 1, 6])}


def _mlm(tmp_path: Path, kind: str, **props) -> Path:
    task, classes, tasks, order, shape = _TASKS[kind]
    onnx_path = _tiny(kind, tmp_path / f"{kind}.onnx")
    spec = DetectorSpec(name=f"tiny-{kind}", version="0.1.0", task=task, classes=classes, bands=("red", "green", "blue"),
                        tile_size=64, overlap=8, scaling=(0.0, 255.0))
    doc = write_mlm(tmp_path / f"{kind}.json", spec=spec, onnx_file=onnx_path, input_shape=[-1, 3, 64, 64],
                    input_dim_order=["batch", "channel", "height", "width"], result_shape=shape, result_dim_order=order,
                    tasks=tasks, value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 255}],
                    score_threshold=0.0)
    if props:
        d = json.loads(doc.read_text())
        for k, v in props.items():
            if v is None:
                d["properties"].pop(k, None)
            else:
                d["properties"][k] = v
        doc.write_text(json.dumps(d))
    return doc


@pytest.fixture
def rgb_scene(write_raster):
    rng = np.random.default_rng(0)
    arr = (rng.random((3, 200, 260)) * 80).astype(np.uint8)
    arr[:, 40:90, 50:120] = 240  # a bright block
    return write_raster(arr, name="rgb.tif")


@pytest.mark.parametrize("kind", ["labels", "mask", "points", "boxes"])
def test_mlm_model_is_a_detector_of_each_result_type(tmp_path, kind, rgb_scene):
    cls = detector_class(_mlm(tmp_path, kind))
    assert cls.spec.task is _TASKS[kind][0]
    assert cls.spec.bands == ("red", "green", "blue") and cls.spec.tile_size == 64
    assert cls.spec.scaling == (0.0, 255.0)  # one min-max for all bands is the host's own scaling
    report = check_detector(cls)
    assert report["name"] == f"tiny-{kind}"
    inst = pickle.loads(pickle.dumps(cls()))  # Spark ships detectors pickled
    assert inst.spec == cls.spec
    dets = gd.detect(rgb_scene, cls, bands="1,2,3", progress=False)
    assert len(dets) > 0 and dets.crs.to_epsg() == 4326
    if kind == "mask":
        assert set(dets.class_name) == {"bright"}
        assert dets.area_m2.sum() == pytest.approx(50 * 70, rel=0.05)  # the bright block at 1 m pixels
    if kind == "labels":
        assert "bright" in set(dets.class_name) and "dark" in set(dets.class_name)


def test_mlm_scaling_per_band_and_channels_last(tmp_path):
    doc = _mlm(tmp_path, "labels")
    d = json.loads(doc.read_text())
    d["properties"]["mlm:input"][0]["value_scaling"] = [{"type": "z-score", "mean": 10, "stddev": 2},
                                                       {"type": "scale", "value": 4}, {"type": "offset", "value": 1}]
    d["properties"].pop("geodetect:scaling")
    doc.write_text(json.dumps(d))
    m = read_mlm(doc)
    assert m.spec.scaling == "none" and [o[0] for o in m.band_scaling] == ["affine"] * 3
    inst = detector_class(doc)()
    inst.ensure_loaded()
    tiles = np.full((1, 64, 64, 3), 12.0, np.float32)  # z = 1, 3, 11 -> mean 5 -> P(bright) ~ 1
    assert inst.predict(tiles)[0].probs[1] > 0.99


def test_mlm_errors_say_what_to_fix(tmp_path):
    doc = _mlm(tmp_path, "mask")
    d = json.loads(doc.read_text())
    model = d["assets"]["model"]

    def variant(change, match):
        dd = json.loads(json.dumps(d))
        change(dd)
        p = tmp_path / "variant.json"
        p.write_text(json.dumps(dd))
        with pytest.raises(PluginError, match=match):
            read_mlm(p)

    variant(lambda x: x["assets"]["model"].pop("file:checksum"), "no file:checksum; refusing to load unverified")
    variant(lambda x: x["assets"]["model"].update(href="https://example.org/m.onnx"), "never fetched from the network")
    variant(lambda x: x["assets"]["model"].update({"file:checksum": "1114" + "0" * 40}), "not a sha2-256 multihash")
    variant(lambda x: x["properties"]["mlm:output"][0]["result"].update(dim_order=["batch", "width", "height", "class"]),
            "dim_order")
    variant(lambda x: x["properties"]["mlm:output"][0].update(tasks=["regression"]), "not a layout geodetect reads")
    variant(lambda x: x["properties"]["mlm:input"][0].update(bands=["red", "green"]), "2 band")
    variant(lambda x: x["properties"]["mlm:output"][0].update({"classification:classes": []}), "classification:classes")
    # a checksum that does not match the file: refused when loading, before onnxruntime sees it
    bad = json.loads(json.dumps(d))
    bad["assets"]["model"]["file:checksum"] = "1220" + "ab" * 32
    p = tmp_path / "tampered.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(PluginError, match="sha256"):
        detector_class(p)().ensure_loaded()
    assert model["file:checksum"].startswith("1220")


def test_register_model_and_cli_add(tmp_path, monkeypatch, rgb_scene, capsys):
    from geodetect.cli import main

    monkeypatch.setenv("GEODETECT_CONFIG_DIR", str(tmp_path / "config"))
    doc = _mlm(tmp_path, "boxes")
    cls = gd.register_model(doc)
    try:
        assert gd.plugins.get_detector("tiny-boxes") is cls
        row = {r.name: r for r in gd.list_detectors()}["tiny-boxes"]
        assert row.package == "(MLM model)" and row.target == str(doc)
    finally:
        unregister_detector("tiny-boxes")
    doc2 = _mlm(tmp_path, "points")
    assert main(["detectors", "add", str(doc2)]) == 0
    try:
        assert "added tiny-points" in capsys.readouterr().err
        saved = json.loads((tmp_path / "config" / "models.json").read_text())["models"]
        assert saved == [str(doc2.resolve())]
        out = tmp_path / "pts.geojson"
        assert main(["detect", rgb_scene, "--detector", "tiny-points", "--bands", "1,2,3", "--out", str(out),
                     "--no-progress"]) == 0
        assert json.loads(out.read_text())["features"]
    finally:
        assert main(["detectors", "remove", "tiny-points"]) == 0
        unregister_detector("tiny-points")
    assert json.loads((tmp_path / "config" / "models.json").read_text())["models"] == []


def test_cli_export_refuses_what_is_not_a_network(capsys):
    from geodetect.cli import main

    assert main(["detectors", "export", "sea-lion-counter", "--onnx"]) == 2
    assert "classical LoG stage" in capsys.readouterr().err
    assert main(["detectors", "export", "water-segmenter"]) == 2
    assert "--onnx" in capsys.readouterr().err


# ------------------------------------------------------------------ a model written in PyTorch, exported to ONNX
# scripts/export_torch_example.py (run where torch is installed) wrote tests/data/torch_example/: two networks written
# in PyTorch exported with torch.onnx, their MLM documents, and torch's own outputs on fixed tiles (reference.npz).
# These tests need no torch: they run the committed ONNX files as MLM detectors and compare with torch's outputs.

TORCH_EXAMPLE = Path(__file__).parent / "data" / "torch_example"
#: torch (CPU) and onnxruntime compute the same float32 graph with different kernels: probabilities and scores
#: agree to ~1e-7 here; 1e-5 leaves room for other CPUs and library versions
TORCH_ATOL = 1e-5


def _torch_reference() -> dict:
    with np.load(TORCH_EXAMPLE / "reference.npz") as z:
        return {k: z[k] for k in z.files}


def _assert_probs_match(got: np.ndarray, want: np.ndarray) -> None:
    """Mask probabilities (N, H, W, C) against torch's (N, C, H, W)."""
    np.testing.assert_allclose(got, want.transpose(0, 2, 3, 1), rtol=0, atol=TORCH_ATOL)


def _assert_points_match(got: list, want: np.ndarray, threshold: float) -> None:
    """geodetect Points per tile against torch's (N, K, 4) rows [col, row, score, class] scoring >= threshold."""
    assert len(got) == len(want)
    for pts, rows in zip(got, want):
        rows = rows[rows[:, 2] >= threshold]
        assert len(pts.xy) == len(rows) > 0, (len(pts.xy), len(rows))
        np.testing.assert_array_equal(pts.xy, rows[:, :2])  # pixel centres from TopK indices: exact
        np.testing.assert_allclose(pts.scores, rows[:, 2], rtol=0, atol=TORCH_ATOL)
        np.testing.assert_array_equal(pts.class_ids, rows[:, 3].astype(int))


def _run_example(name: str, ref: dict) -> list:
    """The committed MLM + ONNX as a detector, on the recorded tiles scaled as the host scales them."""
    cls = detector_class(TORCH_EXAMPLE / f"{name}.json")
    inst = cls()
    inst.ensure_loaded()
    if name == "segmenter":  # host scaling "none": the detector applies the MLM's per-band z-score itself
        return inst.predict(ref["seg_tiles"].astype(np.float32))
    return inst.predict(ref["spot_tiles"].astype(np.float32) * np.float32(1 / 255))  # MLM min-max 0..255, by the host


def test_pytorch_example_files_match_their_mlm_checksums():
    import hashlib

    for name in ("segmenter", "spots"):
        doc = json.loads((TORCH_EXAMPLE / f"{name}.json").read_text())
        asset = doc["assets"]["model"]
        data = (TORCH_EXAMPLE / asset["href"]).read_bytes()
        assert asset["file:checksum"] == "1220" + hashlib.sha256(data).hexdigest(), name
        assert asset["file:size"] == len(data) < 64 * 1024
        assert doc["properties"]["mlm:framework"] == "PyTorch"
        assert onnx.load_from_string(data).producer_name == "pytorch"  # made by torch.onnx, not by hand


@pytest.mark.parametrize("name", ["segmenter", "spots"])
def test_pytorch_model_exported_to_onnx_runs_the_same_way(name):
    """The ONNX files torch exported, run as MLM detectors, give torch's recorded outputs on the recorded tiles."""
    cls = detector_class(TORCH_EXAMPLE / f"{name}.json")
    check_detector(cls)
    ref = _torch_reference()
    got = _run_example(name, ref)
    if name == "segmenter":
        assert cls.spec.scaling == "none" and len(cls.mlm.band_scaling) == 3  # MLM per-band z-score
        _assert_probs_match(np.stack([m.probs for m in got]), ref["seg_probs"])
        assert 0.2 < (ref["seg_probs"][:, 1] > 0.5).mean() < 0.8  # both classes present: not a trivial mask
    else:
        _assert_points_match(got, ref["spot_points"], cls.mlm.score_threshold)
        for pts, centres in zip(got, ref["spot_centres"]):  # the spots found are the ones planted
            centres = centres[~np.isnan(centres[:, 0])]
            assert sorted(map(tuple, pts.xy)) == sorted(map(tuple, centres))


def test_pytorch_comparison_fails_on_a_perturbed_reference():
    """The comparisons above can fail: a reference off by 1e-4 at one pixel, or one point moved by one pixel."""
    ref = _torch_reference()
    probs = ref["seg_probs"].copy()
    probs[1, 0, 10, 20] += 1e-4
    with pytest.raises(AssertionError):
        _assert_probs_match(np.stack([m.probs for m in _run_example("segmenter", ref)]), probs)
    rows = ref["spot_points"].copy()
    rows[0, 0, 0] += 1.0
    with pytest.raises(AssertionError):
        _assert_points_match(_run_example("spots", ref), rows, 0.5)


def test_pytorch_example_through_gd_detect_is_georeferenced(write_raster):
    """One-tile scenes made of the recorded tiles: gd.detect's polygons cover exactly the pixels torch gives class b,
    and its points lie at the map positions of torch's pixel coordinates."""
    import rasterio.features
    from affine import Affine

    ref = _torch_reference()
    t = Affine(0.5, 0.0, 551_000.0, 0.0, -0.5, 4_182_000.0)  # UTM 10N, 0.5 m pixels
    seg = write_raster(ref["seg_tiles"][1].transpose(2, 0, 1), name="seg.tif", transform=t, photometric="RGB")
    dets = gd.detect(seg, detector_class(TORCH_EXAMPLE / "segmenter.json"), progress=False)  # bands by name: RGB
    assert dets.crs.to_epsg() == 4326 and set(dets.class_name) == {"a", "b"}
    b = dets[dets.class_name == "b"].to_crs(32610)
    got = rasterio.features.rasterize(((g, 1) for g in b.geometry), out_shape=(64, 64), transform=t, dtype="uint8")
    want = ref["seg_probs"][1].argmax(axis=0) == 1
    assert np.abs(ref["seg_probs"][1, 1] - 0.5).min() > 1e-4  # no pixel so close to a tie that round-off may flip it
    np.testing.assert_array_equal(got.astype(bool), want)
    assert b.geometry.area.sum() == pytest.approx(want.sum() * 0.25, rel=1e-9)  # 0.25 m2 pixels of the UTM grid
    assert b.area_m2.sum() == pytest.approx(want.sum() * 0.25, rel=2e-3)  # on the ground: UTM's scale is 1 +- 0.1 %
    spots = write_raster(ref["spot_tiles"][1].transpose(2, 0, 1), name="spots.tif", transform=t, photometric="RGB")
    dets = gd.detect(spots, detector_class(TORCH_EXAMPLE / "spots.json"), progress=False).to_crs(32610)
    rows = ref["spot_points"][1]
    rows = rows[rows[:, 2] >= 0.5]
    want_xy = np.array([t * (c, r) for c, r in rows[:, :2]])  # pixel coordinates (col + 0.5, row + 0.5) on the map
    order = np.lexsort((dets.geometry.x, dets.geometry.y))
    worder = np.lexsort((want_xy[:, 0], want_xy[:, 1]))
    np.testing.assert_allclose(np.c_[dets.geometry.x, dets.geometry.y][order], want_xy[worder], rtol=0, atol=1e-6)
    np.testing.assert_allclose(dets.score.to_numpy()[order], rows[worder, 2], rtol=0, atol=TORCH_ATOL)


def _torch_python() -> list[str] | None:
    """How to run the export script: this interpreter when it has torch, else $GEODETECT_TORCH_PYTHON."""
    import importlib.util
    import sys

    if importlib.util.find_spec("torch") is not None:
        return [sys.executable]
    env = os.environ.get("GEODETECT_TORCH_PYTHON")
    return [env] if env else None


def test_pytorch_example_recording_is_what_the_script_makes(tmp_path):
    """Where torch is installed, the script run again gives the committed recording: the same tiles, torch's outputs
    and the new ONNX files' outputs equal to the committed ones (so the recording cannot go stale unnoticed)."""
    import subprocess

    from geodetect.onnx import session_for

    python = _torch_python()
    if python is None:
        pytest.skip("torch is not installed: PyPI's torch wheel for Linux pulls ~3 GB of CUDA packages, so CI does not "
                    "install it; set GEODETECT_TORCH_PYTHON to a Python with torch and onnx to run this")
    script = Path(__file__).parents[1] / "scripts" / "export_torch_example.py"
    subprocess.run(python + [str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    old, new = _torch_reference(), dict(np.load(tmp_path / "reference.npz"))
    assert sorted(old) == sorted(new)
    for k in ("seg_tiles", "spot_tiles", "spot_centres"):
        np.testing.assert_array_equal(new[k], old[k])
    np.testing.assert_allclose(new["seg_probs"], old["seg_probs"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(new["spot_points"], old["spot_points"], rtol=0, atol=1e-6)
    for name, key in (("segmenter", "seg_tiles"), ("spots", "spot_tiles")):
        x = np.ascontiguousarray(old[key].transpose(0, 3, 1, 2), np.float32) / np.float32(255)
        a, b = session_for(TORCH_EXAMPLE / f"{name}.onnx"), session_for(tmp_path / f"{name}.onnx")
        np.testing.assert_allclose(b.run(None, {"tiles": x})[0], a.run(None, {"tiles": x})[0], rtol=0, atol=1e-6)
        d_old, d_new = (json.loads(p.read_text()) for p in (TORCH_EXAMPLE / f"{name}.json", tmp_path / f"{name}.json"))
        for d in (d_old, d_new):  # the ONNX bytes may differ between torch versions; the rest of the document may not
            d["assets"]["model"].pop("file:checksum")
            d["assets"]["model"].pop("file:size")
        assert d_new == d_old


# ------------------------------------------------------------------ built-in Keras detectors exported to ONNX

def _same_detections(a, b, task: Task):
    """Equal up to float32 round-off between TensorFlow and onnxruntime (see the tolerances below)."""
    import shapely

    assert len(a) == len(b), (len(a), len(b))
    if task is Task.SEGMENTATION:
        ua, ub = shapely.union_all(a.to_crs(a.estimate_utm_crs()).geometry), shapely.union_all(
            b.to_crs(a.estimate_utm_crs()).geometry)
        # a pixel whose probability is within ~1e-6 of the threshold may flip: at most 0.1 % of the area
        assert ua.symmetric_difference(ub).area <= 1e-3 * max(ua.area, 1.0)
        return
    key = ["class_name", "score"] if task is Task.CLASSIFICATION else ["class_name"]
    a = a.assign(x=a.geometry.centroid.x, y=a.geometry.centroid.y).sort_values(key + ["x", "y"]).reset_index(drop=True)
    b = b.assign(x=b.geometry.centroid.x, y=b.geometry.centroid.y).sort_values(key + ["x", "y"]).reset_index(drop=True)
    assert list(a.class_name) == list(b.class_name)
    np.testing.assert_allclose(a.score, b.score, atol=1e-4)  # probabilities / heatmap peaks
    np.testing.assert_allclose(a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy(), atol=1e-7)  # degrees: ~1 cm


def _scene_for(name: str, tmp_path: Path):
    from geodetect.simulate import make_scene

    if name == "water-segmenter":  # a 768 x 768 window of the real Landsat scene (SF Bay: water and land)
        from geodetect_plugins.water_segmenter.data import landsat_path, write_rows

        return write_rows(landsat_path(), tmp_path / "bay.tif", (600, 1368), (700, 1468)), {"bands": "nir=1,red=2,green=3"}
    if name == "building-segmenter":  # trained on real Dubai imagery: a real held-out test image, placed at 1 m
        from conftest import real_dataset
        from geodetect.train.placement import write_placed
        from geodetect_plugins.building_segmenter.dubai import load_split

        (_, img, _), = load_split(real_dataset("buildings-dubai"), "test", keys=("tile_4/image_part_003",))
        return str(write_placed(img, tmp_path / "dubai.tif", 1.0)), {}
    kind, size = {"vehicle-detector": ("vehicles", (768, 768)), "building-segmenter": ("urban", (512, 512)),
                  "land-use-classifier": ("land-use", (672, 672))}[name]
    gsd = gd.plugins.get_detector(name).spec.gsd_m  # at the detector's own GSD (the retrained ones may change it)
    path = tmp_path / f"{name}.tif"
    make_scene(path, kind=kind, size=size, gsd_m=gsd, seed=1)
    return str(path), {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["water-segmenter", "vehicle-detector", "building-segmenter", "land-use-classifier"])
def test_exported_builtin_gives_the_keras_detections(tf, tmp_path, name, monkeypatch):
    from geodetect.cli import main

    monkeypatch.setenv("GEODETECT_CONFIG_DIR", str(tmp_path / "config"))
    assert main(["detectors", "export", name, "--onnx", "--out", str(tmp_path / "onnx")]) == 0
    doc = tmp_path / "onnx" / f"{name}.json"
    cls = detector_class(doc)
    keras_cls = gd.plugins.get_detector(name)
    assert cls.spec.classes == keras_cls.spec.classes and cls.spec.bands == keras_cls.spec.bands
    assert cls.spec.tile_size == keras_cls.spec.tile_size and cls.spec.gsd_m == keras_cls.spec.gsd_m
    check_detector(cls)
    scene, kw = _scene_for(name, tmp_path)
    want = gd.detect(scene, name, progress=False, **kw)
    got = gd.detect(scene, cls, progress=False, **kw)
    assert len(want) > 0
    _same_detections(want, got, keras_cls.spec.task)


def test_big_mask_scene_gives_back_the_model_memory_before_polygonising(tmp_path, write_raster, monkeypatch):
    """After the last tile of a big segmentation scene the ONNX detector frees onnxruntime's arena (one shrinking
    run of one tile); the detections do not change, and a small scene does not pay for it."""
    from geodetect.onnx import OnnxDetector

    cls = detector_class(_mlm(tmp_path, "mask"))
    rng = np.random.default_rng(1)
    arr = (rng.random((3, 400, 400)) * 80).astype(np.uint8)
    arr[:, 100:180, 60:300] = 240
    big = write_raster(arr, name="big.tif")  # 7 x 7 tiles of 64 px at stride 56: more than 4 batches of 8
    small = write_raster(arr[:, :100, :100], name="small.tif")
    calls = []
    real = OnnxDetector.release_working_memory
    monkeypatch.setattr(OnnxDetector, "release_working_memory", lambda self: (calls.append(1), real(self))[1])
    dets = gd.detect(big, cls, bands="1,2,3", progress=False)
    assert calls == [1]
    assert dets.area_m2.sum() == pytest.approx(80 * 240, rel=0.02)
    gd.detect(small, cls, bands="1,2,3", progress=False)
    assert calls == [1]  # one batch: nothing to give back
    det = cls()
    det.release_working_memory()  # before any batch: nothing to do
    x = rng.random((3, 64, 64, 3)).astype(np.float32)
    before = det.predict(x)
    det.release_working_memory()
    after = det.predict(x)
    assert all(np.array_equal(a.probs, b.probs) for a, b in zip(before, after))


def test_mlm_merge_classes_round_trips_and_a_non_boolean_is_refused(tmp_path):
    assert detector_class(_mlm(tmp_path, "points")).spec.merge_classes is False  # written by write_mlm: false
    assert detector_class(_mlm(tmp_path, "points", **{"geodetect:merge_classes": True})).spec.merge_classes is True
    with pytest.raises(PluginError, match="merge_classes must be true or false"):
        detector_class(_mlm(tmp_path, "points", **{"geodetect:merge_classes": "yes"}))
