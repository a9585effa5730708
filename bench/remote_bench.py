"""Benchmarks of issue 17: STAC items of single-band COGs, COGs over HTTP (nginx on loopback), ONNX detectors.

    .venv/bin/python bench/remote_bench.py [--repeat 3] [--workdir /tmp/geodetect-bench17]

Prints one line per figure (medians of ``--repeat`` alternated runs, each pair timed back to back):

1. STAC: a STAC item of three single-band COGs against the same three bands stacked in one local
   file (water-expert-optical over the real Landsat scene): time ratio, target <= 1.10.
2. HTTP: the Landsat scene as a COG served by nginx on 127.0.0.1 against the local file: throughput
   ratio, target >= 0.8; and the bytes nginx sent for one 512 x 512 window of a large COG (the scene
   upsampled 4x) against the compressed size of the tiles the window covers, target <= 2.
3. ONNX: water-segmenter exported to ONNX, through ``gd.detect``, against onnxruntime alone on the
   same tiles (read beforehand): throughput ratio, target >= 0.9.

Needs nginx (scripts/install_nginx.sh) for 2, TensorFlow and tf2onnx for 3.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import geodetect as gd  # noqa: E402


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _pairs(a, b, repeat: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(_timed(a))
        tb.append(_timed(b))
    return statistics.median(ta), statistics.median(tb)


def _cog(src, dst, band=None, scale=1):
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(src) as ds:
        idx = [band] if band else list(range(1, ds.count + 1))
        h, w = ds.height * scale, ds.width * scale
        data = ds.read(idx, out_shape=(len(idx), h, w), resampling=Resampling.bilinear)
        t = ds.transform * ds.transform.scale(ds.width / w, ds.height / h)
        with rasterio.open(dst, "w", driver="COG", width=w, height=h, count=len(idx), dtype=data.dtype, crs=ds.crs,
                           transform=t, blocksize=256, compress="deflate") as out:
            out.write(data)
    return str(dst)


def bench_stac(work: Path, repeat: int) -> None:
    import pystac
    from shapely.geometry import box, mapping

    from geodetect_plugins.water_segmenter.data import landsat_path

    stacked = _cog(landsat_path(), work / "stacked.tif")
    import datetime as dt

    item = pystac.Item("bay", mapping(box(-123, 37, -122, 38)), [-123, 37, -122, 38],
                       dt.datetime(2001, 6, 15, tzinfo=dt.timezone.utc), {})
    for i, name in enumerate(("nir", "red", "green"), start=1):
        a = pystac.Asset(_cog(landsat_path(), work / f"b_{name}.tif", band=i), roles=["data"],
                         media_type=pystac.MediaType.COG)
        a.extra_fields["eo:bands"] = [{"name": name, "common_name": name}]
        item.add_asset(name, a)
    kw = dict(detector="water-expert-optical", progress=False)
    t_item, t_file = _pairs(lambda: gd.detect(item, **kw), lambda: gd.detect(stacked, bands="nir=1,green=3", **kw),
                            repeat)
    print(f"stac: item of 3 single-band COGs {t_item:.2f} s, stacked local file {t_file:.2f} s: "
          f"ratio {t_item / t_file:.3f} (target <= 1.10)")


def _nginx(work: Path):
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (work / "tmp").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""daemon off; master_process off; worker_processes 1; pid {work}/nginx.pid;
error_log {work}/error.log warn; events {{ worker_connections 64; }}
http {{ log_format b '$status $body_bytes_sent $request_method $request_uri'; access_log {work}/access.log b;
client_body_temp_path {work}/tmp/b; proxy_temp_path {work}/tmp/p; fastcgi_temp_path {work}/tmp/f;
uwsgi_temp_path {work}/tmp/u; scgi_temp_path {work}/tmp/s;
server {{ listen 127.0.0.1:{port}; root {work}/www; location / {{ }} }} }}""")
    (work / "www").mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "-c", str(conf), "-p", str(work)], stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", work / "access.log"


def _sent(log: Path, uri: str) -> int:
    total = 0
    for line in log.read_text().splitlines():
        status, sent, method, u = line.split()
        if u == uri and method == "GET":
            total += int(sent)
    return total


def bench_http(work: Path, repeat: int) -> None:
    import rasterio
    from rasterio.windows import Window

    from geodetect_plugins.water_segmenter.data import landsat_path

    got = _nginx(work)
    if got is None:
        print("http: skipped, nginx not installed (bash scripts/install_nginx.sh)")
        return
    proc, url, log = got
    try:
        local = _cog(landsat_path(), work / "www" / "landsat.tif")
        kw = dict(detector="water-expert-optical", bands="nir=1,green=3", progress=False)
        t_http, t_local = _pairs(lambda: gd.detect(f"{url}/landsat.tif", **kw), lambda: gd.detect(local, **kw), repeat)
        print(f"http: COG over loopback {t_http:.2f} s, local file {t_local:.2f} s: throughput ratio "
              f"{t_local / t_http:.3f} (target >= 0.8)")
        big = _cog(landsat_path(), work / "www" / "big.tif", scale=4)  # 8724 x 7668 px
        win = Window(3000, 2000, 512, 512)
        with rasterio.open(big) as ds:
            bx, by = ds.block_shapes[0]
            tiles = sum(int(ds.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=1) or 0)
                        for r in range(win.row_off // by, (win.row_off + win.height - 1) // by + 1)
                        for c in range(win.col_off // bx, (win.col_off + win.width - 1) // bx + 1))
            size = os.path.getsize(big)
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            with rasterio.open(f"{url}/big.tif") as ds:
                ds.read(window=win)
        sent = _sent(log, "/big.tif")
        print(f"http: 512x512 window of a {size / 2**20:.1f} MiB COG: {sent / 1024:.0f} KiB fetched, the tiles it "
              f"covers are {tiles / 1024:.0f} KiB compressed: ratio {sent / tiles:.2f} (target <= 2); "
              f"{100 * sent / size:.2f} % of the file")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_onnx(work: Path, repeat: int) -> None:
    from geodetect.export import export_onnx
    from geodetect.io.raster import open_scene
    from geodetect.io.tiling import Tiling
    from geodetect.mlm import detector_class
    from geodetect.onnx import session_for
    from geodetect_plugins.water_segmenter.data import landsat_path

    _, doc = export_onnx("water-segmenter", work / "onnx")
    cls = detector_class(doc)
    det = cls()
    det.ensure_loaded()
    path = str(landsat_path())
    spec = cls.spec
    with open_scene(path, bands=spec.bands, band_override="nir=1,red=2,green=3") as scene:
        tiling = Tiling(scene.width, scene.height, spec.tile_size, spec.overlap)
        tiles = np.stack([scene.read(*tiling.tile(i), pad_to=spec.tile_size)[0] for i in range(len(tiling))])
    sess = session_for(cls.mlm.onnx_path)
    name = sess.get_inputs()[0].name

    def ort_alone():
        for i in range(0, len(tiles), 8):
            sess.run(None, {name: tiles[i : i + 8]})

    t_gd, t_ort = _pairs(lambda: gd.detect(path, det, bands="nir=1,red=2,green=3", progress=False), ort_alone, repeat)
    print(f"onnx: water-segmenter (ONNX) via gd.detect {t_gd:.2f} s, onnxruntime alone on the same "
          f"{len(tiles)} tiles {t_ort:.2f} s: ratio {t_ort / t_gd:.3f} (target >= 0.9)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/geodetect-bench17")
    ap.add_argument("--only", choices=["stac", "http", "onnx"])
    args = ap.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name, fn in (("stac", bench_stac), ("http", bench_http), ("onnx", bench_onnx)):
        if args.only in (None, name):
            (work / name).mkdir()
            fn(work / name, args.repeat)


if __name__ == "__main__":
    main()
