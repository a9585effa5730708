"""Notebook maps: the keplergl widget carries the same datasets, layers and config as the HTML export."""

from __future__ import annotations

import json

import numpy as np
import pytest

import keplergl  # the dev extra


@pytest.fixture
def dets():
    import geopandas as gpd
    from shapely.geometry import Point, box

    rng = np.random.default_rng(0)
    pts = [Point(-122.4 + rng.random() * 0.2, 37.7 + rng.random() * 0.1) for _ in range(40)]
    shapes = [box(-122.3, 37.75, -122.29, 37.76), box(-122.35, 37.72, -122.34, 37.73)]
    return gpd.GeoDataFrame({
        "detector": "t", "detector_version": "1", "scene_id": "s",
        "class_name": ["car"] * 20 + ["bus"] * 20 + ["building"] * 2,
        "score": np.float32(0.9), "area_m2": [0.0] * 40 + [1000.0, 1000.0],
    }, geometry=pts + shapes, crs="EPSG:4326")


def test_widget_has_the_html_datasets_and_config(dets, tmp_path):
    import geodetect as gd
    from geodetect.viz.notebook import read_map_spec, to_keplergl

    html = gd.to_kepler(dets, tmp_path / "map.html", hexbins=7)
    spec = read_map_spec(html)
    m = to_keplergl(dets, hexbins=7)
    assert isinstance(m, keplergl.KeplerGl)
    assert m.config == spec["config"]  # layers, view, basemap, tooltips: the HTML's
    layer_ids = {layer["config"]["dataId"] for layer in m.config["config"]["visState"]["layers"]}
    assert layer_ids <= set(m.data) and set(m.data) == {d["id"] for d in spec["datasets"]}
    for d in spec["datasets"]:
        if d["format"] == "geojson":
            assert len(json.loads(m.data[d["id"]])["features"]) == len(d["data"]["features"])
        else:  # rows: a DataFrame with the HTML's fields and rows
            assert list(m.data[d["id"]].columns) == d["data"]["fields"]
            assert len(m.data[d["id"]]) == len(d["data"]["rows"])
