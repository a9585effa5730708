"""geodetect evaluate: scenes with truth beside them, metrics by task."""

import json
import subprocess
import sys

import geopandas as gpd
import numpy as np
import pytest
import shapely
from rasterio.transform import from_origin

from detectors import BrightBoxes, BrightPoints
from geodetect.errors import ConfigError, VectorReadError
from geodetect.evaluate import evaluate, find_scenes

T = from_origin(500000, 4200000, 1.0, 1.0)


def _scene(write_raster, name, squares, extra_truth=()):
    img = np.full((200, 200), 20, np.uint8)
    for c0, r0, c1, r1 in squares:
        img[r0:r1, c0:c1] = 250
    path = write_raster(img, name=name, transform=T)
    boxes = list(squares) + list(extra_truth)
    polys = [shapely.box(500000 + c0, 4200000 - r1, 500000 + c1, 4200000 - r0) for c0, r0, c1, r1 in boxes]
    return path, polys


def test_points_metrics(write_raster, tmp_path):
    p1, polys1 = _scene(write_raster, "a.tif", [(20, 20, 24, 24), (100, 100, 104, 104)], extra_truth=[(150, 150, 154, 154)])
    p2, polys2 = _scene(write_raster, "b.tif", [(50, 60, 54, 64)])
    for p, polys in ((p1, polys1), (p2, polys2)):
        gpd.GeoDataFrame({"class_name": ["spot"] * len(polys)}, geometry=[g.centroid for g in polys],
                         crs="EPSG:32610").to_file(p.replace(".tif", "_truth.geojson"))
    ev = evaluate(BrightPoints, tmp_path, radius_m=1.0)
    # scene a: 2 found of 3 (one true animal is not in the image); b: 1 of 1
    assert ev.summary["recall"] == pytest.approx(3 / 4) and ev.summary["precision"] == 1.0
    # count RMSE over scenes for the one class: sqrt(((2-3)^2 + 0) / 2)
    assert ev.summary["count_rmse_mean_over_classes"] == pytest.approx(np.sqrt(0.5))


def test_boxes_metrics_and_cli(write_raster, tmp_path):
    p, polys = _scene(write_raster, "c.tif", [(20, 20, 30, 28), (100, 100, 112, 110)])
    gpd.GeoDataFrame({"class_name": ["thing"] * 2}, geometry=polys, crs="EPSG:32610").to_file(
        p.replace(".tif", "_truth.geojson"))
    ev = evaluate(BrightBoxes, tmp_path)
    assert ev.summary["f1"] == 1.0 and ev.summary["ap"] == 1.0
    assert "per class at IoU 0.5" in ev.to_text()


def test_missing_truth_and_empty_folder(write_raster, tmp_path):
    write_raster(np.zeros((10, 10), np.uint8), name="lonely.tif")
    with pytest.raises(VectorReadError, match="lonely.tif: no ground truth"):
        find_scenes(tmp_path)
    with pytest.raises(ConfigError, match="no scenes"):
        find_scenes(tmp_path / "nothing-here" if (tmp_path / "x").mkdir() else tmp_path / "x")


def test_cli_evaluate_on_simulated_scenes(tmp_path):
    data = tmp_path / "data"
    sim = subprocess.run([sys.executable, "-m", "geodetect.cli", "simulate", str(data), "--scenes", "2",
                          "--size", "512", "512", "--objects", "20", "--seed", "900"], capture_output=True, text=True)
    assert sim.returncode == 0, sim.stderr
    out = subprocess.run([sys.executable, "-m", "geodetect.cli", "evaluate", "sea-lion-counter", "--data", str(data),
                          "--json", str(tmp_path / "m.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "count RMSE per class" in out.stdout
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["scenes"] == 2 and m["true_objects"] == 40
    # the JSON holds the same numbers as the text report, and the counter finds most of 40 clear animals
    assert f"recall: {m['recall']:.4g}" in out.stdout and f"precision: {m['precision']:.4g}" in out.stdout
    # recall and precision count the same matched pairs: matched = recall x true = precision x detected
    matched = m["recall"] * m["true_objects"]
    assert matched == pytest.approx(round(matched)) and round(matched) > 0
    assert m["precision"] * m["detections"] == pytest.approx(matched)


# ----------------------------------------------------------------------------- segmentation and classification

def _blocks_scene(write_raster, name, blocks, size=200):
    """Bright rectangles (pixel c0, r0, c1, r1) on a dark scene, on grid T."""
    img = np.full((size, size), 20, np.uint8)
    for c0, r0, c1, r1 in blocks:
        img[r0:r1, c0:c1] = 250
    return write_raster(img, name=name, transform=T)


def _px_poly(c0, r0, c1, r1):
    return shapely.box(500000 + c0, 4200000 - r1, 500000 + c1, 4200000 - r0)


def test_segmentation_iou_and_pixel_accuracy(write_raster, tmp_path):
    from detectors import BrightMask

    # bright block 100x50 px; truth says 100x60 (10 rows more): IoU = 5000/6000
    p = _blocks_scene(write_raster, "s.tif", [(50, 40, 150, 90)])
    gpd.GeoDataFrame({"class_name": ["bright"]}, geometry=[_px_poly(50, 40, 150, 100)],
                     crs="EPSG:32610").to_file(p.replace(".tif", "_truth.geojson"))
    ev = evaluate(BrightMask, tmp_path)
    assert ev.task == "SEGMENTATION"
    assert ev.summary["iou"] == pytest.approx(5000 / 6000, abs=1e-9)
    assert ev.summary["pixel_accuracy"] == pytest.approx(1 - 1000 / 40000, abs=1e-9)
    assert ev.tables["per class (pixels)"].loc["bright", "true_pixels"] == 6000


def test_segmentation_against_a_reference_detector(write_raster, tmp_path):
    from detectors import BrightMask
    from geodetect.plugins import Detector, DetectorSpec, Mask, Task

    class HalfMask(Detector):  # finds only the left half of every bright area of a tile
        spec = DetectorSpec(name="test-half-mask", version="0.0.1", task=Task.SEGMENTATION, classes=("bright",),
                            bands=(1,), tile_size=256, overlap=0)

        def predict(self, tiles):
            out = []
            for t in tiles:
                m = (t[..., :1] > 0.5).astype(np.float32)
                m[:, 100:] = 0
                out.append(Mask(m))
            return out

    _blocks_scene(write_raster, "r.tif", [(50, 40, 150, 90)])  # no truth file: the reference is the truth
    ev = evaluate(HalfMask, tmp_path, reference=BrightMask)
    assert ev.summary["iou"] == pytest.approx(0.5, abs=1e-9)
    assert "vs test-bright-mask" in ev.detector


def test_classification_accuracy_confusion_and_grouping(write_raster, tmp_path):
    from detectors import MeanLabel

    # 128x128 scene = four 64-px tiles; the top-left tile is bright
    p = _blocks_scene(write_raster, "c.tif", [(0, 0, 64, 64)], size=128)
    truth = gpd.GeoDataFrame({"class_name": ["bright", "dark", "dark", "bright"]},
                             geometry=[_px_poly(0, 0, 64, 64), _px_poly(64, 0, 128, 64),
                                       _px_poly(0, 64, 64, 128), _px_poly(64, 64, 128, 128)], crs="EPSG:32610")
    truth.to_file(p.replace(".tif", "_truth.geojson"))
    ev = evaluate(MeanLabel, tmp_path)
    assert ev.summary["accuracy"] == pytest.approx(0.75) and ev.summary["scored_tiles"] == 4
    conf = ev.tables["confusion (rows true, columns detected)"]
    assert conf.loc["bright", "dark"] == 1 and conf.loc["dark", "dark"] == 2 and conf.loc["bright", "bright"] == 1
    ev2 = evaluate(MeanLabel, tmp_path, grouping={"dark": "any", "bright": "any"})
    assert ev2.summary["accuracy"] == 1.0
    with pytest.raises(ConfigError, match="has no grouping 'three-class'"):
        evaluate(MeanLabel, tmp_path, grouping="three-class")


def test_classification_counts_tiles_without_truth(write_raster, tmp_path):
    from detectors import MeanLabel

    p = _blocks_scene(write_raster, "u.tif", [], size=128)
    gpd.GeoDataFrame({"class_name": ["dark"]}, geometry=[_px_poly(0, 0, 64, 64)],
                     crs="EPSG:32610").to_file(p.replace(".tif", "_truth.geojson"))
    ev = evaluate(MeanLabel, tmp_path)
    assert ev.summary["scored_tiles"] == 1 and ev.summary["unlabelled_tiles"] == 3 and ev.summary["accuracy"] == 1.0


def test_cli_detector_options_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "geodetect", "detect", str(tmp_path / "x.tif"), "-d", "sea-lion-counter",
                        "-O", "nonsense"], capture_output=True, text=True)
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr and "Traceback" not in r.stderr
