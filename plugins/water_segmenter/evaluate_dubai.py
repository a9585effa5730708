"""How the water detectors relate to the real Dubai water masks (RGB imagery at about 1 m); writes eval_dubai.json.

The Dubai set (``../shared/data/buildings-dubai``, classes.json: Water) is real
ground truth for water, but its images are RGB: red, green, blue, no
near-infrared. Both water detectors work from NIR:

* ``water-expert-optical`` computes NDWI = (green - NIR) / (green + NIR): with
  no NIR band it cannot run. Run through ``gd.detect`` on a placed Dubai image it
  stops at the band check; the message is recorded.
* ``water-segmenter`` was trained on Landsat NIR/red/green at 30 m. Its bands
  are missing too (recorded), so nothing here is a supported use. What can be
  run is a stand-in: the image's red band given as the NIR input (water is dark
  in red as in NIR; vegetation is not, it is bright in NIR and dark in red), at
  the images' own 1 m pixels (the segmenter has ``gsd_m=None``: it is not
  resampled). Its water IoU against the Dubai masks on the building
  segmenter's test images (``image_part_003`` and ``_007`` of every tile) is
  recorded as what such a misuse gives, not as a score of the detector.

    nice -n 5 python plugins/water_segmenter/evaluate_dubai.py [DATA_DIR] [--json eval_dubai.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_ROOT = HERE.parents[1] / ".." / "shared" / "data" / "buildings-dubai"
GSD_M = 1.0  # declared for the Dubai images by the building segmenter (plugins/building_segmenter/dubai.py)
TEST_PARTS = ("image_part_003", "image_part_007")


def load_water(root):
    """(key, image, target) of the test images: target 1 = Water, 0 = other classes, 255 = unlabelled."""
    from geodetect.train.colour_masks import load_pair, mask_palette, pair_colour_masks

    pairs = [p for p in pair_colour_masks(root) if p.name in TEST_PARTS]
    palette = mask_palette(root)
    w, u = palette.index("Water"), palette.index("Unlabeled")
    for p in pairs:
        image, cls = load_pair(p, palette)
        t = (cls == w).astype(np.uint8)
        t[(cls < 0) | (cls == u)] = 255
        yield p.key, image, t


def refusal(detector, path) -> str:
    """The error ``gd.detect`` raises for ``detector`` on ``path`` (or "ran" if it did not refuse)."""
    import geodetect as gd
    from geodetect.errors import GeodetectError

    try:
        gd.detect(path, detector, progress=False)
    except GeodetectError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ran"


def evaluate(root, threads: int = 1) -> dict:
    from rasterio.transform import from_origin

    import geodetect as gd
    from geodetect.metrics.segmentation import rasterize_classes
    from geodetect.plugins.weights import configure_tensorflow
    from geodetect.train.placement import PLACEMENT_CRS, PLACEMENT_ORIGIN, write_placed

    configure_tensorflow(threads)
    out = {"data": "buildings-dubai test images (image_part_003, image_part_007 of every tile)", "gsd_m": GSD_M}
    total = np.zeros(4, np.int64)
    per = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="water-dubai-") as wd:
        for i, (key, img, tgt) in enumerate(load_water(root)):
            path = write_placed(img, Path(wd) / (key.replace("/", "__") + ".tif"), GSD_M)
            if i == 0:
                out["water-expert-optical"] = {"refused": refusal("water-expert-optical", path)}
                out["water-segmenter"] = {"refused": refusal("water-segmenter", path)}
            dets = gd.detect(path, "water-segmenter", bands={"nir": 1, "red": 1, "green": 2}, progress=False)
            pred = rasterize_classes(dets, ["water"], transform=from_origin(*PLACEMENT_ORIGIN, GSD_M, GSD_M),
                                     shape=tgt.shape, crs=PLACEMENT_CRS) == 1
            ok, true = tgt != 255, tgt == 1
            c = np.array([np.sum(pred & true & ok), np.sum(pred & ~true & ok), np.sum(~pred & true & ok),
                          np.sum(~pred & ~true & ok)], np.int64)
            total += c
            per[key] = {"water_share": float(true[ok].mean()), "iou": float(c[0] / max(c[:3].sum(), 1)),
                        "detected_share": float(pred[ok].mean())}
    tp, fp, fn, tn = (int(v) for v in total)
    out["water-segmenter"]["stand_in"] = {
        "bands": "nir <- red band, red <- red band, green <- green band; 1 m pixels, not resampled",
        "images": len(per), "iou": tp / max(tp + fp + fn, 1), "pixel_accuracy": (tp + tn) / max(tp + fp + fn + tn, 1),
        "precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "water_share": (tp + fn) / max(tp + fp + fn + tn, 1),
        "per_image": per, "seconds": time.perf_counter() - t0}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=DEFAULT_ROOT)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=HERE / "eval_dubai.json")
    a = p.parse_args(argv)
    r = evaluate(a.data, a.threads)
    print("water-expert-optical:", r["water-expert-optical"]["refused"])
    print("water-segmenter (bands as spec'd):", r["water-segmenter"]["refused"])
    s = r["water-segmenter"]["stand_in"]
    print(f"water-segmenter, red given as NIR, {s['images']} test images: water IoU {s['iou']:.3f}, pixel accuracy "
          f"{s['pixel_accuracy']:.3f}, precision {s['precision']:.3f}, recall {s['recall']:.3f} "
          f"(water {s['water_share']:.1%} of labelled pixels)")
    a.json.write_text(json.dumps(r, indent=2, default=float) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
