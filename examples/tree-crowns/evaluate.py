"""Score the installed tree-crowns plugin on the held-out strip of OSBS_029.

    pip install -e examples/tree-crowns
    python examples/tree-crowns/evaluate.py            # P / R / F1 at IoU 0.5
    python examples/tree-crowns/evaluate.py --sweep    # ... and at other score thresholds

The plugin runs exactly as a user would run it: ``geodetect.detect`` on the
georeferenced GeoTIFF, tiled, stitched, georeferenced to EPSG:4326. The
detections are then projected back to the scene's CRS and pixel grid and
compared with the hand-labelled boxes whose centre lies in the right-most
30 % of the image (the hold-out strip; see treedata.py for the matching rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import treedata  # noqa: E402


def detections_to_pixels(dets, tif=treedata.OSBS_TIF) -> np.ndarray:
    """Detection polygons (any CRS) -> boxes (K, 4) xyxy in the scene's pixel grid."""
    import rasterio
    import shapely

    with rasterio.open(tif) as ds:
        crs, inv = ds.crs, ~ds.transform
    if not len(dets):
        return np.zeros((0, 4))
    geoms = dets.to_crs(crs).geometry.values
    px = shapely.transform(geoms, lambda xy: np.column_stack(inv * (xy[:, 0], xy[:, 1])))
    return shapely.bounds(px)


def run(detector="tree-crowns"):
    """Detections of ``detector`` on OSBS_029.tif through the public API (EPSG:4326)."""
    import geodetect as gd

    return gd.detect(str(treedata.OSBS_TIF), detector, progress=False)


def evaluate(dets) -> dict:
    """P / R / F1 at IoU 0.5 on the held-out strip for a detections table of OSBS_029."""
    _, _, truth = treedata.read_osbs()
    return treedata.score_holdout(detections_to_pixels(dets), dets["score"].to_numpy(), truth)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true", help="also score at other score thresholds")
    args = ap.parse_args(argv)
    from geodetect_tree_crowns import TreeCrowns

    dets = run()
    stats = dets.attrs["geodetect"][0]
    r = evaluate(dets)
    print(f"{len(dets)} detections on OSBS_029 ({stats['tiles_run']} tiles, {stats['duplicates_removed']} seam duplicates "
          f"merged, {stats['on_nodata_removed']} dropped near nodata)")
    print(f"held-out strip (box centre column >= {treedata.HOLDOUT_COL:g} px): {r['n_truth']} ground-truth boxes")
    print(f"score threshold {TreeCrowns.score_threshold}: precision {r['precision']:.3f}  recall {r['recall']:.3f}  "
          f"F1 {r['f1']:.3f}  (TP {r['tp']}, FP {r['fp']}, FN {r['fn']}) at IoU 0.5")
    if args.sweep:

        class Low(TreeCrowns):  # same model, every peak above 0.05, then filtered below
            score_threshold = 0.05

        low = run(Low())
        for thr in (0.1, 0.2, 0.3, 0.4, 0.5):
            sub = low[low.score >= thr]
            s = evaluate(sub)
            print(f"  threshold {thr:.1f}: precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}  "
                  f"(TP {s['tp']}, FP {s['fp']}, FN {s['fn']})")
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
