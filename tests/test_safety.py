"""Safety: no network, no pickles, fuzzed inputs give a result or a GeodetectError, never a crash."""

import os
import socket
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geodetect as gd
from geodetect.errors import GeodetectError
from geodetect.io.raster import open_scene


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_no_socket_opened_by_the_pipeline(no_network, tmp_path):
    from geodetect.simulate import make_scene

    sim = make_scene(tmp_path / "s.tif", size=(512, 512), n_objects=10, seed=1)
    dets = gd.detect(sim.path, "sea-lion-counter", progress=False)
    for ext in ("parquet", "geojson", "fgb", "gpkg", "csv"):
        gd.write(dets, tmp_path / f"d.{ext}")
    gd.list_detectors(load=True)


def test_import_opens_no_socket(tmp_path):
    import subprocess
    import sys

    code = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('network access attempted')\n"
        "socket.socket.connect = refuse; socket.create_connection = refuse; socket.getaddrinfo = refuse\n"
        "import geodetect, geodetect.plugins, geodetect.simulate, geodetect.runs\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _tiny_tiff(tmp_path) -> bytes:
    import rasterio
    from rasterio.transform import from_origin

    p = tmp_path / "seed.tif"
    with rasterio.open(p, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint8", crs="EPSG:32610",
                       transform=from_origin(500000, 4200000, 0.1, 0.1)) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 32, 32), dtype=np.uint8))
    return p.read_bytes()


FUZZ_EXAMPLES = int(os.environ.get("GEODETECT_FUZZ_EXAMPLES", "60"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_geotiff_headers_give_a_result_or_a_geodetect_error(tmp_path, data):
    """Mutate bytes of a real GeoTIFF's header and IFD; the opener and reader must never crash."""
    raw = bytearray(_tiny_tiff(tmp_path))
    # the header (8 bytes) and the IFD area, where tags, offsets and counts live
    ifd = struct.unpack("<I", bytes(raw[4:8]))[0]
    region = list(range(0, 8)) + list(range(ifd, min(len(raw), ifd + 400)))
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        i = data.draw(st.sampled_from(region))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = tmp_path / "fuzz.tif"
    path.write_bytes(bytes(raw))
    try:
        with open_scene(path, bands=(1, 2, 3)) as scene:
            scene.read(0, 0, min(16, scene.width), min(16, scene.height))
    except GeodetectError:
        pass


_GEOJSON_SEED = {
    "type": "FeatureCollection",
    "features": [
        {"type": "Feature", "properties": {"fips": "01001", "name": "A"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}},
        {"type": "Feature", "properties": {"fips": "01003", "name": "B"},
         "geometry": {"type": "MultiPolygon", "coordinates": [[[[179, 50], [180, 50], [180, 51], [179, 51], [179, 50]]],
                                                                 [[[-180, 50], [-179, 50], [-179, 51], [-180, 51], [-180, 50]]]]}},
    ],
}

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_geojson_regions_give_a_result_or_a_geodetect_error(tmp_path, data):
    """Mutate a GeoJSON region file (structure, coordinates, ids, raw bytes); only a result or a GeodetectError."""
    import copy
    import json

    from geodetect.regions import load_regions

    doc = copy.deepcopy(_GEOJSON_SEED)
    for _ in range(data.draw(st.integers(1, 4))):
        if not doc["features"]:
            break
        feat = doc["features"][data.draw(st.integers(0, len(doc["features"]) - 1))]
        geom = feat.get("geometry")
        props = feat.get("properties")
        where = data.draw(st.sampled_from(["geometry", "type", "coords", "id", "props", "drop"]))
        if where == "geometry":
            feat["geometry"] = data.draw(_json_values)
        elif where == "type" and isinstance(geom, dict):
            geom["type"] = data.draw(st.sampled_from(["Point", "LineString", "Polygon", "Nope", 3]))
        elif where == "coords" and isinstance(geom, dict):
            geom["coordinates"] = data.draw(_json_values)
        elif where == "id" and isinstance(props, dict):
            props["fips"] = data.draw(_json_values)
        elif where == "props":
            feat["properties"] = data.draw(_json_values)
        elif where == "drop":
            doc["features"].pop()
    text = json.dumps(doc, allow_nan=True)
    if data.draw(st.booleans()):
        cut = data.draw(st.integers(0, len(text)))
        text = text[:cut]
    path = tmp_path / "regions.geojson"
    path.write_text(text)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            load_regions(str(path), "fips", crs="EPSG:4326")
        except GeodetectError:
            pass
