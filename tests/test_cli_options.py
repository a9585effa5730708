"""Documented CLI options that had no test: --bounds, --crs-out, --batch-size, -q, counts,
evaluate --reference / --grouping. Run in-process through ``geodetect.cli.main`` with the tiny
test detectors (registered for the duration of each test), so they stay fast."""

from __future__ import annotations

import json
import warnings

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer
from rasterio.transform import from_origin

from detectors import BrightBoxes, BrightPoints, MeanLabel
from geodetect.cli import main
from geodetect.plugins import DetectorSpec, register_detector
from geodetect.plugins.registry import unregister_detector

UTM = "EPSG:32610"
T = from_origin(500000, 4200000, 1.0, 1.0)


class BatchSpy(BrightPoints):
    spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "test-batch-spy"})
    sizes: list = []

    def predict(self, tiles):
        BatchSpy.sizes.append(len(tiles))
        return super().predict(tiles)


@pytest.fixture(autouse=True)
def registered():
    classes = (BrightPoints, BrightBoxes, MeanLabel, BatchSpy)
    for c in classes:
        register_detector(c, replace=True)
    yield
    for c in classes:
        unregister_detector(c.spec.name)


def _tif(path, img, transform=T, crs=UTM):
    profile = dict(driver="GTiff", width=img.shape[1], height=img.shape[0], count=1, dtype=img.dtype)
    if transform is not None:
        profile["transform"] = transform
    if crs is not None:
        profile["crs"] = crs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(img, 1)
    return str(path)


def _spots(spots=((20, 30), (100, 140)), size=(200, 200)):
    img = np.full(size, 20, np.uint8)
    for c, r in spots:
        img[r - 2:r + 2, c - 2:c + 2] = 250
    return img


def _cli(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_bounds_and_crs_place_an_unreferenced_image(tmp_path, capsys):
    """--bounds LEFT BOTTOM RIGHT TOP in --crs units: a 200 x 200 image over 400 x 400 m is 2 m pixels."""
    p = _tif(tmp_path / "raw.tif", _spots(), transform=None, crs=None)
    out = tmp_path / "d.parquet"
    rc, _, err = _cli(["detect", p, "-d", "test-bright-points", "--out", out, "--no-progress", "--crs", UTM,
                       "--bounds", 600000, 4100000, 600400, 4100400, "--crs-out", UTM], capsys)
    assert rc == 0, err
    d = gpd.read_parquet(out).sort_values("score", kind="mergesort")
    xy = sorted(zip(d.geometry.x.round(6), d.geometry.y.round(6)))
    # spot centres at pixel (20, 30) and (100, 140) -> x = 600000 + 2 * col, y = 4100400 - 2 * row
    assert xy == [(600040.0, 4100340.0), (600200.0, 4100120.0)]


def test_crs_out_gives_the_same_places_in_another_crs(tmp_path, capsys):
    p = _tif(tmp_path / "s.tif", _spots())
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    assert _cli(["detect", p, "-d", "test-bright-points", "--out", a, "--no-progress"], capsys)[0] == 0
    assert _cli(["detect", p, "-d", "test-bright-points", "--out", b, "--no-progress", "--crs-out", "EPSG:3857"],
                capsys)[0] == 0
    ll, merc = gpd.read_parquet(a), gpd.read_parquet(b)
    assert ll.crs.to_epsg() == 4326 and merc.crs.to_epsg() == 3857
    x, y = Transformer.from_crs(4326, 3857, always_xy=True).transform(ll.geometry.x.to_numpy(), ll.geometry.y.to_numpy())
    np.testing.assert_allclose(merc.geometry.x, x, atol=1e-6)
    np.testing.assert_allclose(merc.geometry.y, y, atol=1e-6)


def test_batch_size_sets_tiles_per_call_and_not_the_answer(tmp_path, capsys):
    p = _tif(tmp_path / "s.tif", _spots(spots=((20, 30), (100, 140), (180, 60))))
    outs = {}
    for n in (1, 3):
        BatchSpy.sizes = []
        outs[n] = tmp_path / f"b{n}.parquet"
        rc, _, err = _cli(["detect", p, "-d", "test-batch-spy", "--out", outs[n], "--no-progress",
                           "--batch-size", n], capsys)
        assert rc == 0, err
        assert max(BatchSpy.sizes) == n and sum(BatchSpy.sizes) == 16  # 4 x 4 tiles of 64 px, overlap 16
    one, three = (gpd.read_parquet(outs[n]).sort_values(["score"]) for n in (1, 3))
    assert len(one) == 3 and one.geometry.geom_equals_exact(three.geometry, 1e-9).all()


def test_quiet_prints_nothing_but_errors(tmp_path, capsys):
    p = _tif(tmp_path / "s.tif", _spots())
    rc, out, err = _cli(["detect", p, "-d", "test-bright-points", "--out", tmp_path / "d.parquet"], capsys)
    assert rc == 0 and "2 detections from" in err and "wrote 2 detections" in err
    rc, out, err = _cli(["detect", p, "-d", "test-bright-points", "--out", tmp_path / "e.parquet", "-q"], capsys)
    assert rc == 0 and err == "" and out == ""
    assert len(gpd.read_parquet(tmp_path / "e.parquet")) == 2
    rc, _, err = _cli(["detect", p, "-d", "test-bright-points", "--out", tmp_path / "f.parquet", "-q",
                       "--bands", "2"], capsys)
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1  # errors still show


def test_counts_writes_the_kaggle_submission(tmp_path, capsys):
    dets = gpd.GeoDataFrame({"scene_id": ["3", "3", "10", "3"],
                             "class_name": ["pups", "adult_males", "pups", "pups"]},
                            geometry=[shapely.Point(0, 0)] * 4, crs="EPSG:4326")
    dets.to_parquet(tmp_path / "d.parquet")
    out = tmp_path / "sub.csv"
    rc, _, err = _cli(["counts", tmp_path / "d.parquet", "--out", out], capsys)
    assert rc == 0 and "wrote 2 scenes" in err
    assert out.read_text().splitlines() == [
        "test_id,adult_males,subadult_males,adult_females,juveniles,pups", "3,1,0,0,0,2", "10,0,0,0,0,1"]


def test_evaluate_reference_scores_against_another_detector(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    img = np.full((128, 128), 20, np.uint8)
    img[10:20, 30:44] = 250
    img[70:90, 60:70] = 250
    _tif(data / "a.tif", img)
    js = tmp_path / "m.json"
    rc, out, err = _cli(["evaluate", "test-bright-boxes", "--data", data, "--reference", "test-bright-boxes",
                         "--json", js], capsys)
    assert rc == 0, err
    assert "test-bright-boxes vs test-bright-boxes" in out  # no _truth file was needed
    m = json.loads(js.read_text())
    assert m["f1"] == 1.0 and m["precision"] == 1.0 and m["recall"] == 1.0


def test_evaluate_grouping_scores_grouped_classes(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    img = np.full((128, 128), 20, np.uint8)
    img[:, 64:] = 250  # left tiles dark, right tiles bright
    _tif(data / "a.tif", img)
    # the truth calls every tile "bright": half the tiles are wrong by class, all right once grouped
    gpd.GeoDataFrame({"class_name": ["bright"]}, geometry=[shapely.box(500000, 4199872, 500128, 4200000)],
                     crs=UTM).to_file(data / "a_truth.geojson")
    monkeypatch.setattr(MeanLabel, "groupings", {"one": {"dark": "any", "bright": "any"}}, raising=False)
    rc, out, err = _cli(["evaluate", "test-mean-label", "--data", data, "--json", tmp_path / "plain.json"], capsys)
    assert rc == 0, err
    assert json.loads((tmp_path / "plain.json").read_text())["accuracy"] == 0.5
    rc, out, err = _cli(["evaluate", "test-mean-label", "--data", data, "--grouping", "one",
                         "--json", tmp_path / "grouped.json"], capsys)
    assert rc == 0, err
    g = json.loads((tmp_path / "grouped.json").read_text())
    assert g["accuracy"] == 1.0 and g["grouping"] == "one" and g["scored_tiles"] == 4
