"""Evaluate the sea-lion counter on the real NOAA photographs, through ``gd.detect``; writes ``eval_real.json``.

    python -m geodetect_plugins.sea_lion_counter.evaluate_real                 # -> eval_real.json beside the card
    python -m geodetect_plugins.sea_lion_counter.evaluate_real --data PATH --json out.json

Each photograph is placed at :data:`~geodetect_plugins.sea_lion_counter.real.PHOTO_GSD_M`
(3.5 cm) with :func:`geodetect.train.placement.write_placed` and run through
:func:`geodetect.detect` (read at 0.1 m, tiles, seams, georeferencing); its
dots, placed the same way, are the truth. Splits (``real.py``): the test
photographs 42 and 50 (plain copies, nothing painted) give the headline
numbers; the validation photograph 45 (painted) is where the acceptance
threshold was chosen (the sweep is written too; the test split is never used
to choose anything).

Metrics, as in the seed (the Kaggle competition) plus point matching:

* ``count_rmse``: per class, the RMSE of the per-photograph counts, averaged
  over the five classes (the Kaggle metric); per class too;
* ``relative_count_error``: per photograph |found - true| / true animals (all
  classes together), and its mean over the photographs;
* point matching within ``radius_m`` (default 1.0 m, half an adult female's
  length: the Kaggle dots sit anywhere on the body), regardless of class:
  precision, recall, F1; per class (class must agree) and the confusion.

Also: ``painted_check`` runs photograph 42 a second time as its dotted copy
with the dots painted out (as the training photographs are), to show what
painting does to the numbers; ``speed`` times ``predict`` on real 256 x 256
tiles at 0.1 m (tiles/s, Mpx/s) and ``gd.detect`` per photograph.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "eval_real.json"
RADIUS_M = 1.0
#: the test photograph the quality test runs (tests/test_sealions.py)
SUBSET = "42"
SWEEP = (0.5, 0.7, 0.8, 0.9, 0.93, 0.95, 0.96, 0.97)


def place(photos, workdir, gsd_m: float):
    """Placed GeoTIFFs of ``photos`` and their truth (GeoDataFrame, EPSG:32633, scene_id = train id)."""
    import geopandas as gpd
    import pandas as pd

    from geodetect.train.placement import PLACEMENT_CRS, pixel_to_map, write_placed
    from geodetect_plugins.sea_lion_counter import CLASSES

    paths, truths = [], []
    for ph in photos:
        paths.append(str(write_placed(ph.image, Path(workdir) / f"{ph.train_id}.tif", gsd_m)))
        xy = pixel_to_map(ph.xy, gsd_m)
        truths.append(gpd.GeoDataFrame({"scene_id": ph.train_id, "class_name": [CLASSES[k] for k in ph.class_ids]},
                                       geometry=gpd.points_from_xy(xy[:, 0], xy[:, 1]), crs=PLACEMENT_CRS))
    return paths, gpd.GeoDataFrame(pd.concat(truths, ignore_index=True), crs=PLACEMENT_CRS)


def score(dets, truth, scene_ids, radius_m: float = RADIUS_M) -> dict:
    """Count RMSE, per-photograph relative count error and point matching (see the module docstring)."""
    from geodetect.counts import counts
    from geodetect.metrics.points import count_rmse, match_points
    from geodetect_plugins.sea_lion_counter import CLASSES

    pred_c = counts(dets, scene_ids=scene_ids)
    true_c = counts(truth, scene_ids=scene_ids)
    rmse, per = count_rmse(pred_c, true_c, classes=CLASSES, per_class=True)
    n_pred, n_true = pred_c.sum(axis=1), true_c.sum(axis=1)
    rel = (n_pred - n_true).abs() / n_true.clip(lower=1)
    m = match_points(dets, truth, radius_m, classes=CLASSES)
    return {
        "photographs": list(scene_ids),
        "count_rmse": float(rmse), "count_rmse_per_class": {k: round(float(v), 3) for k, v in per.items()},
        "relative_count_error_mean": float(rel.mean()),
        "per_photograph": {sid: {"true": int(n_true[sid]), "found": int(n_pred[sid]),
                                 "relative_count_error": round(float(rel[sid]), 4),
                                 "true_per_class": true_c.loc[sid].astype(int).tolist(),
                                 "found_per_class": pred_c.loc[sid].astype(int).tolist()} for sid in scene_ids},
        "radius_m": radius_m, "precision": float(m.precision), "recall": float(m.recall), "f1": float(m.f1),
        "per_class": m.per_class[["n_true", "n_pred", "precision", "recall", "f1"]].round(3).to_dict("index"),
        "confusion": m.confusion.to_dict("index"),
    }


def _detect(paths, det):
    import geodetect as gd

    t = time.perf_counter()
    dets = gd.detect(paths, det, progress=False)
    return dets, time.perf_counter() - t


def sweep(dets, truth, scene_ids, radius_m: float = RADIUS_M, values=SWEEP) -> dict:
    """Scores of ``dets`` kept at score > each value (the acceptance threshold), on validation only."""
    out = {}
    for v in values:
        r = score(dets[dets.score > v], truth, scene_ids, radius_m)
        out[f"{v:.2f}"] = {k: round(r[k], 4) for k in ("f1", "precision", "recall", "relative_count_error_mean",
                                                        "count_rmse")}
    return out


def speed(det, image, *, n_tiles: int = 48, batch: int = 8) -> dict:
    """``predict`` on real 256 x 256 tiles of ``image`` read at 0.1 m: tiles/s and Mpx/s."""
    from geodetect_plugins.sea_lion_counter.real import PHOTO_GSD_M, read_placed

    grid, _ = read_placed(image, PHOTO_GSD_M)
    s = det.spec.tile_size
    step = s - det.spec.overlap
    tiles = np.stack([grid[r : r + s, c : c + s] for r in range(0, grid.shape[0] - s + 1, step)
                      for c in range(0, grid.shape[1] - s + 1, step)])[:n_tiles].astype(np.float32)
    det.predict(tiles[:batch])  # warm-up (tracing)
    t = time.perf_counter()
    for i in range(0, len(tiles), batch):
        det.predict(tiles[i : i + batch])
    sec = time.perf_counter() - t
    return {"tiles": len(tiles), "tile_size": s, "batch": batch, "seconds": round(sec, 3),
            "tiles_per_s": round(len(tiles) / sec, 2), "mpx_per_s": round(len(tiles) * s * s / 1e6 / sec, 3)}


def evaluate_real(data, *, radius_m: float = RADIUS_M, ids=None, painted_check: bool = True,
                  with_sweep: bool = True, with_speed: bool = True, workdir=None, log=print) -> dict:
    """The numbers of ``eval_real.json`` (``ids``: a subset of the test photographs, e.g. for a test)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import sha256_of
    from geodetect_plugins.sea_lion_counter import WEIGHTS, SeaLionCounter
    from geodetect_plugins.sea_lion_counter.real import PHOTO_GSD_M, TEST, VAL, load_photos

    log = log or (lambda *a: None)
    det = SeaLionCounter()
    det.ensure_loaded()
    res = {"data": str(data), "weights_sha256": sha256_of(WEIGHTS), "placement_gsd_m": PHOTO_GSD_M,
           "detector_gsd_m": det.spec.gsd_m, "accept": det.accept, "radius_m": radius_m}
    test_ids = tuple(ids) if ids is not None else TEST
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        test = load_photos(data, test_ids)
        paths, truth = place(test, tmp, PHOTO_GSD_M)
        dets, sec = _detect(paths, det)
        res["test"] = {**score(dets, truth, list(test_ids), radius_m), "seconds_per_photograph": sec / len(paths)}
        _log_line(log, f"test {test_ids}", res["test"])
        if ids is None:  # the subset the quality test runs (one photograph, to stay within a minute)
            res["test_subset"] = score(dets[dets.scene_id == SUBSET], truth[truth.scene_id == SUBSET], [SUBSET],
                                       radius_m)
            _log_line(log, f"test subset {SUBSET}", res["test_subset"])
        if ids is None:
            val = load_photos(data, VAL)
            vpaths, vtruth = place(val, tmp, PHOTO_GSD_M)
            vdets, _ = _detect(vpaths, det)
            res["val"] = score(vdets, vtruth, list(VAL), radius_m)
            _log_line(log, f"val {VAL}", res["val"])
            if with_sweep:
                low, _ = _detect(vpaths, SeaLionCounter(accept=min(SWEEP) - 0.05))
                res["val_accept_sweep"] = sweep(low, vtruth, list(VAL), radius_m)
                for k, v in res["val_accept_sweep"].items():
                    log(f"  val accept {k}: {v}")
        if painted_check and "42" in test_ids:
            from geodetect.train.kaggle_dotted import find_dots_alone, paint_dots
            from geodetect.train.kaggle_sealions import read_rgb
            from geodetect_plugins.sea_lion_counter import CLASSES
            from geodetect_plugins.sea_lion_counter.real import Photo

            dotted = read_rgb(Path(data) / "TrainDotted" / "42.jpg")
            dd = find_dots_alone(dotted)
            ph = Photo("42", paint_dots(dotted, dd[["x", "y"]].to_numpy()), dd[["x", "y"]].to_numpy(),
                       np.array([CLASSES.index(c) for c in dd["class_name"]]), True)
            ppaths, ptruth = place([ph], Path(tmp) / "painted", PHOTO_GSD_M)
            pdets, _ = _detect(ppaths, det)
            plain = score(dets[dets.scene_id == "42"], truth[truth.scene_id == "42"], ["42"], radius_m)
            painted = score(pdets, ptruth, ["42"], radius_m)
            res["painted_check"] = {
                "photograph": "42",
                "plain": {k: plain[k] for k in ("f1", "precision", "recall", "relative_count_error_mean")},
                "painted": {k: painted[k] for k in ("f1", "precision", "recall", "relative_count_error_mean")},
            }
            log(f"painted check on 42: {res['painted_check']}")
        if with_speed:
            res["speed"] = speed(det, test[0].image)
            log(f"speed: {res['speed']}")
    return res


def _log_line(log, name, r):
    log(f"{name}: count RMSE {r['count_rmse']:.3f}  relative count error {r['relative_count_error_mean']:.3f}  "
        f"P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f}  "
        + "  ".join(f"{k}: {v['found']}/{v['true']}" for k, v in r["per_photograph"].items()))


def main(argv=None) -> int:
    from geodetect_plugins.sea_lion_counter.real import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="evaluate_real.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--radius", type=float, default=RADIUS_M, help=f"matching radius in metres (default {RADIUS_M})")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    from geodetect.plugins.weights import configure_tensorflow

    configure_tensorflow(a.threads)
    res = evaluate_real(a.data, radius_m=a.radius)
    res["threads"] = a.threads
    a.json.write_text(json.dumps(res, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
