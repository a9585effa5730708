"""box_metrics: hand-made cases with exact numbers, pixel arrays and GeoDataFrames."""

import math

import numpy as np
import pytest

from geodetect.errors import ConfigError
from geodetect.metrics.boxes import average_precision, box_metrics

CLASSES = ("car", "truck", "bus")
TRUTH = (np.array([[0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 40, 30]], float), np.array([0, 0, 1]))


def row(m, name):
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.loc[name].to_dict().items()}


def test_perfect():
    pred = (TRUTH[0], TRUTH[1], np.array([0.9, 0.8, 0.7]))
    m = box_metrics(pred, TRUTH, CLASSES)
    for c in ("car", "truck"):
        assert m.loc[c, "precision"] == m.loc[c, "recall"] == m.loc[c, "f1"] == m.loc[c, "ap"] == 1.0
    assert row(m, "bus") == {"n_true": 0, "n_pred": 0, "tp": 0, "fp": 0, "fn": 0, "precision": None,
                             "recall": None, "f1": None, "ap": None}
    assert m.loc["macro", "f1"] == 1.0 and m.loc["macro", "tp"] == 3  # NaN classes left out of the mean


def test_one_false_positive_ranked_first_and_last():
    boxes = np.vstack([TRUTH[0], [[100, 100, 110, 110]]])
    ids = np.array([0, 0, 1, 0])
    # the false positive scores highest: precision drops at the start of the ranking
    m = box_metrics((boxes, ids, np.array([0.8, 0.7, 0.6, 0.9])), TRUTH, CLASSES)
    car = row(m, "car")
    assert (car["tp"], car["fp"], car["fn"]) == (2, 1, 0)
    assert car["precision"] == pytest.approx(2 / 3) and car["recall"] == 1.0
    assert car["f1"] == pytest.approx(0.8)
    assert car["ap"] == pytest.approx(2 / 3)  # P at R=0.5 is 1/2, at R=1 is 2/3; envelope 2/3 everywhere
    # lowest: the ranking is perfect up to full recall, AP = 1
    m = box_metrics((boxes, ids, np.array([0.8, 0.7, 0.6, 0.1])), TRUTH, CLASSES)
    assert m.loc["car", "ap"] == 1.0 and m.loc["car", "precision"] == pytest.approx(2 / 3)


def test_one_false_negative():
    m = box_metrics((TRUTH[0][[0, 2]], np.array([0, 1]), np.array([0.9, 0.9])), TRUTH, CLASSES)
    car = row(m, "car")
    assert (car["tp"], car["fp"], car["fn"]) == (1, 0, 1)
    assert car["precision"] == 1.0 and car["recall"] == 0.5 and car["f1"] == pytest.approx(2 / 3)
    assert car["ap"] == 0.5
    assert m.loc["macro", "recall"] == pytest.approx(0.75)  # mean of car 0.5 and truck 1.0


def test_wrong_class_is_a_false_positive_and_a_false_negative():
    pred = (TRUTH[0], np.array([0, 2, 1]), np.array([0.9, 0.8, 0.7]))  # second car called a bus
    m = box_metrics(pred, TRUTH, CLASSES)
    assert (m.loc["car", "tp"], m.loc["car", "fn"]) == (1, 1)
    bus = row(m, "bus")
    assert (bus["n_pred"], bus["fp"], bus["precision"], bus["recall"], bus["ap"]) == (1, 1, 0.0, None, None)
    assert bus["f1"] == 0.0
    assert m.loc["macro", "f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


@pytest.mark.parametrize("ymax, matched", [(5.0, True), (4.99, False), (5.01, True), (4.0, False)])
def test_iou_threshold_boundary(ymax, matched):
    """Truth 10x10, prediction 10 x ymax inside it: IoU = ymax / 10; a match needs IoU >= 0.5."""
    truth = (np.array([[0, 0, 10, 10]], float), np.array([0]))
    pred = (np.array([[0, 0, 10, ymax]], float), np.array([0]), np.array([0.5]))
    m = box_metrics(pred, truth, ("car",))
    assert m.loc["car", "tp"] == int(matched)
    assert m.loc["car", "f1"] == (1.0 if matched else 0.0)
    assert box_metrics(pred, truth, ("car",), iou=0.3).loc["car", "tp"] == int(ymax >= 3)


def test_greedy_by_score_and_one_match_per_truth():
    truth = (np.array([[0, 0, 10, 10]], float), np.array([0]))
    # two predictions on one car: the higher-scoring one is the match, the other a duplicate (FP)
    pred = (np.array([[0, 0, 10, 8], [0, 0, 10, 10]], float), np.array([0, 0]), np.array([0.9, 0.6]))
    m = box_metrics(pred, truth, ("car",))
    assert (m.loc["car", "tp"], m.loc["car", "fp"]) == (1, 1)
    assert m.loc["car", "ap"] == 1.0
    # a lower-scoring prediction takes the next-best unmatched truth
    truth2 = (np.array([[0, 0, 10, 10], [0, 2, 10, 12]], float), np.array([0, 0]))
    m = box_metrics(pred, truth2, ("car",))
    assert (m.loc["car", "tp"], m.loc["car", "fp"]) == (2, 0)


def test_images_and_names_and_empty():
    tb = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], float)
    truth = (tb, np.array(["car", "car"]), np.array(["a", "b"]))
    pred = (tb[:1], np.array(["car"]), np.array([0.9]), np.array(["b"]))
    m = box_metrics(pred, truth, ("car",))
    assert (m.loc["car", "tp"], m.loc["car", "fn"]) == (1, 1)  # matched within image b only
    empty = box_metrics((np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)), TRUTH, CLASSES)
    assert empty.loc["car", "precision"] == 0.0 and empty.loc["car", "recall"] == 0.0
    assert empty.loc["car", "ap"] == 0.0
    with pytest.raises(ConfigError, match="image ids for both"):
        box_metrics((tb, ["car", "car"], [1, 1], ["a", "b"]), (tb, ["car", "car"]), ("car",))


def test_average_precision_voc_all_point():
    # P/R: (1, 1/3), (1/2, 1/3), (2/3, 2/3), (1/2, 2/3); one truth never found
    assert average_precision(np.array([1, 0, 1, 0]), 3) == pytest.approx(1 / 3 * 1 + 1 / 3 * 2 / 3)
    assert math.isnan(average_precision(np.array([1]), 0))


def test_geodataframes_in_metres_per_scene():
    import geopandas as gpd
    import shapely
    from pyproj import Transformer

    # 4.5 x 1.8 m cars in UTM 18N, given in lon/lat
    to_ll = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)

    def boxes(xy):
        polys = [shapely.box(x, y, x + 4.5, y + 1.8) for x, y in xy]
        return [shapely.transform(p, lambda c: np.column_stack(to_ll.transform(c[:, 0], c[:, 1]))) for p in polys]

    truth = gpd.GeoDataFrame({"class_name": ["car", "car", "bus"], "scene_id": ["s1", "s2", "s1"]},
                             geometry=boxes([(320000, 4300000), (320050, 4300000), (320100, 4300000)]), crs=4326)
    # first: shifted 1.0 m along the car: IoU = 3.5 / 5.5 = 0.636 -> match; second: right place, wrong scene
    pred = gpd.GeoDataFrame({"class_name": ["car", "car"], "score": [0.9, 0.8], "scene_id": ["s1", "s1"]},
                            geometry=boxes([(320001, 4300000), (320050, 4300000)]), crs=4326)
    m = box_metrics(pred, truth, CLASSES)
    assert (m.loc["car", "tp"], m.loc["car", "fp"], m.loc["car", "fn"]) == (1, 1, 1)
    assert m.loc["bus", "recall"] == 0.0
    # shifted 1.6 m: IoU = 2.9 / 6.1 = 0.475 -> no match
    pred2 = pred.iloc[:1].copy()
    pred2["geometry"] = boxes([(320001.6, 4300000)])
    assert box_metrics(pred2, truth, CLASSES).loc["car", "tp"] == 0
    with pytest.raises(ConfigError, match="different CRSs"):
        box_metrics(pred.to_crs(32618), truth, CLASSES)
    with pytest.raises(ConfigError, match="both as pixel arrays"):
        box_metrics(pred, TRUTH, CLASSES)
