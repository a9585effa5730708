"""Evaluate the land-use classifier on simulated scenes it never saw; print the model card's numbers.

Scenes: simulator seeds 1..N (training uses 10000+, validation 20000+),
1344 x 1344 px at 1 m (36 tiles of 224 px each), in five UTM zones. Two sets:

* ``grid``: zones aligned to the 224-px tile grid (every tile's label unambiguous) — the target set;
* ``irregular``: wobbly Voronoi zones (tiles straddle zones; the truth is the class at the tile centre).

Each scene is written with its ``<stem>_truth.geojson`` beside it and scored by
:func:`geodetect.evaluate.evaluate` (the code behind ``geodetect evaluate``):
detections come from :func:`geodetect.detect`, each tile footprint is scored
against the truth class at its centre, six-class and with the seed's
three-class grouping.

    python plugins/land_use_classifier/evaluate.py [--scenes 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (CRS, centre lon/lat) of the evaluation scenes, cycled
PLACES = [
    ("EPSG:32619", (-71.35, 42.45)),    # Middlesex County, MA (the seed's study area)
    ("EPSG:32615", (-93.6, 41.6)),      # Iowa
    ("EPSG:32613", (-104.9, 39.7)),     # Colorado
    ("EPSG:32610", (-121.5, 38.5)),     # California
    ("EPSG:32617", (-81.4, 28.5)),      # Florida
]
EVAL_SEED0 = 1


def load_plugin():
    name = "geodetect_plugins.land_use_classifier"
    return importlib.import_module(name)


def write_eval_scenes(folder: Path, n: int, layout: str) -> list:
    from geodetect.simulate import make_scene

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        seed = EVAL_SEED0 + k
        crs, centre = PLACES[k % len(PLACES)]
        kw = dict(layout=layout, zone_px=224 if layout == "grid" else 320)
        s = make_scene(folder / f"landuse_{layout}_{seed}.tif", kind="land-use", crs=crs, center=centre,
                       size=(1344, 1344), seed=seed, epoch=k % 2, **kw)
        s.truth.to_file(folder / f"landuse_{layout}_{seed}_truth.geojson", driver="GeoJSON")
        out.append(s)
    return out


def purity_breakdown(det, folder: Path, grouping: dict, cut: float = 0.8) -> dict:
    """Accuracy of tiles whose centre class covers >= ``cut`` of the tile ("pure") and of the others ("mixed").

    Uses the same rule as :func:`geodetect.evaluate.evaluate` (truth = the class at the tile centre);
    purity is the share of the footprint's area inside the zones of that class (in the scene's UTM zone).
    """
    import geopandas as gpd
    import numpy as np

    import geodetect as gd

    rows = []
    for scene in sorted(folder.glob("*.tif")):
        dets = gd.detect(str(scene), det, progress=False)
        truth = gpd.read_file(scene.with_name(scene.stem + "_truth.geojson"))
        utm = dets.estimate_utm_crs()
        d, t = dets.to_crs(utm), truth.to_crs(utm)
        for geom, pred in zip(d.geometry, d.class_name):
            centre = geom.centroid
            true = t.class_name[t.contains(centre)]
            if len(true) == 0:
                continue
            true = true.iloc[0]
            share = t[t.class_name == true].intersection(geom).area.sum() / geom.area
            rows.append((share, pred == true, grouping[pred] == grouping[true]))
    a = np.array(rows, float).reshape(-1, 3)
    out = {}
    for name, m in (("pure", a[:, 0] >= cut), ("mixed", a[:, 0] < cut)):
        out[name] = {"tiles": int(m.sum()), "accuracy": float(a[m, 1].mean()) if m.any() else float("nan"),
                     "accuracy_three": float(a[m, 2].mean()) if m.any() else float("nan")}
    out["cut"] = cut
    return out


def evaluate(n_scenes: int = 10, layouts=("grid", "irregular"), threads: int = 1) -> dict:
    from geodetect.evaluate import evaluate as gd_evaluate
    from geodetect.plugins.weights import configure_tensorflow

    configure_tensorflow(threads)
    mod = load_plugin()
    det = mod.LandUseClassifier()
    det.ensure_loaded()
    results = {}
    with tempfile.TemporaryDirectory(prefix="landuse-eval-") as wd:
        for layout in layouts:
            folder = Path(wd) / layout
            write_eval_scenes(folder, n_scenes, layout)
            t0 = time.perf_counter()
            six = gd_evaluate(det, folder)
            elapsed = time.perf_counter() - t0
            three = gd_evaluate(det, folder, grouping="three-class")
            results[layout] = {"six": six, "three": three, "seconds": elapsed}
            if layout == "irregular":
                results[layout]["purity"] = purity_breakdown(det, folder, mod.THREE_CLASS)
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=10)
    p.add_argument("--layouts", default="grid,irregular")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    res = evaluate(a.scenes, tuple(a.layouts.split(",")), a.threads)
    for layout, r in res.items():
        print(f"=== {a.scenes} unseen simulated scenes, {layout} zones (seeds {EVAL_SEED0}..{EVAL_SEED0 + a.scenes - 1}); "
              f"scored in {r['seconds']:.0f} s ===")
        print("--- six classes ---")
        print(r["six"].to_text())
        print("--- three classes (developed, cultivated, undeveloped) ---")
        print(r["three"].to_text())
        if "purity" in r:
            pb = r["purity"]
            for k in ("pure", "mixed"):
                print(f"{k} tiles (centre class covers {'>=' if k == 'pure' else '<'} {pb['cut']:.0%} of the tile): "
                      f"{pb[k]['tiles']}, accuracy {pb[k]['accuracy']:.3f} six-class, "
                      f"{pb[k]['accuracy_three']:.3f} three-class")
    return 0


if __name__ == "__main__":
    sys.exit(main())
