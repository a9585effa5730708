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


def test_pytorch_model_exported_to_onnx_runs_the_same_way(tmp_path, rgb_scene):
    torch = pytest.importorskip(
        "torch", reason="PyTorch is not installed: PyPI's torch wheel for Linux pulls ~3 GB of CUDA packages and "
                        "fails to import without them, so CI does not install it (pip install torch to run this)")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1),
                              torch.nn.Softmax(dim=1)).eval()
    path = tmp_path / "seg.onnx"
    torch.onnx.export(net, (torch.rand(1, 3, 64, 64),), str(path), input_names=["tiles"], output_names=["probs"],
                      dynamic_axes={"tiles": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False)
    spec = DetectorSpec(name="torch-seg", version="0.1.0", task=Task.SEGMENTATION, classes=("a", "b"),
                        bands=("red", "green", "blue"), tile_size=64, overlap=8, scaling=(0.0, 255.0))
    doc = write_mlm(tmp_path / "seg.json", spec=spec, onnx_file=path, input_shape=[-1, 3, 64, 64],
                    input_dim_order=["batch", "channel", "height", "width"], result_shape=[-1, 2, 64, 64],
                    result_dim_order=["batch", "class", "height", "width"], tasks=["semantic-segmentation"],
                    framework="PyTorch")
    cls = detector_class(doc)
    check_detector(cls)
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    inst = cls()
    inst.ensure_loaded()
    want = net(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    got = np.stack([m.probs for m in inst.predict(x)])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert len(gd.detect(rgb_scene, cls, bands="1,2,3", progress=False)) > 0


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
