"""geodetect benchmarks: each figure is a ratio against a reference measured in the same run.

Usage: python bench/run.py [--quick] [--only NAME ...] [--json bench/results.json]

Figures (targets from the performance issue):
  model      gd.detect vs the same model in a compiled tf.function on the same tiles   >= 0.85
  io         tiles read + masked + scaled per second vs a plain rasterio block read     >= 0.8
  io-windows gd.detect with a detector that does nothing vs rasterio reads of the same windows >= 0.9
  first-call the first gd.detect of a fresh process, 1 Mpx scene, numpy-only detector     < 0.2 s
  per-scene  host time per 1 Mpx scene over 100 scenes: gd.detect minus bare reads + predict < 5 ms
  stitch     1 M point detections stitched and georeferenced                           < 2 s
  aggregate  10 M points x 3,231 counties: SedonaDB vs GeoPandas sjoin, same GeoParquet >= 3x
  spark      standalone cluster (2 one-core workers) vs one process on one core, 8 scenes    >= 1.8x
  spark-aggregate  10 M points x counties on Spark: Sedona SQL vs the STRtree fallback (ratio printed)
  memory     peak RSS, 30,000^2 vs 3,000^2 three-band scene                             within 20 %
  growth     time per megapixel at 10, 100 and 900 MP                                   flat within 15 %
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _best_pair(fn, ref, repeat=5):
    """Times of ``fn`` and ``ref`` run alternately, so that both see the same machine (load, caches).

    Returns (time of fn, time of ref, ratio ref/fn): the times are medians, and
    the ratio is the median of the ratios of each adjacent pair. These shared
    machines speed up and slow down by 20 % from one second to the next; a
    pair sees the same state, while the best of each side alone need not.
    """
    got, want = [], []
    for _ in range(repeat):
        for f, out in ((ref, want), (fn, got)):
            t = time.perf_counter()
            f()
            out.append(time.perf_counter() - t)
    return float(np.median(got)), float(np.median(want)), float(np.median(np.array(want) / np.array(got)))


def _sparse_scene(path, size, bands=3, block=512, data_every=4):
    """A tiled GeoTIFF; one block in ``data_every`` along each axis holds textured data, the rest is sparse."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(0)
    tile = rng.integers(30, 220, (bands, block, block), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(400000, 5000000, 0.1, 0.1), tiled=True,
                       blockxsize=block, blockysize=block, compress="deflate", SPARSE_OK=True) as dst:
        for r in range(0, size, block * data_every):
            for c in range(0, size, block * data_every):
                w, h = min(block, size - c), min(block, size - r)
                dst.write(tile[:, :h, :w], window=Window(c, r, w, h))
    return str(path)


def _patchy_scene(path, size, bands=3, block=512, patch=96):
    """A tiled GeoTIFF with the same textured patch in every block: equal content per megapixel at any size."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    tile = np.random.default_rng(0).integers(30, 220, (bands, patch, patch), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(400000, 5000000, 0.1, 0.1), tiled=True,
                       blockxsize=block, blockysize=block, compress="deflate", SPARSE_OK=True) as dst:
        for r in range(0, size - patch - 100 + 1, block):
            for c in range(0, size - patch - 100 + 1, block):
                dst.write(tile, window=Window(c + 100, r + 100, patch, patch))
    return str(path)


def _dense_scene(path, size, bands=3):
    """A deflate-compressed, tiled GeoTIFF with image-like content (smooth field + noise), as GIS data comes."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from scipy import ndimage

    rng = np.random.default_rng(1)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands, dtype="uint8",
                       crs="EPSG:32633", transform=from_origin(400000, 5000000, 0.1, 0.1), tiled=True,
                       blockxsize=512, blockysize=512, compress="deflate") as dst:
        for r in range(0, size, 2048):
            h = min(2048, size - r)
            field = ndimage.zoom(rng.normal(0, 1, (bands, h // 32 + 1, size // 32 + 1)), (1, 32, 32), order=1)
            img = np.clip(120 + 40 * field[:, :h, :size] + rng.normal(0, 6, (bands, h, size)), 0, 255)
            dst.write(img.astype(np.uint8), window=Window(0, r, size, h))
    return str(path)


# --------------------------------------------------------------------------- figures


def bench_io(tmp, quick):
    """Tile reads through geodetect (masks + float32 scaling) vs rasterio block reads of the whole image.

    Both run with the same 64 MB GDAL block cache (geodetect's default) on a
    deflate-compressed scene larger than the cache, so neither is served from memory.
    """
    import rasterio

    from geodetect.io.raster import open_scene
    from geodetect.io.tiling import Tiling

    size = 8192
    path = _dense_scene(Path(tmp) / "io.tif", size)

    def plain():
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), rasterio.open(path) as ds:
            for _, w in ds.block_windows(1):
                ds.read(window=w)

    def ours():
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20), open_scene(path, bands=(1, 2, 3)) as sc:
            t = Tiling(sc.width, sc.height, 512, 0)
            for i in range(len(t)):
                sc.read(*t.tile(i), pad_to=512)

    got, ref, ratio = _best_pair(ours, plain, 5)
    mp = size * size / 1e6
    return dict(name="io", value=mp / got, reference=mp / ref, unit="MP/s", ratio=ratio, target=">= 0.8",
                ok=ratio >= 0.8, note=f"{size}x{size}x3 uint8 deflate, 512 px tiles, no overlap, 64 MB cache")


def _nothing_detector():
    """A three-band detector that finds nothing: gd.detect then costs reading, tiling and set-up only."""
    from geodetect.plugins import Detector, DetectorSpec, Points, Task

    class Nothing(Detector):
        spec = DetectorSpec(name="bench-nothing", version="0.0.1", task=Task.POINTS, classes=("none",),
                            bands=(1, 2, 3), tile_size=512, overlap=64)

        def predict(self, tiles):
            return [Points.empty() for _ in range(len(tiles))]

    return Nothing


def _peaks_detector():
    """A cheap numpy-only points detector (no TensorFlow, no SciPy): every pixel of band 1 above 0.85."""
    from geodetect.plugins import Detector, DetectorSpec, Points, Task

    class Peaks(Detector):
        spec = DetectorSpec(name="bench-peaks", version="0.0.1", task=Task.POINTS, classes=("peak",), bands=(1,),
                            tile_size=512, overlap=64, merge_radius_px=2.0)

        def predict(self, tiles):
            out = []
            for t in tiles:
                r, c = np.nonzero(t[..., 0] > 0.85)
                out.append(Points(np.column_stack([c, r]) + 0.5, np.zeros(len(r), np.int64), t[r, c, 0]))
            return out

    return Peaks


def bench_io_windows(tmp, quick):
    """gd.detect with a detector that does nothing vs plain rasterio reads of the same windows.

    512 px tiles, 64 px overlap, a three-band uint8 deflate scene, warm (file in the page cache,
    imports and first calls done), both with the same 64 MB GDAL cache; alternated pairs, median ratio.
    The reference reads each tile window as uint8 and does nothing else; geodetect also scales to
    float32, pads edge tiles, checks nodata, batches, calls predict and builds an (empty) table. It
    reads neighbouring tiles as one strip, decoded in its default GDAL_NUM_THREADS (the usable cores);
    the note gives the ratio against plain window reads with that setting too.
    """
    import rasterio
    from rasterio.windows import Window

    import geodetect as gd
    from geodetect.io.tiling import Tiling

    size = 4096 if quick else 8192
    path = _dense_scene(Path(tmp) / "iow.tif", size)
    det = _nothing_detector()()
    t = Tiling(size, size, 512, 64)
    windows = [Window(*t.tile(i)) for i in range(len(t))]

    from geodetect.pipeline import _decode_threads

    threads = _decode_threads().get("GDAL_NUM_THREADS")  # what gd.detect decodes with (None: the user's setting)

    def plain(num_threads=None):
        env = {} if num_threads is None else {"GDAL_NUM_THREADS": num_threads}
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20, **env), rasterio.open(path) as ds:
            for w in windows:
                ds.read((1, 2, 3), window=w)

    def ours():
        gd.detect(path, det, progress=False)

    ours()  # warm: imports, page cache
    plain()
    got, ref, ratio = _best_pair(ours, plain, 5)
    mp = size * size / 1e6
    note = (f"{size}x{size}x3 uint8 deflate, {len(windows)} windows of 512 px, overlap 64, 64 MB cache, detector finds "
            "nothing; plain reads with GDAL's default decoding (the environment's GDAL_NUM_THREADS, else 1)")
    if threads:  # the same windows read plainly with geodetect's decoding threads: no faster one window at a time
        _, ref_t, ratio_t = _best_pair(ours, lambda: plain(threads), 3)
        note += (f"; gd.detect reads strips of tiles with GDAL_NUM_THREADS={threads}: against plain window reads with "
                 f"that setting {mp / ref_t:.1f} MP/s, ratio {ratio_t:.2f}")
    return dict(name="io-windows", value=mp / got, reference=mp / ref, unit="MP/s", ratio=ratio, target=">= 0.9",
                ok=ratio >= 0.9, note=note)


FIRST_CALL_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
import geodetect as gd
t1 = time.perf_counter()
deps = 0.0
if sys.argv[2] == "deps":  # the libraries the result is made of, imported before the call
    import rasterio, geopandas, pyproj, shapely
    deps = time.perf_counter() - t1
sys.path.insert(0, {bench!r})
from run import _peaks_detector
Peaks = _peaks_detector()
t2 = time.perf_counter()
n = len(gd.detect(sys.argv[1], Peaks, progress=False))
t3 = time.perf_counter()
gd.detect(sys.argv[1], Peaks, progress=False)
t4 = time.perf_counter()
print(json.dumps({{"import": t1 - t0, "deps": deps, "first": t3 - t2, "second": t4 - t3, "n": n}}))
"""


def bench_first_call(tmp, quick):
    """The first gd.detect of a fresh process: a 1 Mpx scene, a numpy-only detector (no TensorFlow).

    Two kinds of fresh process, median of three each: a cold one (``import geodetect``, then the
    call) and one that imports rasterio, geopandas, pyproj and shapely before the call (the
    libraries any tool returning a GeoDataFrame from a raster must load). The figure is the first
    call of the second kind: geodetect's own lazy imports and set-up beyond the libraries the
    result needs, plus the work on the scene (the repeated call, printed beside it).
    """
    path = _patchy_scene(Path(tmp) / "first.tif", 1024)
    code = FIRST_CALL_SCRIPT.format(bench=str(ROOT / "bench"))
    runs = {"cold": [], "deps": []}
    for _ in range(3):
        for kind in runs:
            runs[kind].append(_run_json(code, [path, kind]))

    def med(kind, key):
        return float(np.median([r[key] for r in runs[kind]]))

    first, cold = med("deps", "first"), med("cold", "first")
    return dict(name="first-call", value=first, reference=0.2, unit="s", ratio=0.2 / first, target="< 0.2 s",
                ok=first < 0.2,
                note=(f"1024x1024 scene, numpy-only detector, fresh processes, medians of 3: import geodetect "
                      f"{med('cold', 'import'):.3f} s; rasterio+geopandas+pyproj+shapely {med('deps', 'deps'):.3f} s; "
                      f"first call after them {first:.3f} s (repeated {med('deps', 'second'):.3f} s); "
                      f"cold first call {cold:.3f} s (repeated {med('cold', 'second'):.3f} s)"))


def bench_per_scene(tmp, quick):
    """Host overhead per scene over 100 small (1 Mpx) scenes, one gd.detect call each (as a loop, a CLI
    call or a Spark task makes them).

    Overhead = (time through gd.detect - time of the same window reads and the same predict calls done
    bare) / number of scenes. The bare side opens each scene with rasterio, reads every tile window,
    scales it to float32 into a padded tile buffer, and calls predict on the same batches. Alternated
    pairs, median of each side.
    """
    import rasterio
    from rasterio.windows import Window

    import geodetect as gd
    from geodetect.io.tiling import Tiling

    n = 30 if quick else 100
    size = 1024
    base = _patchy_scene(Path(tmp) / "ps0.tif", size)
    paths = [base]
    for i in range(1, n):  # copies: distinct files (ids), same content
        p = Path(tmp) / f"ps{i}.tif"
        p.write_bytes(Path(base).read_bytes())
        paths.append(str(p))
    det = _peaks_detector()()
    ts, bs = det.spec.tile_size, 8
    tiling = Tiling(size, size, ts, det.spec.overlap)
    windows = [tiling.tile(i) for i in range(len(tiling))]
    count = {}

    def ours():
        count["ours"] = sum(len(gd.detect(p, det, progress=False)) for p in paths)

    def bare():
        found = 0
        with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
            for p in paths:
                with rasterio.open(p) as ds:
                    tiles = []
                    for x0, y0, w, h in windows:
                        buf = np.zeros((ts, ts, 1), np.float32)
                        buf[:h, :w, 0] = ds.read(1, window=Window(x0, y0, w, h))
                        buf *= np.float32(1 / 255)
                        tiles.append(buf)
                    for k in range(0, len(tiles), bs):
                        found += sum(len(r.xy) for r in det.predict(np.stack(tiles[k:k + bs])))
        count["bare"] = found

    ours()
    bare()
    got, ref, _ = _best_pair(ours, bare, 3 if quick else 5)
    per = (got - ref) / n
    return dict(name="per-scene", value=per * 1e3, reference=5.0, unit="ms/scene", ratio=5.0 / max(per * 1e3, 1e-9),
                target="< 5 ms", ok=per * 1e3 < 5.0,
                note=(f"{n} scenes {size}x{size}, {len(windows)} tiles each, numpy-only detector: gd.detect "
                      f"{got / n * 1e3:.1f} ms/scene, bare reads + predict {ref / n * 1e3:.1f} ms/scene; "
                      f"{count['ours'] / n:.0f} detections/scene after seam merge, {count['bare'] / n:.0f} raw"))


def bench_stitch(tmp, quick):
    """1 M points from 4,096 tiles: ownership + cross-tile merge + georeferencing to EPSG:4326."""
    from affine import Affine

    from geodetect import georef
    from geodetect.io.tiling import Tiling
    from geodetect.stitch import dedupe_points

    n = 1_000_000
    t = Tiling(16384, 16384, 256, 32)
    rng = np.random.default_rng(0)
    tid = rng.integers(0, len(t), n)
    ext = t.tile_arrays(tid)
    xy = ext[:, :2] + rng.uniform(0, 256, (n, 2))
    cid = rng.integers(0, 5, n)
    sc = rng.random(n).astype(np.float32)
    tr = Affine(0.1, 0, 400000, 0, -0.1, 5000000)

    def run():
        keep = dedupe_points(xy, cid, sc, tid, t.owned_arrays(tid), 4.0)
        g = georef.points_to_map(xy[keep], tr, "EPSG:32633", "EPSG:4326")
        return len(g)

    got = _best(run, 2)
    return dict(name="stitch", value=got, reference=2.0, unit="s", ratio=2.0 / got, target="< 2 s", ok=got < 2.0,
                note="1,000,000 points, 4,096 tiles, merge radius 4 px, UTM -> EPSG:4326")


def bench_aggregate(tmp, quick):
    """Points x the 3,231 us-atlas counties from one GeoParquet: SedonaDB path vs GeoPandas sjoin + groupby."""
    import geopandas as gpd

    import geodetect as gd
    from geodetect.frames import make_detections

    n = 1_000_000 if quick else 10_000_000
    counties = gpd.read_parquet(ROOT / "sample_data" / "us_counties.parquet")
    counties = counties[~counties.geometry.is_empty]
    conus = counties[counties.state_fips.astype(int) < 57]
    rng = np.random.default_rng(0)
    xmin, ymin, xmax, ymax = -125, 24.5, -66.9, 49.4
    x, y = rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)
    dets = make_detections("bench", "1", "s", rng.choice(["car", "truck", "bus"], n), np.ones(n, np.float32),
                           gpd.points_from_xy(x, y), np.zeros(n), "EPSG:4326")
    pq = Path(tmp) / "points.parquet"
    cq = Path(tmp) / "counties.parquet"
    dets.to_parquet(pq)
    conus.to_parquet(cq)

    def sedona():
        return gd.aggregate(str(pq), str(cq), by="fips", engine="sedonadb")

    def geopandas_sjoin():
        p = gpd.read_parquet(pq)
        c = gpd.read_parquet(cq)
        j = gpd.sjoin(p, c[["fips", "geometry"]], how="inner", predicate="intersects")
        return j.groupby(["fips", "class_name"]).size()

    ref = _best(geopandas_sjoin, 1)
    got = _best(sedona, 1)
    return dict(name="aggregate", value=got, reference=ref, unit="s", ratio=ref / got, target=">= 3x",
                ok=ref / got >= 3, note=f"{n:,} points x {len(conus):,} counties from GeoParquet")


SPARK_SCRIPT = """
import os, sys, time, json
from geodetect import spark as gds
url = sys.argv[1]; paths = sys.argv[2:]
spark = gds.session(master=url, app_name="geodetect-bench", conf={{"spark.executor.cores": "1", "spark.cores.max": "2",
                    "spark.executor.memory": "2g", "spark.python.worker.reuse": "true"}})
gds.detect(spark, paths, "{detector}", block_rows=1000).count()   # warm up both workers (imports, model load):
# two scenes could both land on the first executor that is ready, leaving the other cold for the timed run
print(json.dumps({{"ready": True}}), flush=True)
for _ in sys.stdin:  # one timed run a line: the parent alternates these with the reference's
    # Spark stops Python workers that idled for a minute (PythonWorkerFactory), as they do while the
    # reference runs: warm them again, untimed, as a cluster fed scenes without pause would be
    t = time.perf_counter(); gds.detect(spark, paths, "{detector}", block_rows=1000).count(); tw = time.perf_counter() - t
    t = time.perf_counter(); n = gds.detect(spark, paths, "{detector}", block_rows=1000).count(); ts = time.perf_counter() - t
    print(json.dumps({{"s": ts, "n": n, "rewarm_s": tw}}), flush=True)
"""


LOCAL_SCRIPT = """
import json, os, resource, sys, time
if os.environ.get("GEODETECT_BENCH_CPU"):  # pinned to one core before any thread starts: threads inherit it
    os.sched_setaffinity(0, {int(os.environ["GEODETECT_BENCH_CPU"])})
import geodetect as gd
paths = sys.argv[2:]
gd.detect(paths[:1], sys.argv[1], progress=False)  # warm up (imports, model load, tracing)
served = os.environ.get("GEODETECT_BENCH_SERVE")
if served:
    print(json.dumps({"ready": True}), flush=True)
for _ in (sys.stdin if served else [None]):  # served: one timed run a line, alternated by the parent
    r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()
    n = len(gd.detect(paths, sys.argv[1], progress=False))
    wall = time.perf_counter() - t; r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"s": wall, "cpu": cpu, "n": n}), flush=True)
"""


class _Served:
    """A warmed benchmark process that times one run per line it is sent (so two sides can alternate).

    Its stderr goes to a file (Spark logs a lot); its stdout carries one JSON line per answer.
    """

    def __init__(self, script, args, log, env=None):
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True,
                                     env={**os.environ, **(env or {}), "GEODETECT_BENCH_SERVE": "1"})
        self._answer()  # ready: warmed

    def _answer(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                return json.loads(line)
        self.proc.wait()
        self.log.flush()
        tail = Path(self.log.name).read_text().strip().splitlines()
        raise RuntimeError(tail[-1] if tail else f"benchmark process exited with {self.proc.returncode}")

    def run(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _run_json(script, args, env=None):
    out = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=3600,
                         env=None if env is None else {**os.environ, **env})
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_spark(tmp, quick, detector="sea-lion-counter", pairs=None):
    """8 scenes: a Spark standalone cluster (a master and two one-core workers, separate processes on
    127.0.0.1) vs one process on one core: TensorFlow on one thread (GEODETECT_TF_THREADS=1, the
    configuration of each Spark task) and the process pinned to one CPU, so that its tile reader and
    numpy threads cannot borrow the second core that a one-core worker does not have. Parallel
    efficiency = ratio / 2.

    Both sides are warmed and then timed alternately in the same run (reference, cluster,
    reference, ...; 3 pairs, 2 quick): the figure is the median of the pairs' ratios, each pair
    seeing the same machine. Spark stops Python workers idle for a minute, as they are while the
    reference runs, so the cluster runs the 8 scenes once untimed before each timed run (the
    seconds of that re-warm are printed: they show what a cold worker costs). Printed beside it,
    each run once before the pairs: the same one-thread process unpinned (its reader thread runs on
    the idle second core: the cores it used are printed) and one process with its default threads.
    """
    sys.path.insert(0, str(ROOT / "scripts"))
    from spark_cluster import LocalCluster

    from geodetect.simulate import make_scene

    size = 1024 if quick else 2048
    pairs = pairs or (2 if quick else 3)
    paths = [make_scene(Path(tmp) / f"sp{i}.tif", size=(size, size), n_objects=100, seed=i).path for i in range(8)]
    served = []
    try:
        local = _run_json(LOCAL_SCRIPT, [detector, *paths])
        single = _run_json(LOCAL_SCRIPT, [detector, *paths], env={"GEODETECT_TF_THREADS": "1"})
        with LocalCluster(workers=2, cores=1, memory="3g", log_dir=Path(tmp) / "cluster") as cluster:
            ref = _Served(LOCAL_SCRIPT, [detector, *paths], Path(tmp) / "ref.log",
                          env={"GEODETECT_TF_THREADS": "1", "GEODETECT_BENCH_CPU": "0"})
            served.append(ref)
            spark = _Served(SPARK_SCRIPT.format(detector=detector), [cluster.url, *paths], Path(tmp) / "driver.log")
            served.append(spark)
            runs = [(ref.run(), spark.run()) for _ in range(pairs)]
    except RuntimeError as exc:
        return dict(name="spark", error=str(exc))
    finally:
        for s in served:
            s.close()
    ratios = [c["s"] / r["s"] for c, r in runs]
    ratio = float(np.median(ratios))
    ns = {local["n"], single["n"], *(c["n"] for c, _ in runs), *(r["n"] for _, r in runs)}
    core_s = float(np.median([c["s"] for c, _ in runs]))
    spark_s = float(np.median([r["s"] for _, r in runs]))
    return dict(name="spark", value=spark_s, reference=core_s, unit="s", ratio=ratio, target=">= 1.8x",
                ok=ratio >= 1.8 and len(ns) == 1,
                note=(f"8 scenes {size}x{size}, {detector}, standalone master + 2 one-core workers; parallel "
                      f"efficiency {ratio / 2:.2f}; median of {pairs} alternated pairs, reference / cluster s: "
                      + ", ".join(f"{c['s']:.1f}/{r['s']:.1f} ({c['s'] / r['s']:.2f}x; re-warm {r['rewarm_s']:.1f})" for c, r in runs)
                      + f"; detections {'all ' + format(next(iter(ns)), ',') if len(ns) == 1 else 'DIFFER: ' + str(sorted(ns))}; "
                      f"reference one process pinned to one core, one TF thread; unpinned, one TF thread "
                      f"({single['s']:.1f} s, {single['cpu'] / single['s']:.2f} cores): {single['s'] / spark_s:.2f}x; "
                      f"default threads ({local['s']:.1f} s, {local['cpu'] / local['s']:.2f} cores): "
                      f"{local['s'] / spark_s:.2f}x"))


SPARK_AGG_SCRIPT = """
import json, sys, time
import numpy as np
from geodetect import spark as gds
n, counties = int(sys.argv[1]), sys.argv[2]
spark = gds.session(master="local[2]", app_name="geodetect-bench-agg", conf={"spark.driver.memory": "6g",
                    "spark.sql.shuffle.partitions": "8"})
# 10 M points made on Spark (never on the driver), in the detections schema with a Sedona geometry
pts = (spark.range(0, n, numPartitions=8)
       .selectExpr("'bench' AS detector", "'1' AS detector_version", "'s' AS scene_id",
                   "element_at(array('car', 'truck', 'bus'), CAST(pmod(id, 3) + 1 AS INT)) AS class_name",
                   "CAST(1.0 AS FLOAT) AS score",
                   "ST_SetSRID(ST_Point(-125.0 + rand(1) * 58.1, 24.5 + rand(2) * 24.9), 4326) AS geometry",
                   "0.0 AS area_m2")).persist()
pts.count()
out = {}
for method in ("sedona", "strtree"):
    t = time.perf_counter(); r = gds.aggregate(pts, counties, by="fips", method=method); out[method] = time.perf_counter() - t
    out[method + "_total"] = int(r["count"].sum())
print(json.dumps(out))
"""


def bench_spark_aggregate(tmp, quick):
    """Points x the us-atlas CONUS counties on one Spark local[2] session: Sedona SQL vs the STRtree fallback.

    The points are generated and stay on Spark: neither path collects detections onto the driver
    (only the region x class table comes back).
    """
    import geopandas as gpd

    n = 1_000_000 if quick else 10_000_000
    counties = gpd.read_parquet(ROOT / "sample_data" / "us_counties.parquet")
    counties = counties[~counties.geometry.is_empty]
    conus = counties[counties.state_fips.astype(int) < 57]
    cq = Path(tmp) / "counties_spark.parquet"
    conus.to_parquet(cq)
    try:
        res = _run_json(SPARK_AGG_SCRIPT, [str(n), str(cq)])
    except RuntimeError as exc:
        return dict(name="spark-aggregate", error=str(exc))
    ratio = res["strtree"] / res["sedona"]
    return dict(name="spark-aggregate", value=res["sedona"], reference=res["strtree"], unit="s", ratio=ratio,
                target="printed", ok=res["sedona_total"] == res["strtree_total"],
                note=f"{n:,} points x {len(conus):,} counties, Spark local[2]; same counts: "
                     f"{res['sedona_total'] == res['strtree_total']}")


MEM_SCRIPT = """
import json, resource, sys
import geodetect as gd
sys.path.insert(0, {tests!r})
from detectors import BrightPoints
from geodetect.plugins import DetectorSpec, Points
class Three(BrightPoints):
    spec = DetectorSpec(**{{**BrightPoints.spec.__dict__, "name": "bench-three", "bands": (1, 2, 3),
                          "tile_size": 512, "overlap": 32}})
    def predict(self, tiles):
        # at most one point per tile: the figure measures streaming, not the size of the result
        # (which is O(detections) by nature, about 0.5 kB each)
        return [Points(r.xy[:1], r.class_ids[:1], r.scores[:1]) for r in super().predict(tiles[..., :1])]
gd.detect(sys.argv[1], Three, progress=False)
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the forking parent, so a child of a
# big bench process would report the parent's peak
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({{"maxrss_kb": int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}}))
"""


def bench_memory(tmp, quick):
    """Peak RSS of a whole detect run on a big vs a small scene (each in a fresh process)."""
    big = 12_000 if quick else 30_000
    res = {}
    for size in (3_000, big):
        p = _sparse_scene(Path(tmp) / f"mem{size}.tif", size)
        code = MEM_SCRIPT.format(tests=str(ROOT / "tests"))
        out = subprocess.run([sys.executable, "-c", code, p], capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            return dict(name="memory", error=out.stderr.strip().splitlines()[-1])
        res[size] = json.loads(out.stdout.strip().splitlines()[-1])["maxrss_kb"] / 1024
    ratio = res[big] / res[3_000]
    return dict(name="memory", value=res[big], reference=res[3_000], unit="MB peak RSS", ratio=ratio,
                target="<= 1.2", ok=ratio <= 1.2, note=f"{big:,}^2 vs 3,000^2 x 3 bands")


def bench_growth(tmp, quick, detector=None):
    """Time per megapixel of gd.detect at three scene sizes.

    The default detector is a cheap blob finder (band 1 > 0.5 on a textured scene: thousands of
    points per megapixel), so that reading, tiling, seam merging and georeferencing dominate and any
    cost that grows faster than the scene shows; a deep model would hide it behind its own flat cost.
    """
    import geodetect as gd

    if detector is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from detectors import BrightPoints

        from geodetect.plugins import DetectorSpec

        class Blobs(BrightPoints):
            spec = DetectorSpec(**{**BrightPoints.spec.__dict__, "name": "bench-blobs", "tile_size": 512,
                                   "overlap": 32})

        detector = Blobs
    # n * 480 + 32 px: whole 512-px tiles with 32 px overlap, so edge tiles add no extra work at any size;
    # about 10, 100 and 900 MP (1.3, 5 and 25 MP quick)
    sizes = (1_152, 2_272, 4_832) if quick else (3_392, 10_112, 30_272)
    per_mp, counts = {}, {}
    gd.detect(_patchy_scene(Path(tmp) / "grow-warm.tif", 1_152), detector, progress=False)  # imports, first calls
    for size in sizes:
        p = _patchy_scene(Path(tmp) / f"grow{size}.tif", size)  # the same patch in every 512-px block
        best = float("inf")
        for _ in range(2):  # best of two: one slow run on a shared machine is not growth
            t = time.perf_counter()
            counts[size] = len(gd.detect(p, detector, progress=False))
            best = min(best, time.perf_counter() - t)
        per_mp[size] = best / (size * size / 1e6)
        os.remove(p)
    vals = list(per_mp.values())
    spread = max(vals) / min(vals)
    name = getattr(detector, "spec", None).name if not isinstance(detector, str) else detector
    return dict(name="growth", value=vals[-1] * 1e3, reference=vals[0] * 1e3, unit="ms/MP", ratio=spread,
                target="<= 1.15", ok=spread <= 1.15,
                note=f"{name}: " + ", ".join(f"{s * s / 1e6:.0f} MP: {v * 1e3:.1f} ms/MP ({counts[s]:,} detections)"
                                            for s, v in per_mp.items()))


ONLY_DETECTORS: list = []  # --detectors: restrict the model figure


def bench_model(tmp, quick):
    """gd.detect vs the detector's own predict (its compiled tf.function) on the same tiles, already in memory.

    One row per deep detector (those with weights). The reference runs the
    model on the exact batches gd.detect fed it, with no reading, tiling,
    stitching or georeferencing.
    """
    import geodetect as gd
    from geodetect.plugins import list_detectors, resolve_detector
    from geodetect.simulate import make_scene

    kinds = {"vehicle-detector": ("vehicles", 0.3), "sea-lion-counter": ("sea-lions", 0.1),
             "water-segmenter": ("water", 30.0), "building-segmenter": ("urban", 0.3),
             "land-use-classifier": ("land-use", 1.0)}
    rows = []
    size = 1024 if quick else 2048
    for info in list_detectors(load=True):
        if info.error or not info.spec.weights_sha256 or (ONLY_DETECTORS and info.name not in ONLY_DETECTORS):
            continue
        det = resolve_detector(info.name)
        kind, _ = kinds.get(info.name, ("sea-lions", None))
        scene = make_scene(Path(tmp) / f"model-{info.name}.tif", kind=kind, size=(size, size), seed=4242,
                           **({"gsd_m": info.spec.gsd_m} if info.spec.gsd_m else {}))
        batches = []
        real_predict = det.predict

        def spy(tiles, _real=real_predict):
            batches.append(np.array(tiles))
            return _real(tiles)

        det.predict = spy
        try:
            gd.detect(scene.path, det, progress=False)  # warm-up (tracing) + capture the batches
        finally:
            det.predict = real_predict
        n_tiles = sum(len(b) for b in batches)

        def pipeline():
            gd.detect(scene.path, det, progress=False)

        def bare():
            for b in batches:
                real_predict(b)

        got, ref, ratio = _best_pair(pipeline, bare, 5)
        rows.append(dict(name=f"model:{info.name}", value=n_tiles / got, reference=n_tiles / ref, unit="tiles/s",
                         ratio=ratio, target=">= 0.85", ok=ratio >= 0.85,
                         note=f"{n_tiles} tiles of a {size}x{size} simulated {kind} scene"))
    if not rows:
        return dict(name="model", error="no detector with weights is installed")
    return rows


# the memory-hungry figures (10 M points, a Spark session) run last, so they cannot slow the others
FIGURES = {"io": bench_io, "io-windows": bench_io_windows, "first-call": bench_first_call,
           "per-scene": bench_per_scene, "stitch": bench_stitch, "memory": bench_memory, "growth": bench_growth,
           "model": bench_model, "spark": bench_spark, "aggregate": bench_aggregate,
           "spark-aggregate": bench_spark_aggregate}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not an hour)")
    ap.add_argument("--only", nargs="*", choices=sorted(FIGURES), help="run only these figures")
    ap.add_argument("--detectors", nargs="*", metavar="NAME", help="model figure: only these detectors")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to save the results")
    args = ap.parse_args(argv)
    ONLY_DETECTORS[:] = args.detectors or []
    results = []
    with tempfile.TemporaryDirectory(prefix="geodetect-bench-") as tmp:
        for name in args.only or list(FIGURES):
            t = time.perf_counter()
            try:
                r = FIGURES[name](tmp, args.quick)
            except Exception as exc:  # noqa: BLE001 - a failed figure is reported, the rest still run
                r = dict(name=name, error=f"{type(exc).__name__}: {exc}")
            for row in r if isinstance(r, list) else [r]:
                row["seconds"] = round(time.perf_counter() - t, 1)
                results.append(row)
                _print_row(row)
    meta = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
            "quick": args.quick, "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float))
    print(f"\n{meta['machine']}; results saved to {args.json}")
    return 0


def _print_row(r):
    if "error" in r:
        print(f"{r['name']:<12} not measured: {r['error']}")
        return
    flag = "ok " if r["ok"] else "MISS"
    print(f"{r['name']:<12} {flag} ratio {r['ratio']:7.2f} (target {r['target']:>10})  "
          f"value {r['value']:10.3f} {r['unit']:<12} reference {r['reference']:10.3f}  {r.get('note', '')}")


if __name__ == "__main__":
    sys.exit(main())
