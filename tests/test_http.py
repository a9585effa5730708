"""COGs over HTTP: Debian's nginx, started here on 127.0.0.1, serves a COG of the real Landsat scene.

Skips when nginx is not installed (``scripts/install_nginx.sh`` installs it) unless
``GEODETECT_REQUIRE_NGINX=1`` (CI), which makes a missing nginx a failure.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

import geodetect as gd
from geodetect.errors import RasterReadError

REQUIRE_NGINX = os.environ.get("GEODETECT_REQUIRE_NGINX", "") not in ("", "0")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """An nginx of our own (no daemon, no master process, everything under ``root``) on 127.0.0.1."""

    def __init__(self, binary: str, root: Path):
        self.root = root / "www"
        self.root.mkdir(parents=True)
        self.port = _free_port()
        self.log = root / "access.log"
        conf = root / "nginx.conf"
        tmp = root / "tmp"
        tmp.mkdir()
        conf.write_text(f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 64; }}
http {{
    log_format bytes '$status $body_bytes_sent $request_method $request_uri';
    access_log {self.log} bytes;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ image/tiff tif; application/json json; }}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
        location / {{ }}
    }}
}}
""")
        self.proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(root)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx did not start: {self.proc.stderr.read().decode()[-500:]}")
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def bytes_sent(self, name: str) -> tuple[int, list[int]]:
        """Total body bytes sent for GETs of ``/name`` and their statuses, from the access log."""
        total, statuses = 0, []
        for line in self.log.read_text().splitlines():
            status, sent, method, uri = line.split()
            if uri == f"/{name}" and method == "GET":
                total += int(sent)
                statuses.append(int(status))
        return total, statuses

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        reason = "nginx is not installed (bash scripts/install_nginx.sh installs Debian's nginx-light)"
        if REQUIRE_NGINX:
            pytest.fail(f"GEODETECT_REQUIRE_NGINX is set but {reason}", pytrace=False)
        pytest.skip(reason)
    server = Nginx(binary, tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def landsat_cog(nginx):
    """The real Landsat scene (SF Bay, 2181 x 1917, 3 bands) as a COG served by nginx, and a local window of it."""
    import rasterio

    from geodetect_plugins.water_segmenter.data import landsat_path

    src = landsat_path()
    with rasterio.open(src) as ds:
        prof = ds.profile.copy()
        prof.update(driver="COG", blocksize=256, compress="deflate")
        for k in ("blockxsize", "blockysize", "tiled", "interleave"):
            prof.pop(k, None)
        with rasterio.open(nginx.root / "landsat.tif", "w", **prof) as out:
            out.write(ds.read())
    return nginx.root / "landsat.tif"


def _same(a, b):
    assert len(a) == len(b) > 0
    key = lambda df: sorted(g.wkb for g in df.geometry)  # noqa: E731
    assert key(a) == key(b)  # identical geometries, to the bit


def test_cog_over_http_gives_the_local_results(nginx, landsat_cog):
    url = f"{nginx.url}/landsat.tif"
    kw = dict(detector="water-expert-optical", bands="nir=1,green=3", progress=False)
    remote = gd.detect(url, **kw)
    local = gd.detect(str(landsat_cog), **kw)
    _same(remote, local)
    assert set(remote.scene_id) == {"landsat"}
    sent, statuses = nginx.bytes_sent("landsat.tif")
    assert statuses and all(s == 206 for s in statuses)  # range requests only, never the whole file at once
    assert sent < 2.5 * landsat_cog.stat().st_size  # (each tile once, plus overlap re-reads GDAL's cache misses)


def test_small_window_fetches_only_its_tiles(nginx, landsat_cog):
    import rasterio
    from rasterio.windows import Window

    with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR", CPL_VSIL_CURL_CACHE_SIZE=1 << 20):
        with rasterio.open(f"/vsicurl/{nginx.url}/landsat.tif?w") as ds:  # a new URL: GDAL's cache is cold
            ds.read(window=Window(1024, 768, 256, 256))
    sent, _ = nginx.bytes_sent("landsat.tif?w")
    size = landsat_cog.stat().st_size
    assert 0 < sent < size / 4, (sent, size)  # one 256 x 256 tile and the header, not the scene


def test_stac_item_served_over_http(nginx, landsat_cog):
    """An item URL with relative asset hrefs: the assets are read over HTTP too."""
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "landsat-http",
        "stac_extensions": ["https://stac-extensions.github.io/eo/v1.1.0/schema.json"],
        "geometry": None, "properties": {"datetime": "2001-06-15T18:30:00Z"}, "links": [],
        "assets": {"data": {"href": "landsat.tif", "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                            "roles": ["data"], "eo:bands": [{"name": "B4", "common_name": "nir"},
                                                            {"name": "B3", "common_name": "red"},
                                                            {"name": "B2", "common_name": "green"}]}},
    }
    (nginx.root / "item.json").write_text(json.dumps(item))
    dets = gd.detect(f"{nginx.url}/item.json", detector="water-expert-optical", progress=False)
    local = gd.detect(str(landsat_cog), detector="water-expert-optical", bands="nir=1,green=3", progress=False)
    _same(dets, local)
    assert set(dets.scene_id) == {"landsat-http"}


@pytest.mark.slow
def test_spark_detect_on_urls_equals_gd_detect(spark, nginx, landsat_cog):
    """gds.detect on a COG URL and on a STAC item URL (assets over HTTP): the local file's detections, the scene split
    in blocks over the tasks, and the workers' GDAL reads are range requests only."""
    gds = pytest.importorskip("geodetect.spark")
    import shapely

    from geodetect.testing import assert_detections_equal

    def same(got, want):  # polygons joined across block borders: same vertices, ring starts may differ
        for g in (got, want):
            g["geometry"] = shapely.normalize(g.geometry.values)
        assert_detections_equal(got, want, tolerance=0)

    shutil.copy(landsat_cog, nginx.root / "landsat_spark.tif")  # its own name: its requests alone in the log
    item = {
        "type": "Feature", "stac_version": "1.0.0", "id": "landsat-spark", "geometry": None,
        "properties": {"datetime": "2001-06-15T18:30:00Z"}, "links": [],
        "assets": {"data": {"href": "landsat_spark.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                            "eo:bands": [{"common_name": "nir"}, {"common_name": "red"}, {"common_name": "green"}]}},
    }
    (nginx.root / "item_spark.json").write_text(json.dumps(item))
    kw = dict(bands="nir=1,green=3")
    want = gd.detect(str(landsat_cog), detector="water-expert-optical", progress=False, **kw)
    url = f"{nginx.url}/landsat_spark.tif"
    assert len(gds.plan([url], "water-expert-optical", block_rows=3, **kw)) > 1  # the URL's header read: blocks
    got = gds.to_geopandas(gds.detect(spark, [url], "water-expert-optical", block_rows=3, **kw))
    assert set(got.scene_id) == {"landsat_spark"}
    same(got, want.assign(scene_id="landsat_spark"))
    got = gds.to_geopandas(gds.detect(spark, f"{nginx.url}/item_spark.json", "water-expert-optical", block_rows=3))
    assert set(got.scene_id) == {"landsat-spark"} and got["datetime"].notna().all()
    same(got, want.assign(scene_id="landsat-spark"))
    _, statuses = nginx.bytes_sent("landsat_spark.tif")
    assert statuses and all(s == 206 for s in statuses)


def test_resume_with_a_url(nginx, landsat_cog, tmp_path, capsys):
    from geodetect.cli import main

    url = f"{nginx.url}/landsat.tif"
    args = ["detect", url, "--detector", "water-expert-optical", "--bands", "nir=1,green=3", "--out",
            str(tmp_path / "run") + "/", "--no-progress"]
    assert main(args) == 0
    assert main(args + ["--resume"]) == 0
    assert "1 already done (resumed)" in capsys.readouterr().err


def test_http_404_is_one_line(nginx):
    with pytest.raises(RasterReadError, match=r"missing\.tif: HTTP 404 Not Found; not found on the server; check the URL"):
        gd.detect(f"{nginx.url}/missing.tif", detector="water-expert-optical", progress=False)


def test_cli_404_prints_one_error_line(nginx, capsys):
    from geodetect.cli import main

    assert main(["detect", f"{nginx.url}/missing.tif", "--detector", "water-expert-optical", "--no-progress"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "HTTP 404" in err[0]


class _NoRange(http.server.SimpleHTTPRequestHandler):
    """Python's file server: it ignores Range and always sends the whole file with 200."""

    def log_message(self, *a):
        pass


def test_server_without_range_support_is_refused(landsat_cog):
    import functools

    handler = functools.partial(_NoRange, directory=str(landsat_cog.parent))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/landsat.tif"
        with pytest.raises(RasterReadError, match="ignores HTTP range requests.*serve the file from a server with "
                                                  "range support"):
            gd.detect(url, detector="water-expert-optical", bands="nir=1,green=3", progress=False)
    finally:
        srv.shutdown()
        srv.server_close()


def test_connection_refused_is_one_line():
    port = _free_port()  # nothing listens there
    with pytest.raises(RasterReadError, match=f"127.0.0.1:{port}/x.tif: connection refused; is the server running"):
        gd.detect(f"http://127.0.0.1:{port}/x.tif", detector="water-expert-optical", progress=False)
