"""Evaluate the sea-lion counter through ``gd.detect`` on simulated rookeries never used in training
(the real photographs: ``evaluate_real.py``).

    python -m geodetect_plugins.sea_lion_counter.evaluate                  # LoG-only vs LoG+CNN (+ baseline if built)
    python -m geodetect_plugins.sea_lion_counter.evaluate --scenes 4 --json out.json

Scenes: ``dataset.EVAL_SEEDS`` (disjoint from the training and validation
seeds), 1024 x 1024 px at 0.1 m (some rendered at 0.05 m and resampled on
read), 50-300 animals each, the simulator's mix of textures, surf and clutter.
Every method runs through :func:`geodetect.detect` (tiles, seams,
georeferencing) and is scored on the georeferenced points:

* count RMSE (the Kaggle metric): per class the RMSE of the counts over the
  scenes, averaged over the five classes; also per class;
* point matching within ``--radius`` metres (default 0.75 m): precision,
  recall and F1 of finding animals, per-class P/R/F1 (class must agree), and
  the confusion matrix;
* seconds per scene.

Methods: ``log-only`` (the v0.1 classical stage: LoG at its original
threshold, class guessed from blob size and brightness), ``log+cnn`` (the
shipped weights), ``log+seed-cnn`` (the seed blog's network trained by
``train.py --baseline``, when ``build/seed_baseline.keras`` exists), and
``seed-grid`` (the blog's own counting: every non-overlapping 64x64 cell of the
scene classified once by the seed network, counts = cells per class), plus the
recall of the proposal stage alone (``proposals``).
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
BASELINE = HERE / "build" / "seed_baseline.keras"


def make_eval_scenes(n: int, workdir, *, first: int = 0, size: int = 1024):
    """Write ``n`` evaluation scenes; returns (paths, truth GeoDataFrame with scene_id)."""
    import pandas as pd

    from geodetect.simulate import make_scene
    from geodetect_plugins.sea_lion_counter.dataset import EVAL_SEEDS, scene_params

    paths, truths = [], []
    for seed in EVAL_SEEDS[first : first + n]:
        params = scene_params(seed, size=size)
        sim = make_scene(Path(workdir) / f"eval_{seed}.tif", **params)
        paths.append(sim.path)
        truths.append(sim.truth.assign(scene_id=f"eval_{seed}"))
    return paths, pd.concat(truths, ignore_index=True)


def score(dets, truth, scene_ids, radius_m: float) -> dict:
    """Count RMSE and point-matching numbers of one method."""
    from geodetect.counts import SEA_LION_CLASSES, counts
    from geodetect.metrics.points import count_rmse, match_points

    pred_c = counts(dets, scene_ids=scene_ids)
    true_c = counts(truth, scene_ids=scene_ids)
    rmse, per = count_rmse(pred_c, true_c, classes=SEA_LION_CLASSES, per_class=True)
    out = {"count_rmse": rmse, "count_rmse_per_class": per.round(3).to_dict(),
           "mean_abs_count_error_per_scene": float((pred_c - true_c).abs().to_numpy().mean()),
           "total_pred": int(pred_c.to_numpy().sum()), "total_true": int(true_c.to_numpy().sum())}
    if dets is not None and len(dets) and dets.geometry.geom_type.eq("Point").all():
        m = match_points(dets, truth, radius_m, classes=SEA_LION_CLASSES)
        out.update(precision=m.precision, recall=m.recall, f1=m.f1,
                   per_class=m.per_class[["n_true", "n_pred", "precision", "recall", "f1"]].round(3).to_dict("index"),
                   confusion=m.confusion.to_dict("index"))
    return out


def seed_grid_counts(paths, scene_ids, model_path):
    """The blog's inference: classify every non-overlapping 64x64 cell once; counts = cells per class."""
    import pandas as pd

    from geodetect.io.raster import open_scene
    from geodetect.plugins.weights import load_keras_model, sha256_of
    from geodetect_plugins.sea_lion_counter import CLASSES

    model = load_keras_model(model_path, sha256_of(model_path), detector="seed-grid")
    rows = []
    for p, sid in zip(paths, scene_ids):
        with open_scene(p, bands=(1, 2, 3), gsd_m=0.1) as sc:
            img, _ = sc.read(0, 0, sc.width, sc.height)
        h, w = (img.shape[0] // 64) * 64, (img.shape[1] // 64) * 64
        cells = img[:h, :w].reshape(h // 64, 64, w // 64, 64, 3).swapaxes(1, 2).reshape(-1, 64, 64, 3)
        pred = np.asarray(model.predict(cells, batch_size=256, verbose=0)).argmax(1)
        rows.append([int((pred == k).sum()) for k in range(len(CLASSES))])
    return pd.DataFrame(rows, index=pd.Index(scene_ids, name="scene_id"), columns=list(CLASSES))


def proposal_recall(paths, truth, radius_m: float) -> float:
    """Share of animals with a LoG proposal (the CNN's input) within ``radius_m``."""
    from scipy.spatial import cKDTree

    from geodetect.io.raster import open_scene
    from geodetect_plugins.sea_lion_counter import propose

    hit = n = 0
    for p in paths:
        sid = Path(p).stem
        t = truth[truth.scene_id == sid]
        with open_scene(p, bands=(1, 2, 3), gsd_m=0.1) as sc:
            img, _ = sc.read(0, 0, sc.width, sc.height)
            f = sc.factor[0]
        xy, *_ = propose(img, max_proposals=1 << 30)
        txy = np.column_stack([t.px_col, t.px_row]) * f
        if len(xy):
            d, _ = cKDTree(xy).query(txy)
            hit += int((d * 0.1 <= radius_m).sum())
        n += len(txy)
    return hit / max(n, 1)


def evaluate(n_scenes: int = 12, *, radius_m: float = 0.75, baseline: Path | None = BASELINE, workdir=None,
             log=print) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import geodetect as gd
    from geodetect.plugins.weights import sha256_of
    from geodetect_plugins.sea_lion_counter import SeaLionCounter

    results = {}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        t0 = time.time()
        paths, truth = make_eval_scenes(n_scenes, tmp)
        sids = [Path(p).stem for p in paths]
        log(f"{n_scenes} evaluation scenes, {len(truth)} animals "
            f"({truth.groupby('scene_id').size().min()}-{truth.groupby('scene_id').size().max()} per scene), "
            f"simulated in {time.time() - t0:.0f} s")
        results["scenes"] = {"n": n_scenes, "animals": int(len(truth)),
                             "per_class": truth.class_name.value_counts().to_dict()}
        methods = {"log-only": SeaLionCounter(cnn=False), "log+cnn": SeaLionCounter()}
        if baseline is not None and Path(baseline).is_file():
            methods["log+seed-cnn"] = SeaLionCounter(weights=baseline, sha256=sha256_of(baseline))
        for name, det in methods.items():
            t = time.time()
            dets = gd.detect(paths, det, progress=False)
            sec = (time.time() - t) / n_scenes
            results[name] = {**score(dets, truth, sids, radius_m), "seconds_per_scene": sec}
            r = results[name]
            log(f"{name:13s} count RMSE {r['count_rmse']:.3f}  P {r.get('precision', float('nan')):.3f} "
                f"R {r.get('recall', float('nan')):.3f} F1 {r.get('f1', float('nan')):.3f}  "
                f"{r['total_pred']}/{r['total_true']} animals  {sec:.1f} s/scene")
        if "log+seed-cnn" in methods:
            t = time.time()
            from geodetect.counts import SEA_LION_CLASSES, counts
            from geodetect.metrics.points import count_rmse

            grid = seed_grid_counts(paths, sids, baseline)
            rmse, per = count_rmse(grid, counts(truth, scene_ids=sids), classes=SEA_LION_CLASSES, per_class=True)
            results["seed-grid"] = {"count_rmse": rmse, "count_rmse_per_class": per.round(3).to_dict(),
                                    "total_pred": int(grid.to_numpy().sum()), "total_true": int(len(truth)),
                                    "seconds_per_scene": (time.time() - t) / n_scenes}
            log(f"{'seed-grid':13s} count RMSE {rmse:.3f}  {int(grid.to_numpy().sum())}/{len(truth)} animals")
        results["proposals"] = {"recall": proposal_recall(paths, truth, radius_m)}
        log(f"proposal stage recall within {radius_m} m: {results['proposals']['recall']:.3f}")
    results["radius_m"] = radius_m
    return results


def _markdown(res: dict) -> str:
    from geodetect_plugins.sea_lion_counter import CLASSES

    names = [k for k in ("log-only", "log+cnn", "log+seed-cnn", "seed-grid") if k in res]
    lines = ["| method | count RMSE (mean of classes) | " + " | ".join(CLASSES)
             + " | precision | recall | F1 | s/scene |",
             "|---" * (len(CLASSES) + 6) + "|"]
    for n in names:
        r = res[n]
        per = " | ".join(f"{r['count_rmse_per_class'][c]:.2f}" for c in CLASSES)
        prf = " | ".join(f"{r[k]:.3f}" if k in r else "-" for k in ("precision", "recall", "f1"))
        lines.append(f"| {n} | **{r['count_rmse']:.2f}** | {per} | {prf} | {r['seconds_per_scene']:.1f} |")
    for n in names:
        if "per_class" in res[n]:
            lines += ["", f"{n}: per class (radius {res['radius_m']} m)", "",
                      "| class | true | predicted | precision | recall | F1 |", "|---|---|---|---|---|---|"]
            for c, v in res[n]["per_class"].items():
                lines.append(f"| {c} | {v['n_true']} | {v['n_pred']} | {v['precision']:.3f} | {v['recall']:.3f} | "
                             f"{v['f1']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="evaluate.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenes", type=int, default=12)
    p.add_argument("--radius", type=float, default=0.75, help="matching radius in metres (default 0.75)")
    p.add_argument("--baseline", type=Path, default=BASELINE, help="seed-baseline weights (skipped if absent)")
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    res = evaluate(a.scenes, radius_m=a.radius, baseline=a.baseline)
    print()
    print(_markdown(res))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
