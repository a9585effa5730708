"""Score the building segmenter on the real Dubai images it never trained on, through ``geodetect.detect``.

Each image of the split (fixed in ``dubai.py``: test = ``image_part_003`` and
``_007`` of every tile, validation = ``image_part_005``) is written as a
GeoTIFF at the declared 1.0 m (``geodetect.train.placement.write_placed``),
run through :func:`geodetect.detect` (tiling, blending, threshold, polygons,
georeferencing: the whole host path), and the building polygons that come out
are rasterised on the image's grid and compared pixel by pixel with the
true mask (unlabelled pixels left out): building IoU and pixel accuracy, the
U-Net thesis' metrics, summed over the split's pixels. Also scored: the fixed
subset the real-data test uses (``dubai.QUICK_TEST``), each image, and the
speed of ``gd.detect`` and of the bare compiled model on the same tiles.

    nice -n 5 python plugins/building_segmenter/evaluate_real.py [DATA_DIR] [--json eval_real.json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dubai as D  # type: ignore[no-redef]
    import evaluate as E  # type: ignore[no-redef]
else:
    from . import dubai as D
    from . import evaluate as E

HERE = Path(__file__).resolve().parent


def load_detector_class(weights=None, gsd_m: float | None = None, gsd_range=None):
    """BuildingSegmenter, from the installed package; with ``weights``, a subclass that runs that file (its own
    sha256) at ``gsd_m`` / ``gsd_range``: a candidate scored before it is shipped."""
    cls = importlib.import_module("geodetect_plugins.building_segmenter").BuildingSegmenter
    if weights is None:
        return cls
    from dataclasses import replace

    from geodetect.plugins.weights import sha256_of

    digest = sha256_of(weights)
    spec = replace(cls.spec, weights_sha256=digest, gsd_m=float(gsd_m or cls.spec.gsd_m),
                   gsd_range=tuple(gsd_range or cls.spec.gsd_range))

    class Candidate(cls):
        def __init__(self, **kw):
            kw.setdefault("weights", weights)
            kw.setdefault("sha256", digest)
            super().__init__(**kw)

    Candidate.spec = spec
    return Candidate


def detect_masks(det, images, folder, *, batch_size: int = 8, gsd_m: float = D.DUBAI_GSD_M):
    """Run ``gd.detect`` on each (key, image, target) placed at ``gsd_m``; yield (key, pred bool, target, stats)."""
    from rasterio.transform import from_origin

    import geodetect as gd
    from geodetect.metrics.segmentation import rasterize_classes
    from geodetect.train.placement import PLACEMENT_CRS, PLACEMENT_ORIGIN, write_placed

    for key, img, tgt in images:
        path = write_placed(img, Path(folder) / (key.replace("/", "__") + ".tif"), gsd_m)
        t = time.perf_counter()
        dets = gd.detect(path, det, progress=False, batch_size=batch_size)
        secs = time.perf_counter() - t
        pred = rasterize_classes(dets, ["building"], transform=from_origin(*PLACEMENT_ORIGIN, gsd_m, gsd_m),
                                 shape=tgt.shape, crs=PLACEMENT_CRS) == 1
        st = dets.attrs["geodetect"][0]
        yield key, pred, tgt, dict(seconds=secs, tiles=int(st["tiles_run"]), polygons=len(dets))


def counts(pred, tgt) -> np.ndarray:
    """(tp, fp, fn, tn) of the building class over labelled pixels."""
    ok, true = tgt != 255, tgt == 1
    return np.array([np.sum(pred & true & ok), np.sum(pred & ~true & ok), np.sum(~pred & true & ok),
                     np.sum(~pred & ~true & ok)], np.int64)


def summary(c) -> dict:
    tp, fp, fn, tn = (int(v) for v in c)
    n = tp + fp + fn + tn
    return {"iou": tp / max(tp + fp + fn, 1), "pixel_accuracy": (tp + tn) / max(n, 1),
            "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1),
            "building_share": (tp + fn) / max(n, 1), "labelled_pixels": n}


def score_split(det, images, folder, batch_size: int = 8) -> dict:
    per, total, quick = {}, np.zeros(4, np.int64), np.zeros(4, np.int64)
    secs = tiles = px = 0
    for key, pred, tgt, st in detect_masks(det, images, folder, batch_size=batch_size):
        c = counts(pred, tgt)
        total += c
        if key in D.QUICK_TEST:
            quick += c
        per[key] = {**summary(c), **st}
        secs += st["seconds"]
        tiles += st["tiles"]
        px += tgt.size
    out = {"images": len(images), "scores": summary(total), "per_image": per,
           "detect_seconds": secs, "tiles": tiles, "megapixels": px / 1e6}
    if quick.sum():
        out["quick_subset"] = {"images": [k for k in D.QUICK_TEST if k in per], "scores": summary(quick)}
    return out


def evaluate(root, splits=("val", "test"), *, batch_size: int = 8, threads: int = 1) -> dict:
    from geodetect.plugins.weights import configure_tensorflow

    configure_tensorflow(threads)
    det = load_detector_class()()
    det.ensure_loaded()
    spec = det.spec
    out = {"data": "buildings-dubai (Humans in the Loop, MBRSC imagery, CC0)", "declared_gsd_m": D.DUBAI_GSD_M,
           "spec": {"gsd_m": spec.gsd_m, "gsd_range": list(spec.gsd_range), "tile_size": spec.tile_size,
                    "overlap": spec.overlap, "threshold": spec.threshold, "min_polygon_px": spec.min_polygon_px,
                    "tta_views": det.tta},
           "weights_sha256": det.sha256, "threads": threads, "batch_size": batch_size,
           "split_rule": {"test": list(D.TEST_PARTS), "val": list(D.VAL_PARTS), "train": "the other parts"}}
    out["gsd_evidence"] = {"road_width_px_per_tile": D.road_widths_px(root),
                           "note": "most roads in these masks are 7-10 m residential streets"}
    with tempfile.TemporaryDirectory(prefix="building-real-") as wd:
        for split in splits:
            images = D.load_split(root, split)
            if split == splits[0]:  # warm-up (tracing), not timed
                list(detect_masks(det, images[:1], wd, batch_size=batch_size))
            out[split] = score_split(det, images, wd, batch_size)
            if split == "test":
                big = max(images, key=lambda r: r[1].shape[0] * r[1].shape[1])
                out["speed"] = {
                    "detect_tiles_per_s": out[split]["tiles"] / out[split]["detect_seconds"],
                    "detect_mpx_per_s": out[split]["megapixels"] / out[split]["detect_seconds"],
                    "bare_tiles_per_s": E.bare_throughput_on(det, big[1], batch_size),
                    "tile_px": spec.tile_size, "bare_image": big[0],
                }
                out["speed"]["bare_mpx_per_s"] = out["speed"]["bare_tiles_per_s"] * (spec.tile_size - spec.overlap) ** 2 / 1e6
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=D.DEFAULT_ROOT, help="the Dubai folder")
    p.add_argument("--splits", nargs="+", default=["val", "test"], choices=["val", "test"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (default 1: shared machines)")
    p.add_argument("--json", type=Path, default=HERE / "eval_real.json", help="where to write the numbers")
    a = p.parse_args(argv)
    r = evaluate(a.data, tuple(a.splits), batch_size=a.batch_size, threads=a.threads)
    for split in a.splits:
        s = r[split]["scores"]
        print(f"{split}: {r[split]['images']} images, building IoU {s['iou']:.3f}, pixel accuracy "
              f"{s['pixel_accuracy']:.3f} (precision {s['precision']:.3f}, recall {s['recall']:.3f})")
        if "quick_subset" in r[split]:
            q = r[split]["quick_subset"]["scores"]
            print(f"  quick subset ({len(r[split]['quick_subset']['images'])} images): IoU {q['iou']:.3f}, "
                  f"pixel accuracy {q['pixel_accuracy']:.3f}")
        for k, v in r[split]["per_image"].items():
            print(f"  {k}: IoU {v['iou']:.3f}, acc {v['pixel_accuracy']:.3f}, building {v['building_share']:.1%}")
    print("road width in the masks (median px per tile): " + ", ".join(
        f"{k} {v['median']}" for k, v in r["gsd_evidence"]["road_width_px_per_tile"].items()))
    if "speed" in r:
        sp = r["speed"]
        print(f"speed ({r['threads']} thread): gd.detect {sp['detect_tiles_per_s']:.2f} tiles/s of "
              f"{sp['tile_px']} px = {sp['detect_mpx_per_s']:.2f} Mpx/s of scene; bare compiled model "
              f"{sp['bare_tiles_per_s']:.2f} tiles/s ({sp['bare_mpx_per_s']:.2f} Mpx/s of new pixels)")
    a.json.write_text(json.dumps(r, indent=2, default=float) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
