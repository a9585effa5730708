"""xView label loader and chip cutter, on tiny xView-format files made here."""

import json

import numpy as np
import pytest

from geodetect.errors import ConfigError, GeodetectError, RasterReadError
from geodetect.train.xview import XViewImageMissingError, XViewLabelError, cut_chips, read_xview_labels


def _feature(image_id, type_id, bounds):
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]},
        "properties": {"bounds_imcoords": ",".join(str(v) for v in bounds), "type_id": type_id,
                       "image_id": image_id, "feature_id": 1, "cat_id": 1},
    }


@pytest.fixture
def xview(tmp_path):
    """A 100 x 80 RGB image '104.tif' whose pixel value encodes its column, and its labels."""
    import rasterio
    from rasterio.transform import from_origin

    h, w = 80, 100
    img = np.zeros((3, h, w), np.uint8)
    img[0] = np.arange(w)[None, :]
    img[1] = np.arange(h)[:, None]
    img[2] = 7
    path = tmp_path / "104.tif"
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:32636",
                       transform=from_origin(500000, 3500000, 0.3, 0.3)) as dst:
        dst.write(img)
    feats = [
        _feature("104.tif", 18, (10, 10, 20, 16)),   # car inside the first chip
        _feature("104.tif", 23, (36, 5, 50, 9)),     # truck across the first chips' border at x=40..60
        _feature("104.tif", 19, (55, 50, 70, 56)),   # bus
        _feature("104.tif", 73, (1, 1, 5, 5)),       # building: not a vehicle class
        _feature("104.tif", 73, (60, 60, 70, 70)),
        _feature("104.tif", 11, (3, 3, 8, 8)),       # fixed-wing aircraft
        _feature("104.tif", 18, (30, 30, 30, 35)),   # degenerate: no width
        _feature("200.tif", 18, (0, 0, 5, 5)),       # another image
    ]
    labels = tmp_path / "xView_train.geojson"
    labels.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path, labels


def test_read_labels_keeps_vehicles_counts_the_rest(xview):
    _, labels = xview
    df = read_xview_labels(labels)
    assert list(df.columns) == ["image_id", "type_id", "class_name", "xmin", "ymin", "xmax", "ymax"]
    assert df.class_name.tolist() == ["car", "truck", "bus", "car"]
    assert df.type_id.tolist() == [18, 23, 19, 18]
    assert df.iloc[1][["xmin", "ymin", "xmax", "ymax"]].tolist() == [36, 5, 50, 9]
    assert df.attrs["ignored_type_ids"] == {11: 1, 73: 2} and df.attrs["n_ignored"] == 3
    assert df.attrs["n_degenerate"] == 1
    everything = read_xview_labels(labels, classes=None)
    assert len(everything) == 7 and set(everything.class_name) == {"18", "23", "19", "73", "11"}


def test_chips_boxes_clipped_and_half_rule(xview):
    image, labels = xview
    df = read_xview_labels(labels)
    chips = list(cut_chips(image, df, 60, 20, with_offsets=True))
    offsets = [c[3] for c in chips]
    assert offsets == [(0, 0), (40, 0), (0, 20), (40, 20)]  # edge chips shifted inside the image
    chip, boxes, ids, _ = chips[0]
    assert chip.shape == (60, 60, 3) and chip.dtype == np.uint8
    assert chip[0, :, 0].tolist() == list(range(60))  # the right pixels
    # car whole; truck 36..50 has 14 of 14 px inside x < 60: whole
    assert ids.tolist() == [18, 23]
    np.testing.assert_array_equal(boxes, [[10, 10, 20, 16], [36, 5, 50, 9]])
    # chip at x=40: the truck (36..50) is cut at x=40 -> 10/14 = 71 % inside: kept, clipped; the car is
    # out, the bus whole
    chip, boxes, ids, _ = chips[1]
    assert chip[0, 0, 0] == 40
    assert ids.tolist() == [23, 19]
    np.testing.assert_array_equal(boxes, [[0, 5, 10, 9], [15, 50, 30, 56]])
    # chip (0, 20): the bus 55..70 x 50..56 is cut at x=60 -> 5/15 = 33 % inside: dropped
    assert chips[2][2].tolist() == []
    # chip (40, 20): the bus whole, in chip coordinates
    np.testing.assert_array_equal(chips[3][1], [[15, 30, 30, 36]])
    assert chips[3][2].tolist() == [19]
    # a stricter rule drops the cut truck
    strict = list(cut_chips(image, df, 60, 20, min_visible=0.8))
    assert strict[1][2].tolist() == [19]


def test_small_image_padded(xview):
    image, labels = xview
    (chip, boxes, ids), = list(cut_chips(image, read_xview_labels(labels), 128, 0))
    assert chip.shape == (128, 128, 3) and chip[:, 100:].max() == 0 and chip[79, 99, 0] == 99
    assert ids.tolist() == [18, 23, 19]


def test_errors(xview, tmp_path):
    image, labels = xview
    df = read_xview_labels(labels)
    with pytest.raises(XViewImageMissingError, match="105.tif") as e:
        next(cut_chips(tmp_path / "105.tif", df, 64, 8))
    assert isinstance(e.value, GeodetectError) and isinstance(e.value, FileNotFoundError)
    assert isinstance(e.value, RasterReadError)
    with pytest.raises(ConfigError, match="overlap"):
        next(cut_chips(image, df, 64, 64))
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [_feature("1.tif", 18, (1, 2, 3))]}))
    with pytest.raises(XViewLabelError, match="feature 0: bounds_imcoords"):
        read_xview_labels(bad)
    bad.write_text("{not json")
    with pytest.raises(XViewLabelError, match="not valid JSON"):
        read_xview_labels(bad)
    bad.write_text(json.dumps({"type": "Feature"}))
    with pytest.raises(XViewLabelError, match="FeatureCollection"):
        read_xview_labels(bad)
