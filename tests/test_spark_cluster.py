"""A real Spark standalone cluster: a master and two one-core workers, separate JVM processes on 127.0.0.1.

One cluster for every check (it takes a while to start): detection and Sedona aggregation equal to a
local ``gd.detect`` / ``gd.aggregate``; tasks that fail mid-way are retried without duplicates; a
worker process killed mid-job still gives identical rows. Every process started is stopped after.
The driver runs in a subprocess, because this test process already holds the local ``spark`` session.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from detectors import spots

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "scripts"))

from spark_cluster import LocalCluster  # noqa: E402

DRIVER = r'''
import json, os, sys, threading, time
import numpy as np, pandas as pd, shapely, geopandas as gpd
import geodetect as gd
from geodetect import spark as gds
from geodetect.testing import assert_detections_equal
from detectors import BrightPoints, FlakyPoints

url, marks, kill_dir, *scenes = sys.argv[1:]
spark = gds.session(master=url, app_name="geodetect-cluster-test", conf={
    "spark.executor.memory": "512m", "spark.executor.cores": "1", "spark.cores.max": "2",
    "spark.task.maxFailures": "4", "spark.sql.shuffle.partitions": "4",
    "spark.executorEnv.PYTHONPATH": os.environ["PYTHONPATH"],
    "spark.executorEnv.GEODETECT_FLAKY_DIR": marks})
out = {"executors": None}
sc = spark.sparkContext

# 1. detection + Sedona aggregation on the cluster == local
local = gd.detect(scenes, BrightPoints, progress=False)
sdf = gds.detect(spark, scenes, BrightPoints, block_rows=2)
got = gds.to_geopandas(sdf)
assert_detections_equal(got, local, tolerance=1e-9)
x0, y0, x1, y1 = local.total_bounds
xs, ys = np.linspace(x0 - 1e-6, x1 + 1e-6, 4), np.linspace(y0 - 1e-6, y1 + 1e-6, 4)
cells = [shapely.box(xs[i], ys[j], xs[i + 1], ys[j + 1]) for i in range(3) for j in range(3)]
regions = gpd.GeoDataFrame({"cell": [f"c{k}" for k in range(9)]}, geometry=cells, crs="EPSG:4326")
want = gd.aggregate(local, regions, by="cell")
agg = gds.aggregate(sdf, regions, by="cell")
assert agg.attrs["geodetect"]["path"] == "sedona"
pd.testing.assert_frame_equal(agg.reset_index(drop=True), want.reset_index(drop=True), check_exact=True)
out["rows"], out["regions_with_detections"] = len(got), int((want["count"] > 0).sum())
out["executors"] = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver

# 2. two tasks fail mid-way and are retried: identical rows, no duplicates
flaky = gds.to_geopandas(gds.detect(spark, scenes, FlakyPoints, block_rows=2))
os.environ.pop("GEODETECT_FLAKY_DIR", None)
assert_detections_equal(flaky, gd.detect(scenes, FlakyPoints, progress=False))
out["failed_attempts"] = len(os.listdir(marks))

# 3. a worker killed mid-job: the test kills worker 1 once both executors are inside predict; Spark re-runs
#    the lost tasks on the other worker. The class is defined here, so cloudpickle ships it by value.
class SlowPoints(BrightPoints):
    def predict(self, tiles):
        open(os.path.join(kill_dir, f"started-{os.getpid()}"), "w").close()
        time.sleep(0.05)
        return super().predict(tiles)

t = time.perf_counter()
again = gds.to_geopandas(gds.detect(spark, scenes, SlowPoints, block_rows=1, batch_size=1))
out["job_after_kill_s"] = round(time.perf_counter() - t, 1)
assert_detections_equal(again, local, tolerance=1e-9)
out["executors_after_kill"] = sc._jsc.sc().getExecutorMemoryStatus().size() - 1
spark.stop()
print(json.dumps(out))
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_standalone_cluster_detect_aggregate_retry_and_lost_worker(write_raster, tmp_path):
    import threading
    import time

    pytest.importorskip("pyspark")
    was_killed = False
    scenes = [spots(write_raster, f"c{i}.tif", (420 + 37 * i, 300), 80, 20 + i) for i in range(3)]
    marks, kill_dir = tmp_path / "marks", tmp_path / "started"
    marks.mkdir()
    kill_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("GEODETECT_FLAKY_DIR", None)
    cluster = LocalCluster(workers=2, cores=1, memory="1g", log_dir=tmp_path / "cluster")
    pids = []
    killed = threading.Event()
    try:
        cluster.start()
        pids = cluster.pids()
        assert len(pids) == 3 and all(_alive(p) for p in pids)

        def killer():  # once two executor processes are inside predict, the job is running on both workers
            while not killed.is_set():
                if len(list(kill_dir.glob("started-*"))) >= 2:
                    cluster.kill_worker(1)
                    killed.set()
                    return
                time.sleep(0.05)

        th = threading.Thread(target=killer, daemon=True)
        th.start()
        proc = subprocess.run([sys.executable, "-c", DRIVER, cluster.url, str(marks), str(kill_dir), *scenes],
                              capture_output=True, text=True, timeout=900, env=env)
        was_killed = killed.is_set()
        killed.set()
        th.join(30)
        assert proc.returncode == 0, proc.stderr[-4000:]
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        cluster.stop()
    assert res["executors"] == 2  # two workers, one executor each
    assert res["rows"] > 150 and res["regions_with_detections"] >= 4
    assert res["failed_attempts"] == 2  # two tasks failed mid-way and were retried
    assert was_killed and cluster.workers[1].returncode is not None  # worker 1 really was killed mid-job
    assert res["executors_after_kill"] == 1
    time.sleep(1)
    assert not any(_alive(p) for p in pids), "a cluster process outlived the test"
