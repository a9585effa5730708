"""YOLO txt box loader (geodetect.train.yolo) on tiny folders made here, and on the real KIT AIS folder."""

import numpy as np
import pytest

from conftest import real_dataset
from geodetect.errors import GeodetectError, RasterReadError
from geodetect.train.yolo import (YoloLabelError, crop_boxes, load_yolo_folder, measure_gsd, read_image,
                                  read_yolo_boxes, read_yolo_classes)


def _png(path, arr):
    from PIL import Image

    Image.fromarray(arr).save(path)


@pytest.fixture
def folder(tmp_path):
    """Two 100 x 50 images (one grey PNG, one RGB), labels for one, and classes.txt."""
    (tmp_path / "classes.txt").write_text("car\ntruck\n\nbus\n")
    rgb = np.zeros((50, 100, 3), np.uint8)
    rgb[..., 0] = np.arange(100)[None, :]
    _png(tmp_path / "a.png", rgb)
    (tmp_path / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n\n2 0.05 0.1 0.1 0.2\n")
    _png(tmp_path / "b.png", np.full((50, 100), 9, np.uint8))
    (tmp_path / "notes.md").write_text("not an image")
    return tmp_path


def test_classes_and_boxes_in_pixels(folder):
    assert read_yolo_classes(folder / "classes.txt") == ("car", "truck", "bus")
    boxes, ids = read_yolo_boxes(folder / "a.txt", 100, 50, n_classes=3)
    np.testing.assert_allclose(boxes, [[40, 15, 60, 35], [0, 0, 10, 10]])
    assert ids.tolist() == [0, 2] and ids.dtype == np.int64
    b, i = read_yolo_boxes(folder / "missing.txt", 100, 50)
    assert b.shape == (0, 4) and i.shape == (0,)


def test_folder_lists_images_with_boxes(folder):
    items = load_yolo_folder(folder)
    assert [it.name for it in items] == ["a", "b"]
    a, b = items
    assert (a.width, a.height) == (100, 50) and a.class_names == ("car", "truck", "bus")
    assert len(a.boxes) == 2 and len(b.boxes) == 0
    img = a.read()
    assert img.shape == (50, 100, 3) and img.dtype == np.uint8 and img[0, 37, 0] == 37
    grey = read_image(b.path)
    assert grey.shape == (50, 100, 3) and (grey == 9).all()  # one band repeated


@pytest.mark.parametrize("line, match", [
    ("0 0.5 0.5 0.2", "expected 'class"),
    ("0 0.5 x 0.2 0.2", "not numbers"),
    ("3 0.5 0.5 0.2 0.2", "class 3 is not one of the 3"),
    ("0 1.5 0.5 0.2 0.2", "normalised"),
    ("0 0.5 0.5 0 0.2", "normalised"),
])
def test_malformed_labels(folder, line, match):
    (folder / "a.txt").write_text(line + "\n")
    with pytest.raises(YoloLabelError, match=match) as e:
        load_yolo_folder(folder)
    assert isinstance(e.value, GeodetectError) and isinstance(e.value, ValueError)


def test_folder_errors(tmp_path, folder):
    with pytest.raises(YoloLabelError, match="not a folder"):
        load_yolo_folder(tmp_path / "nope")
    (folder / "classes.txt").unlink()
    with pytest.raises(YoloLabelError, match="classes.txt"):
        load_yolo_folder(folder)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "classes.txt").write_text("car\n")
    with pytest.raises(YoloLabelError, match="no images"):
        load_yolo_folder(tmp_path / "empty")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(RasterReadError):
        read_image(tmp_path / "bad.png")


def test_crop_boxes_half_rule():
    boxes = np.array([[10, 10, 20, 20], [35, 0, 45, 10], [38, 0, 48, 10]], float)
    out, keep = crop_boxes(boxes, 0, 0, 40, 30)
    assert keep.tolist() == [True, True, False]  # 50 % inside is kept, 20 % is not
    np.testing.assert_allclose(out, [[10, 10, 20, 20], [35, 0, 40, 10]])
    out, keep = crop_boxes(boxes, 30, 0, 60, 30)
    np.testing.assert_allclose(out, [[5, 0, 15, 10], [8, 0, 18, 10]])


def test_measure_gsd_from_axis_aligned_cars():
    rng = np.random.default_rng(0)
    n = 200
    length, width = rng.normal(36, 2, n), rng.normal(15, 1, n)
    along_x = rng.random(n) < 0.5
    w, h = np.where(along_x, length, width), np.where(along_x, width, length)
    diagonal = np.column_stack([np.zeros(20), np.zeros(20), np.full(20, 30.0), np.full(20, 30.0)])  # squarish: unused
    boxes = np.vstack([np.column_stack([np.zeros(n), np.zeros(n), w, h]), diagonal])
    m = measure_gsd(boxes, 4.5, width_m=1.8)
    assert m["n_boxes"] == 220 and m["n_used"] == 200
    assert m["gsd_m"] == pytest.approx(4.5 / 36, rel=0.02)
    assert m["gsd_from_width_m"] == pytest.approx(1.8 / 15, rel=0.02)
    with pytest.raises(ValueError, match="cannot measure"):
        measure_gsd(diagonal, 4.5)


def test_real_kit_ais_folder():
    folder = real_dataset("vehicles-kit-ais")
    items = load_yolo_folder(folder)
    assert len(items) == 39
    assert items[0].class_names == ("car", "truck", "bus", "minibus", "cyclist")
    ids = np.concatenate([it.class_ids for it in items])
    assert np.bincount(ids, minlength=5).tolist() == [1587, 0, 22, 2, 0]
    assert {(it.width, it.height) for it in items} == {(1764, 430), (684, 547)}
    cars = np.concatenate([it.boxes[it.class_ids == 0] for it in items])
    assert 0.11 < measure_gsd(cars, 4.5)["gsd_m"] < 0.14
