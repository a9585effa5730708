"""Evaluate the vehicle detector on simulated scenes it never saw; print the model card's numbers.

Scenes: simulator seeds 1..10 (training uses seeds from 10000 up), 1024 x 1024
pixels at 0.3 m, 50 to 300 vehicles each, in five UTM zones. Detections come
from :func:`geodetect.detect` (tiling, seams, georeferencing: the whole host
path) and are scored with :func:`geodetect.metrics.boxes.box_metrics` against
the axis-aligned truth boxes at IoU 0.5, in metres.

    python plugins/vehicle_detector/evaluate.py [--scenes 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: (CRS, centre lon/lat) of the evaluation scenes, cycled
PLACES = [
    ("EPSG:32618", (-77.03, 38.89)),    # Washington DC
    ("EPSG:32631", (2.35, 48.86)),      # Paris
    ("EPSG:32654", (139.7, 35.68)),     # Tokyo
    ("EPSG:32756", (151.2, -33.87)),    # Sydney
    ("EPSG:32737", (36.82, -1.29)),     # Nairobi
]
N_OBJECTS = (50, 300, 120, 200, 80, 250, 150, 100, 180, 60)
EVAL_SEEDS = range(1, 11)
#: detections down to this score are ranked for AP (P/R/F1 use the detector's own threshold)
AP_SCORE_THRESHOLD = 0.05


def load_detector_class():
    """VehicleDetector, from the installed package."""
    return importlib.import_module("geodetect_plugins.vehicle_detector").VehicleDetector


def eval_scene_kwargs(k: int) -> dict:
    seed = EVAL_SEEDS[k]
    crs, centre = PLACES[k % len(PLACES)]
    return dict(crs=crs, center=centre, size=(1024, 1024), n_objects=N_OBJECTS[k % len(N_OBJECTS)], seed=seed)


def make_eval_scenes(workdir, n: int):
    from geodetect.simulate import make_scene

    return [make_scene(os.path.join(workdir, f"eval_{EVAL_SEEDS[k]}.tif"), kind="vehicles", **eval_scene_kwargs(k))
            for k in range(n)]


def truth_table(scenes):
    import pandas as pd

    from geodetect.simulate.vehicles import axis_aligned_truth

    parts = []
    for s in scenes:
        t = axis_aligned_truth(s)
        t["scene_id"] = Path(s.path).stem
        parts.append(t)
    import geopandas as gpd

    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs="EPSG:4326")


def bare_throughput(det, path, batch: int = 8, repeats: int = 3) -> float:
    """Tiles/s of the compiled tf.function alone on the tiles of one scene (no I/O, no stitching)."""
    import rasterio

    from geodetect.io.tiling import Tiling

    spec = det.spec
    with rasterio.open(path) as ds:
        img = np.moveaxis(ds.read(), 0, -1).astype(np.float32) / 255.0
    tiling = Tiling(img.shape[1], img.shape[0], spec.tile_size, spec.overlap)
    tiles = np.stack([img[y:y + spec.tile_size, x:x + spec.tile_size] for x, y, _, _ in map(tiling.tile, range(len(tiling)))])
    det._run(tiles[:batch])  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(tiles), batch):
            [v.numpy() for v in det._run(tiles[i:i + batch])]
    return repeats * len(tiles) / (time.perf_counter() - t)


def evaluate(n_scenes: int = 10, batch_size: int = 8, threads: int = 2) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow

    import geodetect as gd
    from geodetect.metrics.boxes import box_metrics

    configure_tensorflow(threads)
    cls = load_detector_class()
    det = cls()
    det.ensure_loaded()
    with tempfile.TemporaryDirectory(prefix="vehicle-eval-") as wd:
        scenes = make_eval_scenes(wd, n_scenes)
        truth = truth_table(scenes)
        gd.detect(scenes[0].path, det, progress=False, batch_size=batch_size)  # warm-up (tracing)
        t0 = time.perf_counter()
        dets = gd.detect([s.path for s in scenes], det, progress=False, batch_size=batch_size)
        elapsed = time.perf_counter() - t0
        tiles = sum(st["tiles_run"] for st in dets.attrs["geodetect"])
        bare = bare_throughput(det, scenes[0].path, batch_size)
        # AP ranks every detection: run again with a low score threshold
        op = det.score_threshold
        det.score_threshold = AP_SCORE_THRESHOLD
        try:
            all_dets = gd.detect([s.path for s in scenes], det, progress=False, batch_size=batch_size)
        finally:
            det.score_threshold = op
    m = box_metrics(dets, truth, cls.spec.classes, iou=0.5)
    m["ap_at_threshold"] = m["ap"]
    m["ap"] = box_metrics(all_dets, truth, cls.spec.classes, iou=0.5)["ap"]
    return {
        "scenes": n_scenes,
        "seeds": list(EVAL_SEEDS[:n_scenes]),
        "vehicles": {c: int((truth.class_name == c).sum()) for c in cls.spec.classes},
        "vehicles_per_scene": [len(s.truth) for s in scenes],
        "metrics": m,
        "detect_tiles_per_s": tiles / elapsed,
        "bare_tiles_per_s": bare,
        "tiles": tiles,
        "score_threshold": det.score_threshold,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    a = p.parse_args(argv)
    r = evaluate(a.scenes, a.batch_size)
    m = r["metrics"]
    print(f"{r['scenes']} unseen simulated scenes (seeds {r['seeds'][0]}..{r['seeds'][-1]}), vehicles per scene "
          f"{min(r['vehicles_per_scene'])}..{max(r['vehicles_per_scene'])}, "
          + ", ".join(f"{k} {v}" for k, v in r["vehicles"].items()))
    print(f"score threshold {r['score_threshold']}, IoU 0.5\n")
    print(f"| class | truth | detections | precision | recall | F1 | AP@0.5 (scores >= {AP_SCORE_THRESHOLD}) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in m.iterrows():
        print(f"| {name} | {int(row.n_true)} | {int(row.n_pred)} | {row.precision:.3f} | {row.recall:.3f} | {row.f1:.3f} "
              f"| {row.ap:.3f} |")
    print(f"\nthroughput: {r['detect_tiles_per_s']:.1f} tiles/s through geodetect.detect ({r['tiles']} tiles of "
          f"256 px, I/O, stitching and georeferencing included); {r['bare_tiles_per_s']:.1f} tiles/s for the bare "
          "compiled tf.function on the same tiles")
    if a.json:
        out = {k: v for k, v in r.items() if k != "metrics"}
        out["metrics"] = json.loads(m.to_json(orient="index"))
        a.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
