"""Evaluate the vehicle detector on the real KIT AIS test bands (and simulated scenes); write eval_real.json.

    python plugins/vehicle_detector/evaluate.py [--data ../shared/data/vehicles-kit-ais] \
        [--json plugins/vehicle_detector/eval_real.json]

Everything goes through :func:`geodetect.detect` (scenes in, detections out):
each held-out band of a KIT AIS frame (the fixed split of ``kit_ais.py``:
frames AND columns never trained on) is written as a GeoTIFF with
:func:`geodetect.train.placement.write_placed` at the GSD measured from its
sequence's cars, the host resamples it to the detector's 0.15 m, and the
detections are scored against the labelled boxes with
:func:`geodetect.metrics.boxes.box_metrics` at IoU 0.5, in metres.

1. validation bands: detections down to score 0.05, F1 of ``car`` (the only
   class in them) at thresholds 0.10..0.70; the best one is the threshold
   the detector ships with (``VehicleDetector.score_threshold``; the JSON says
   whether they agree);
2. test bands, at the detector's threshold: precision, recall, F1 per class; AP
   from a run down to 0.05; the same on the quick subset the tests use; and car
   metrics on the same bands made grey (one band repeated) and placed at 0.85x
   and 1.15x the measured GSD;
3. simulated scenes (trucks have no real example): seeds 1..3 at 0.3 m and 5
   at 0.15 m (the one the tests use), 768 x 768 px;
4. speed: tiles/s and Mpx/s of ``gd.detect`` and of the bare compiled model on
   the same tiles, on a 2048 x 2048 simulated scene at 0.15 m.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import kit_ais as K  # type: ignore[no-redef]
else:
    from . import kit_ais as K

HERE = Path(__file__).resolve().parent
AP_SCORE_THRESHOLD = 0.05
THRESHOLDS = tuple(np.round(np.arange(0.10, 0.701, 0.05), 2))
#: (seed, GSD, vehicles) of the simulated evaluation scenes, 768 x 768 px (training uses seeds from 10000)
SIM_SCENES = ((1, 0.3, 70), (2, 0.3, 110), (3, 0.3, 50), (5, 0.15, 60))
SIM_SIZE = 768


def load_detector_class():
    """VehicleDetector, from the installed package."""
    return importlib.import_module("geodetect_plugins.vehicle_detector").VehicleDetector


def place_parts(parts, workdir) -> tuple[list[str], object]:
    """Write each part as a placed GeoTIFF; return the paths and the truth (GeoDataFrame, EPSG:32633)."""
    import geopandas as gpd
    import shapely

    from geodetect.train.placement import PLACEMENT_CRS, pixel_to_map, write_placed

    paths, rows = [], []
    for p in parts:
        paths.append(str(write_placed(p.image, Path(workdir) / f"{p.name}.tif", p.gsd_m)))
        lo = pixel_to_map(p.boxes[:, :2], p.gsd_m)
        hi = pixel_to_map(p.boxes[:, 2:], p.gsd_m)
        for (x0, y1), (x1, y0), c in zip(lo, hi, p.class_ids):
            rows.append((p.name, K.CLASSES[c], shapely.box(x0, y0, x1, y1)))
    truth = gpd.GeoDataFrame({"scene_id": [r[0] for r in rows], "class_name": [r[1] for r in rows]},
                             geometry=[r[2] for r in rows], crs=PLACEMENT_CRS)
    return paths, truth


def _metrics(dets, truth, classes):
    from geodetect.metrics.boxes import box_metrics

    return box_metrics(dets.to_crs(truth.crs), truth, classes, iou=0.5)


def _table(m) -> dict:
    return json.loads(m.to_json(orient="index"))


def _grey(img: np.ndarray) -> np.ndarray:
    """An RGB image as a panchromatic one: its luminance in all three bands."""
    y = np.round(img.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def detect_all(gd, det, paths, threshold, batch_size):
    old = det.score_threshold
    det.score_threshold = threshold
    try:
        return gd.detect(paths, det, progress=False, batch_size=batch_size)
    finally:
        det.score_threshold = old


def evaluate_real(det, data, batch_size: int = 8) -> dict:
    import geodetect as gd

    classes = det.spec.classes
    parts, gsd = K.load_parts(data, roles=("val", "test"))
    out = {"gsd_measurement": gsd,
           "split": {r: sorted(n for n, v in K.ROLES.items() if v == r) for r in ("train", "val", "test")},
           "bands": K.BANDS}
    with tempfile.TemporaryDirectory(prefix="vehicle-real-") as wd:
        val = [p for p in parts if p.role == "val"]
        vpaths, vtruth = place_parts(val, wd)
        vdets = detect_all(gd, det, vpaths, AP_SCORE_THRESHOLD, batch_size)
        sweep = {}
        for t in THRESHOLDS:
            m = _metrics(vdets[vdets.score >= t], vtruth, classes)
            sweep[float(t)] = {k: float(m.loc["car", k]) for k in ("precision", "recall", "f1")}
        best = max(sweep, key=lambda t: (round(sweep[t]["f1"], 6), -t))
        out["validation"] = {"frames": sorted({p.name for p in val}), "cars": int(sum((p.class_ids == 0).sum() for p in val)),
                             "car_f1_by_threshold": sweep, "chosen_threshold": best,
                             "detector_threshold": float(det.score_threshold),
                             "threshold_matches_validation": bool(abs(best - det.score_threshold) < 1e-9)}
        test = [p for p in parts if p.role == "test"]
        tpaths, ttruth = place_parts(test, wd)
        tdets = detect_all(gd, det, tpaths, det.score_threshold, batch_size)
        m = _metrics(tdets, ttruth, classes)
        low = detect_all(gd, det, tpaths, AP_SCORE_THRESHOLD, batch_size)
        m["ap_at_threshold"] = m["ap"]
        m["ap"] = _metrics(low, ttruth, classes)["ap"]
        out["test"] = {"frames": sorted({p.name for p in test}),
                       "per_sequence_cars": {s: int(sum((p.class_ids == 0).sum() for p in test if p.sequence == s))
                                             for s in K.SEQUENCES},
                       "metrics": _table(m)}
        per_seq = {}
        for s in K.SEQUENCES:
            ids = {p.name for p in test if p.sequence == s}
            ms = _metrics(tdets[tdets.scene_id.isin(ids)], ttruth[ttruth.scene_id.isin(ids)], classes)
            per_seq[s] = {k: float(ms.loc["car", k]) for k in ("n_true", "n_pred", "precision", "recall", "f1")}
        out["test"]["car_by_sequence"] = per_seq
        # robustness, same test bands: panchromatic (one grey band repeated), and placed 15 % finer / coarser
        # than measured (a wrong GSD, or a real one the host resamples differently)
        rob = {}
        for label, tweak, scale in (("grey", _grey, 1.0), ("gsd x0.85", None, 0.85), ("gsd x1.15", None, 1.15)):
            alt = [dataclasses.replace(p, image=tweak(p.image) if tweak else p.image, gsd_m=p.gsd_m * scale)
                   for p in test]
            apaths, atruth = place_parts(alt, os.path.join(wd, label.replace(" ", "_")))
            ma = _metrics(detect_all(gd, det, apaths, det.score_threshold, batch_size), atruth, classes)
            rob[label] = {k: float(ma.loc["car", k]) for k in ("n_true", "n_pred", "precision", "recall", "f1")}
        out["test_robustness"] = rob
        q = set(K.QUICK_TEST)
        mq = _metrics(tdets[tdets.scene_id.isin(q)], ttruth[ttruth.scene_id.isin(q)], classes)
        out["test_quick_subset"] = {"frames": sorted(q), "metrics": _table(mq)}
    return out


def evaluate_sim(det, batch_size: int = 8) -> dict:
    import geopandas as gpd
    import pandas as pd

    import geodetect as gd
    from geodetect.metrics.boxes import box_metrics
    from geodetect.simulate import make_scene
    from geodetect.simulate.vehicles import axis_aligned_truth

    res = {}
    with tempfile.TemporaryDirectory(prefix="vehicle-sim-") as wd:
        for gsd in sorted({g for _, g, _ in SIM_SCENES}):
            scenes = [make_scene(os.path.join(wd, f"eval_{s}.tif"), kind="vehicles", size=(SIM_SIZE, SIM_SIZE), gsd_m=g,
                                 n_objects=n, seed=s, class_mix=(0.55, 0.25, 0.2))
                      for s, g, n in SIM_SCENES if g == gsd]
            dets = gd.detect([s.path for s in scenes], det, progress=False, batch_size=batch_size)
            parts = []
            for s in scenes:
                t = axis_aligned_truth(s)
                t["scene_id"] = Path(s.path).stem
                parts.append(t)
            truth = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs="EPSG:4326")
            m = box_metrics(dets, truth, det.spec.classes, iou=0.5)
            res[f"{gsd:g} m"] = {"seeds": [s for s, g, _ in SIM_SCENES if g == gsd], "metrics": _table(m)}
    return res


def speed(det, batch_size: int = 8, size: int = 2048) -> dict:
    """gd.detect vs the bare compiled model on the same tiles of one simulated scene at the working GSD."""
    import rasterio

    import geodetect as gd
    from geodetect.io.tiling import Tiling
    from geodetect.simulate import make_scene

    spec = det.spec
    with tempfile.TemporaryDirectory(prefix="vehicle-speed-") as wd:
        sim = make_scene(os.path.join(wd, "speed.tif"), kind="vehicles", size=(size, size), gsd_m=spec.gsd_m,
                         n_objects=400, seed=4242)
        gd.detect(sim.path, det, progress=False, batch_size=batch_size)  # warm-up
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            d = gd.detect(sim.path, det, progress=False, batch_size=batch_size)
            best = min(best, time.perf_counter() - t)
        n_tiles = sum(st["tiles_run"] for st in d.attrs["geodetect"])
        with rasterio.open(sim.path) as ds:
            img = np.moveaxis(ds.read(), 0, -1).astype(np.float32) / 255.0
    tiling = Tiling(size, size, spec.tile_size, spec.overlap)
    tiles = np.stack([img[y:y + spec.tile_size, x:x + spec.tile_size] for x, y, _, _ in map(tiling.tile, range(len(tiling)))])
    det.predict(tiles[:batch_size])
    bare = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        for i in range(0, len(tiles), batch_size):
            det.predict(tiles[i:i + batch_size])
        bare = min(bare, time.perf_counter() - t)
    mpx = size * size / 1e6
    return {"scene_px": [size, size], "tiles": n_tiles, "tile_size": spec.tile_size, "overlap": spec.overlap,
            "batch_size": batch_size, "detect_seconds": round(best, 3), "detect_tiles_per_s": n_tiles / best,
            "detect_mpx_per_s": mpx / best, "detect_km2_per_min": mpx * spec.gsd_m ** 2 / best * 60,
            "bare_tiles_per_s": len(tiles) / bare, "bare_mpx_per_s": mpx / bare, "ratio": bare / best,
            "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}


def _f(v) -> str:
    """A metric for printing: 3 decimals, '-' where undefined (no truth of the class)."""
    return "-" if v is None or v != v else f"{v:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=K.DEFAULT_DATA)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", type=Path, default=None, help="write the numbers as JSON (the model card's source)")
    p.add_argument("--no-sim", action="store_true", help="skip the simulated scenes")
    p.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    p.add_argument("--speed-only", action="store_true", help="measure the speed again and replace only that part "
                   "of the --json file (for a quieter moment on a shared machine)")
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow, sha256_of

    configure_tensorflow(2)
    det = load_detector_class()()
    det.ensure_loaded()
    if a.speed_only:
        if not (a.json and a.json.is_file()):
            p.error("--speed-only needs an existing --json file")
        r = json.loads(a.json.read_text())
        if r["weights_sha256"] != sha256_of(det.weights):
            p.error(f"{a.json} was written for other weights; run the whole evaluation")
        r["speed"] = speed(det, a.batch_size)
        s = r["speed"]
        print(f"speed: gd.detect {s['detect_tiles_per_s']:.1f} tiles/s = {s['detect_mpx_per_s']:.2f} Mpx/s; bare model "
              f"{s['bare_tiles_per_s']:.1f} tiles/s; ratio {s['ratio']:.2f} (load average {s['load_average']:.1f})")
        a.json.write_text(json.dumps(r, indent=1, default=float) + "\n")
        return 0
    t0 = time.time()
    r = {"detector": det.spec.name, "version": det.spec.version, "weights_sha256": sha256_of(det.weights),
         "gsd_m": det.spec.gsd_m, "gsd_range": list(det.spec.gsd_range or ()), "iou": 0.5}
    r["real"] = evaluate_real(det, a.data, a.batch_size)
    v = r["real"]["validation"]
    print(f"validation ({len(v['frames'])} frames, {v['cars']} cars): car F1 by threshold "
          + ", ".join(f"{t}: {x['f1']:.3f}" for t, x in v["car_f1_by_threshold"].items()))
    print(f"chosen threshold {v['chosen_threshold']}; detector's {v['detector_threshold']}"
          + ("" if v["threshold_matches_validation"] else "  <-- DIFFERENT: set VehicleDetector.score_threshold"))
    print("\nreal test bands (" + ", ".join(r["real"]["test"]["frames"]) + ")")
    print("| class | truth | detections | precision | recall | F1 | AP@0.5 |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, row in r["real"]["test"]["metrics"].items():
        print(f"| {name} | {int(row['n_true'])} | {int(row['n_pred'])} | {_f(row['precision'])} | {_f(row['recall'])} "
              f"| {_f(row['f1'])} | {_f(row['ap'])} |")
    print("by sequence:", json.dumps(r["real"]["test"]["car_by_sequence"]))
    print("quick subset car F1:", round(r["real"]["test_quick_subset"]["metrics"]["car"]["f1"], 3))
    print("robustness, car F1: " + ", ".join(f"{k} {_f(v['f1'])}" for k, v in r["real"]["test_robustness"].items()))
    if not a.no_sim:
        r["simulated"] = evaluate_sim(det, a.batch_size)
        for g, s in r["simulated"].items():
            print(f"simulated {g}: " + ", ".join(f"{c} F1 {_f(s['metrics'][c]['f1'])} (n={int(s['metrics'][c]['n_true'])})"
                                              for c in det.spec.classes))
    if not a.no_speed:
        r["speed"] = speed(det, a.batch_size)
        s = r["speed"]
        print(f"speed: gd.detect {s['detect_tiles_per_s']:.1f} tiles/s = {s['detect_mpx_per_s']:.2f} Mpx/s; bare model "
              f"{s['bare_tiles_per_s']:.1f} tiles/s; ratio {s['ratio']:.2f} (load average {s['load_average']:.1f})")
    r["seconds"] = round(time.time() - t0, 1)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=float) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
