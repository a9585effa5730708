"""Choose the building segmenter's inference settings on the VALIDATION images only, through ``geodetect.detect``.

For the shipped weights, every combination of

* test-time augmentation ``tta`` (1 or 8 views averaged inside the compiled model),
* probability ``threshold`` (0.20, 0.25, ..., 0.60) and
* ``min_area_m2`` (building polygons smaller than this are dropped by the host; 0, 16, 64, 256 m²)

is scored on the validation images (``dubai.VAL_PARTS``; the test images are never read here), each
image placed at the declared 1.0 m and run through :func:`geodetect.detect` exactly as in
``evaluate_real.py``. The model runs once per image and ``tta``: its tile probabilities are kept and
given back to the host for each threshold and ``min_area_m2`` (the host path is run again every time).

Rule, fixed before any number was seen: the highest validation building IoU (summed over the split's
pixels); ties within 0.001 go to fewer views, then the smaller ``min_area_m2``, then the threshold
nearer 0.5. The table and the choice are written to ``val_sweep.json``.

    nice -n 19 python plugins/building_segmenter/tune_val.py [DATA_DIR] [--json val_sweep.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dubai as D  # type: ignore[no-redef]
    import evaluate_real as ER  # type: ignore[no-redef]
else:
    from . import dubai as D
    from . import evaluate_real as ER

HERE = Path(__file__).resolve().parent
# 0.4.0 runs at 1 m: four times the pixels of 0.3.0's 2 m for the host to polygonise per setting, so the grid is
# smaller than 0.3.0's (views 1, 4, 8; thresholds 0.15-0.60; min_area_m2 0, 8, 16, 32, 64, 128, 256), where 4 views
# and min_area_m2 had moved the validation IoU by at most 0.003 and 0.001
VIEWS = (1, 8)
THRESHOLDS = tuple(np.round(np.arange(0.20, 0.601, 0.05), 2).tolist())
MIN_AREAS = (0.0, 16.0, 64.0, 256.0)


def cached_detector(cls, tta: int):
    """A detector whose ``predict`` keeps each batch's masks (keyed by the tiles' bytes) and gives them back."""

    class Cached(cls):
        def __init__(self, **kw):
            super().__init__(tta=tta, **kw)
            self.cache, self.model_seconds = {}, 0.0

        def predict(self, tiles):
            key = hashlib.sha1(np.ascontiguousarray(tiles, np.float32).tobytes()).hexdigest()
            if key not in self.cache:
                t = time.perf_counter()
                self.cache[key] = super().predict(tiles)
                self.model_seconds += time.perf_counter() - t
            return self.cache[key]

        def set(self, threshold: float, min_area_m2: float):
            self.min_area_m2 = float(min_area_m2)
            self.spec = replace(cls.spec, threshold=float(threshold),
                                min_polygon_px=int(round(min_area_m2 / cls.spec.gsd_m ** 2)))
            return self

    return Cached()


def sweep(root, *, weights=None, gsd_m=None, gsd_range=None) -> dict:
    import geodetect as gd
    from geodetect.plugins.weights import configure_tensorflow
    from geodetect.train.placement import write_placed

    configure_tensorflow(1)
    cls = ER.load_detector_class(weights, gsd_m, gsd_range)
    val = D.load_split(root, "val")
    rows = []
    with tempfile.TemporaryDirectory(prefix="building-val-") as wd:
        paths = [write_placed(img, Path(wd) / (k.replace("/", "__") + ".tif"), D.DUBAI_GSD_M) for k, img, _ in val]
        for tta in VIEWS:
            det = cached_detector(cls, tta)
            det.ensure_loaded()
            gd.detect(paths[0], det.set(0.5, 8.0), progress=False)  # warm-up (tracing)
            det.cache.clear()
            det.model_seconds = 0.0
            t0 = time.perf_counter()
            for th in THRESHOLDS:
                for ma in MIN_AREAS:
                    det.set(th, ma)
                    total = np.zeros(4, np.int64)
                    for path, (key, img, tgt) in zip(paths, val):
                        dets = gd.detect(path, det, progress=False, batch_size=8)
                        total += ER.counts(_rasterise(dets, tgt.shape), tgt)
                    rows.append({"tta": tta, "threshold": th, "min_area_m2": ma, **ER.summary(total)})
            print(f"tta {tta}: model {det.model_seconds:.1f} s on the validation tiles; sweep "
                  f"{time.perf_counter() - t0:.0f} s; best IoU "
                  f"{max(r['iou'] for r in rows if r['tta'] == tta):.4f}", flush=True)
    best_iou = max(r["iou"] for r in rows)
    near = [r for r in rows if r["iou"] >= best_iou - 0.001]
    chosen = min(near, key=lambda r: (r["tta"], r["min_area_m2"], abs(r["threshold"] - 0.5)))
    per_tta = {t: max((r for r in rows if r["tta"] == t), key=lambda r: r["iou"]) for t in VIEWS}
    shipped = next((r for r in rows if (r["tta"], r["threshold"], r["min_area_m2"]) == (1, 0.3, 8.0)), None)
    return {"split": "val", "images": [k for k, _, _ in val], "declared_gsd_m": D.DUBAI_GSD_M,
            "weights_sha256": cls.spec.weights_sha256, "model_gsd_m": cls.spec.gsd_m,
            "grid": {"tta": VIEWS, "threshold": THRESHOLDS, "min_area_m2": MIN_AREAS},
            "rule": "highest validation IoU; ties within 0.001 -> fewer views, smaller min_area_m2, threshold nearer 0.5",
            "chosen": chosen, "best_per_tta": per_tta, "shipped_0_2_0": shipped, "table": rows}


def _rasterise(dets, shape):
    from rasterio.transform import from_origin

    from geodetect.metrics.segmentation import rasterize_classes
    from geodetect.train.placement import PLACEMENT_CRS, PLACEMENT_ORIGIN

    g = D.DUBAI_GSD_M
    return rasterize_classes(dets, ["building"], transform=from_origin(*PLACEMENT_ORIGIN, g, g), shape=shape,
                             crs=PLACEMENT_CRS) == 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=D.DEFAULT_ROOT, help="the Dubai folder")
    p.add_argument("--json", type=Path, default=HERE / "val_sweep.json", help="where to write the table")
    p.add_argument("--weights", type=Path, default=None,
                   help="score this weights file instead of the shipped one (a candidate, before it is shipped)")
    p.add_argument("--gsd", type=float, default=None, help="with --weights: the GSD (m) the candidate runs at")
    a = p.parse_args(argv)
    r = sweep(a.data, weights=a.weights, gsd_m=a.gsd,
              gsd_range=None if a.gsd is None else (0.25, a.gsd * 1.25))

    for t, b in r["best_per_tta"].items():
        print(f"best with tta {t}: IoU {b['iou']:.4f} at threshold {b['threshold']:.2f}, min_area_m2 "
              f"{b['min_area_m2']:g} (pixel accuracy {b['pixel_accuracy']:.4f})")
    s, c = r["shipped_0_2_0"], r["chosen"]
    if s is not None:
        print(f"shipped 0.2.0 settings (tta 1, 0.30, 8 m²): IoU {s['iou']:.4f}")
    print(f"chosen: tta {c['tta']}, threshold {c['threshold']:.2f}, min_area_m2 {c['min_area_m2']:g}: "
          f"validation IoU {c['iou']:.4f}, pixel accuracy {c['pixel_accuracy']:.4f}")
    a.json.write_text(json.dumps(r, indent=2, default=float) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
