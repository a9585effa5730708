"""Evaluate the water segmenter; print the model card's numbers.

1. Real: the held-out southern third of the Landsat SF Bay scene (rows
   1280-1916, all columns; training never saw them), scored against
   ``water-expert-optical`` on the same part: ``geodetect.evaluate.evaluate``
   with ``reference="water-expert-optical"`` (the code behind
   ``geodetect evaluate water-segmenter --data DIR --reference water-expert-optical
   --bands nir=1,red=2,green=3``). Both detectors run through ``geodetect.detect``.
2. Simulated: unseen water scenes (seeds 1..N, 1024 x 1024 at 30 m; training
   uses seeds from 10000 up) scored against their true water polygons, and
   the expert on the same scenes for comparison.

    python plugins/water_segmenter/evaluate.py [--sim-scenes 5] [--threads 1] [--json eval.json]

``--json`` (default ``eval.json`` beside this script) keeps every number the model card and the
README quote; the committed copy is the output of the last run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):
    sys.path.insert(0, str(HERE))
    import data as D  # type: ignore[no-redef]
else:
    from . import data as D

EVAL_SEEDS = range(1, 101)


def load_detector():
    return importlib.import_module("geodetect_plugins.water_segmenter").WaterSegmenter()


def write_sim_folder(folder: str, n: int, size: int = 1024) -> list[str]:
    """Simulated scenes with ``<stem>_truth.geojson`` beside each (what ``geodetect simulate`` writes)."""
    from geodetect.simulate import make_scene

    paths = []
    for seed in EVAL_SEEDS[:n]:
        sim = make_scene(os.path.join(folder, f"water_{seed}.tif"), kind="water", size=(size, size), seed=seed)
        sim.truth.to_file(os.path.join(folder, f"water_{seed}_truth.geojson"), driver="GeoJSON")
        paths.append(sim.path)
    return paths


def evaluate_real(det, workdir: str, rows=D.HOLDOUT_ROWS, cols=None):
    """Evaluation of ``det`` against the expert on a window of the Landsat scene (default: the held-out rows)."""
    from geodetect.evaluate import evaluate

    folder = os.path.join(workdir, "real")
    D.write_rows(D.landsat_path(), os.path.join(folder, "landsat_holdout.tif"), rows, cols)
    return evaluate(det, folder, reference="water-expert-optical", bands=D.LANDSAT_BANDS)


def throughput(det, path, bands=D.LANDSAT_BANDS, batch: int = 8, repeats: int = 5) -> tuple[float, float]:
    """(tiles/s through geodetect.detect, tiles/s of the bare compiled model on the same tiles).

    The two are timed alternately and the medians reported, so that both see the same machine.
    """
    import numpy as np

    import geodetect as gd
    from geodetect.io.raster import open_scene
    from geodetect.io.tiling import Tiling

    spec = det.spec
    dets = gd.detect(path, det, bands=bands, progress=False, batch_size=batch)  # warm-up (tracing)
    n = dets.attrs["geodetect"][0]["tiles_run"]
    with open_scene(path, bands=spec.bands, band_override=bands) as sc:
        tiling = Tiling(sc.width, sc.height, spec.tile_size, spec.overlap)
        tiles = np.stack([sc.read(*tiling.tile(i), pad_to=spec.tile_size)[0] for i in range(len(tiling))])
    det._run(tiles[:batch])
    piped, bare = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(tiles), batch):
            det._run(tiles[i:i + batch]).numpy()
        bare.append(len(tiles) / (time.perf_counter() - t))
        t = time.perf_counter()
        gd.detect(path, det, bands=bands, progress=False, batch_size=batch)
        piped.append(n / (time.perf_counter() - t))
    return float(np.median(piped)), float(np.median(bare))


def set_threads(threads: int) -> None:
    from geodetect.plugins.weights import configure_tensorflow

    configure_tensorflow(threads)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sim-scenes", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=HERE / "eval.json", help="write the numbers here (default: %(default)s)")
    a = p.parse_args(argv)
    out = {"detector": "water-segmenter", "threads": a.threads}

    def record(key, ev):
        out[key] = {"n_scenes": ev.n_scenes, **{k: (float(v) if isinstance(v, float) else v) for k, v in ev.summary.items()}}

    set_threads(a.threads)
    from geodetect.evaluate import evaluate

    det = load_detector()
    det.ensure_loaded()
    with tempfile.TemporaryDirectory(prefix="water-eval-") as wd:
        t = time.time()
        ev = evaluate_real(det, wd)
        record("real_holdout_vs_expert", ev)
        out["real_holdout_vs_expert"]["rows"] = list(D.HOLDOUT_ROWS)
        print(f"REAL held-out Landsat rows {D.HOLDOUT_ROWS[0]}-{D.HOLDOUT_ROWS[1] - 1} "
              f"({time.time() - t:.0f} s):\n{ev.to_text()}\n")
        piped, bare = throughput(det, os.path.join(wd, "real", "landsat_holdout.tif"))
        out["throughput"] = {"tiles_per_s": piped, "bare_tiles_per_s": bare, "ratio": piped / bare,
                             "mpx_per_s": piped * det.spec.tile_size ** 2 / 1e6, "tile_size": det.spec.tile_size}
        print(f"throughput on the held-out part (256 px tiles, batch 8, {a.threads} thread(s)): {piped:.1f} tiles/s "
              f"through geodetect.detect, {bare:.1f} tiles/s bare compiled model ({piped / bare:.0%})\n")
        sim_dir = os.path.join(wd, "sim")
        os.makedirs(sim_dir)
        write_sim_folder(sim_dir, a.sim_scenes)
        for name, d in (("water-segmenter", det), ("water-expert-optical", "water-expert-optical")):
            ev = evaluate(d, sim_dir)
            record(f"simulated_vs_truth_{name}", ev)
            print(f"SIMULATED seeds {EVAL_SEEDS[0]}..{EVAL_SEEDS[a.sim_scenes - 1]} vs truth, {name}:\n{ev.to_text()}\n")
        ev = evaluate(det, sim_dir, reference="water-expert-optical")
        record("simulated_vs_expert", ev)
        out["simulated_seeds"] = [EVAL_SEEDS[0], EVAL_SEEDS[a.sim_scenes - 1]]
        print(f"SIMULATED vs expert labels:\n{ev.to_text()}")
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
