"""Safety: no network, no pickles, fuzzed inputs give a result or a GeodetectError, never a crash."""

import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import geodetect as gd
from geodetect.errors import GeodetectError
from geodetect.io.raster import open_scene


# --------------------------------------------------------------------------- network, at the syscall level
#
# Patching Python's ``socket`` module sees nothing of what GDAL (curl), TensorFlow or SedonaDB
# (Rust) would do with their own sockets. So the code runs in a child process under ``strace``,
# which records every connect/sendto/sendmsg system call whatever library makes it, inside a
# fresh network namespace (``unshare -rn``) when the kernel allows one, so that nothing can leave
# even if something tries. Any such call with an AF_INET/AF_INET6 address fails the test.

_NET_CALLS = "connect,sendto,sendmsg,sendmmsg"


def _guard_prefix() -> list[str]:
    import shutil
    import subprocess

    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed: the syscall-level network guard needs it (apt-get install strace)")
    probe = subprocess.run([strace, "-f", "-qq", "-e", "trace=none", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[:200]}")
    unshare = shutil.which("unshare")
    ns = []
    if unshare and subprocess.run([unshare, "-rn", "true"], capture_output=True).returncode == 0:
        ns = [unshare, "-rn"]
    return [strace, "-f", "-qq", "-e", f"trace={_NET_CALLS}", "-e", "signal=none"], ns


def _network_calls(code: str, tmp_path, timeout: int = 600, env=None) -> list[str]:
    """Run ``python -c code`` under the guard; the network system calls it made (must succeed otherwise)."""
    import subprocess
    import sys

    tracer, ns = _guard_prefix()
    log = tmp_path / "net.strace"
    proc = subprocess.run(tracer + ["-o", str(log)] + ns + [sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = log.read_text().splitlines() if log.exists() else []
    return [ln for ln in lines if "AF_INET" in ln]  # AF_INET and AF_INET6; AF_UNIX / AF_NETLINK are local


_PIPELINE = """
import geodetect as gd
from geodetect.simulate import make_scene
sim = make_scene({d!r} + "/s.tif", size=(512, 512), n_objects=10, seed=1)
dets = gd.detect(sim.path, "sea-lion-counter", progress=False)
for ext in ("parquet", "geojson", "fgb", "gpkg", "csv"):
    gd.write(dets, {d!r} + "/d." + ext)
gd.list_detectors(load=True)
gd.sql("SELECT COUNT(*) AS n FROM d", d=dets)          # SedonaDB: no telemetry ping
gd.quicklook(sim.path, dets, {d!r} + "/q.png")
print("ok", len(dets))
"""


def test_no_network_syscall_from_import_pipeline_writers_and_sql(tmp_path):
    calls = _network_calls(_PIPELINE.format(d=str(tmp_path)), tmp_path)
    assert calls == [], "network system calls:\n" + "\n".join(calls[:20])


def test_import_makes_no_network_syscall(tmp_path):
    calls = _network_calls("import geodetect, geodetect.plugins, geodetect.simulate, geodetect.runs, geodetect.viz",
                           tmp_path, timeout=300)
    assert calls == [], "\n".join(calls[:20])


def test_the_network_guard_sees_native_sockets(tmp_path):
    """The guard can fail: a connect() made from C (no Python socket object), and GDAL's own curl, are both seen."""
    code = (
        "import ctypes, socket, struct\n"
        "libc = ctypes.CDLL(None)\n"
        "fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)\n"
        "addr = struct.pack('<H', socket.AF_INET) + struct.pack('!H4s8x', 9, socket.inet_aton('192.0.2.1'))\n"
        "libc.connect(fd, addr, len(addr))\n"
        "import rasterio\n"
        "try:\n    rasterio.open('/vsicurl/http://192.0.2.7:9/x.tif')\nexcept Exception:\n    pass\n"
    )
    calls = _network_calls(code, tmp_path, timeout=120, env={"GDAL_HTTP_TIMEOUT": "2", "GDAL_HTTP_MAX_RETRY": "0"})
    assert any("192.0.2.1" in c for c in calls), calls
    assert any("192.0.2.7" in c for c in calls), calls  # GDAL's curl, a native socket Python never sees


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
