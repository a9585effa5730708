"""Counts per scene and class, the Kaggle submission CSV, count RMSE and point matching (exact numbers)."""

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from shapely.geometry import Point

import geodetect as gd
from geodetect.counts import SEA_LION_CLASSES, counts, kaggle_submission, write_kaggle_submission
from geodetect.errors import ConfigError
from geodetect.metrics.points import count_rmse, match_points

AM, SAM, AF, JUV, PUP = SEA_LION_CLASSES


def _dets(rows, crs=4326):
    """rows: (scene_id, class_name, x, y)."""
    return gpd.GeoDataFrame({"scene_id": [r[0] for r in rows], "class_name": [r[1] for r in rows]},
                            geometry=[Point(r[2], r[3]) for r in rows], crs=crs)


def test_counts_zero_filled_natural_order():
    dets = _dets([("10", PUP, 0, 0), ("2", PUP, 0, 0), ("2", AF, 0, 0), ("0", AM, 0, 0), ("2", PUP, 0, 0)])
    c = counts(dets)
    assert list(c.columns) == list(SEA_LION_CLASSES)
    assert list(c.index) == ["0", "2", "10"] and c.index.name == "scene_id"
    assert c.loc["2"].tolist() == [0, 0, 1, 0, 2]
    assert c.loc["0"].tolist() == [1, 0, 0, 0, 0]
    assert c.dtypes.eq("int64").all()


def test_counts_keep_scenes_without_detections():
    dets = _dets([("a", PUP, 0, 0)])
    assert list(counts(dets, scene_ids=["a", "b"]).index) == ["a", "b"]
    assert counts(dets, scene_ids=["b"]).loc["b"].sum() == 0
    dets.attrs["geodetect"] = [{"scene_id": "a"}, {"scene_id": "empty"}]  # as gd.detect leaves it
    assert counts(dets).loc["empty"].tolist() == [0] * 5
    empty = _dets([])
    assert counts(empty, scene_ids=["x"]).loc["x"].tolist() == [0] * 5


def test_counts_other_classes():
    dets = _dets([("a", "car", 0, 0), ("a", "bus", 0, 0)])
    with pytest.raises(ConfigError, match="pass classes="):
        counts(dets)
    assert counts(dets, classes=None).columns.tolist() == ["bus", "car"]
    assert counts(dets, classes=("car", "truck", "bus")).loc["a"].tolist() == [1, 0, 1]


def test_submission_csv_format(tmp_path):
    c = pd.DataFrame([[1, 0, 3, 0, 2], [0, 0, 0, 0, 0], [5, 1, 2, 3, 4]], columns=SEA_LION_CLASSES,
                     index=pd.Index(["10", "0", "2"], name="scene_id"))
    path = write_kaggle_submission(c, tmp_path / "sub" / "submission.csv")
    assert path.read_text() == (
        "test_id,adult_males,subadult_males,adult_females,juveniles,pups\n"
        "0,0,0,0,0,0\n"
        "2,5,1,2,3,4\n"
        "10,1,0,3,0,2\n"
    )
    with pytest.raises(ConfigError, match="lack"):
        write_kaggle_submission(c.drop(columns="pups"), tmp_path / "x.csv")


def test_submission_from_detections_file(tmp_path):
    dets = _dets([("1", PUP, -150, 60), ("1", AM, -150, 60), ("0", AF, -150, 60)])
    dets["detector"], dets["detector_version"], dets["score"], dets["area_m2"] = "sea-lion-counter", "1", 0.9, 0.0
    f = gd.write(dets, tmp_path / "dets.parquet")
    table = kaggle_submission(f, tmp_path / "s.csv", scene_ids=["0", "1", "2"])
    assert table.loc["2"].sum() == 0
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[1:] == ["0,0,0,1,0,0", "1,1,0,0,0,1", "2,0,0,0,0,0"]


TRUE = pd.DataFrame([[2, 0, 5, 1, 3], [0, 1, 4, 0, 0], [1, 1, 0, 2, 6]], columns=SEA_LION_CLASSES,
                    index=["0", "1", "2"])
PRED = pd.DataFrame([[2, 1, 4, 1, 3], [1, 1, 4, 0, 2], [1, 0, 3, 2, 6]], columns=SEA_LION_CLASSES,
                    index=["0", "1", "2"])


def test_count_rmse_exact():
    # differences pred - true per scene: [0,1,-1,0,0], [1,0,0,0,2], [0,-1,3,0,0]
    # squared sums per class: 1, 2, 10, 0, 4 over 3 scenes
    want = [math.sqrt(1 / 3), math.sqrt(2 / 3), math.sqrt(10 / 3), 0.0, math.sqrt(4 / 3)]
    mean, per = count_rmse(PRED, TRUE, per_class=True)
    assert per.tolist() == pytest.approx(want, abs=1e-12)
    assert mean == pytest.approx(sum(want) / 5, abs=1e-12)
    assert mean == pytest.approx(0.874857849, abs=1e-9)
    assert count_rmse(TRUE, TRUE) == 0.0


def test_count_rmse_missing_scene_is_zero_and_ids_are_text():
    pred = PRED.drop(index="2")
    pred.index = [0, 1]  # integers compare with the truth's "0", "1"
    # scene 2 predicted as zeros: diffs [-1,-1,0,-2,-6]; squared sums 2, 2, 1, 4, 40
    want = [math.sqrt(2 / 3), math.sqrt(2 / 3), math.sqrt(1 / 3), math.sqrt(4 / 3), math.sqrt(40 / 3)]
    assert count_rmse(pred, TRUE) == pytest.approx(sum(want) / 5, abs=1e-12)
    with pytest.raises(ConfigError, match="not in the truth"):
        count_rmse(PRED.rename(index={"2": "7"}), TRUE)


def _pts(rows, crs="EPSG:32606", scene=None):
    x0, y0 = 500_000.0, 6_650_000.0
    g = gpd.GeoDataFrame({"class_name": [r[0] for r in rows]},
                         geometry=[Point(x0 + r[1], y0 + r[2]) for r in rows], crs="EPSG:32606")
    if scene is not None:
        g["scene_id"] = scene
    return g.to_crs(crs)


TRUTH_PTS = [(AF, 0, 0), (PUP, 10, 0), (AM, 20, 0), (JUV, 30, 0)]
PRED_PTS = [(AF, 0.3, 0), (AF, 10, 0.4), (AM, 20.6, 0), (AF, 0.1, 0.45), (PUP, 50, 0)]


@pytest.mark.parametrize("crs", ["EPSG:32606", "EPSG:4326"])
def test_match_points_exact(crs):
    m = match_points(_pts(PRED_PTS, crs), _pts(TRUTH_PTS, crs), 0.5, classes=SEA_LION_CLASSES)
    # P0-T0 (0.30 m) and P1-T1 (0.40 m, wrong class) match; P3 is 0.46 m from T0 but P0 is closer;
    # P2 is 0.6 m from T2 (> 0.5); P4 is far from everything
    assert (m.tp, m.fp, m.fn) == (2, 3, 2)
    assert m.pred_match.tolist() == [0, 1, -1, -1, -1]
    assert m.distances_m[:2] == pytest.approx([0.3, 0.4], abs=1e-4)
    assert (m.precision, m.recall) == (pytest.approx(0.4), pytest.approx(0.5))
    assert m.f1 == pytest.approx(2 * 0.4 * 0.5 / 0.9)
    pc = m.per_class
    assert pc.loc[AF, ["n_true", "n_pred", "tp", "fp", "fn"]].tolist() == [1, 3, 1, 2, 0]
    assert pc.loc[AF, ["precision", "recall", "f1"]].tolist() == pytest.approx([1 / 3, 1.0, 0.5])
    assert pc.loc[PUP, ["tp", "fp", "fn", "precision", "recall", "f1"]].tolist() == [0, 1, 1, 0, 0, 0]
    assert pc.loc[JUV, ["n_pred", "fn", "precision", "recall", "f1"]].tolist() == [0, 1, 0, 0, 0]
    assert np.isnan(pc.loc[SAM, ["precision", "recall", "f1"]].astype(float)).all()
    assert pc.loc["macro", ["tp", "fp", "fn"]].tolist() == [1, 4, 3]
    conf = m.confusion
    assert conf.loc[AF, AF] == 1 and conf.loc[PUP, AF] == 1
    assert conf.loc["(none)", AM] == 1 and conf.loc["(none)", AF] == 1 and conf.loc["(none)", PUP] == 1
    assert conf.loc[AM, "(none)"] == 1 and conf.loc[JUV, "(none)"] == 1
    assert int(conf.to_numpy().sum()) == 2 + 3 + 2


def test_match_points_within_scenes():
    truth = pd.concat([_pts(TRUTH_PTS[:1], scene="a"), _pts(TRUTH_PTS[:1], scene="b")], ignore_index=True)
    pred = _pts([(AF, 0.1, 0)], scene="b")
    m = match_points(pred, truth, 0.5)
    assert (m.tp, m.fp, m.fn) == (1, 0, 1) and m.pred_match.tolist() == [1]
    with pytest.raises(ConfigError, match="radius"):
        match_points(pred, truth, 0)
