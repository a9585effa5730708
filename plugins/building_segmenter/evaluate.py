"""Evaluate the building segmenter on simulated urban scenes (a check of the host path, not of quality).

The model card's numbers come from ``evaluate_real.py`` (real Dubai test images); the
model, trained on real 1 m imagery and run at 2 m, was not tuned on these scenes.

Scenes: simulator seeds 1..8 (the earlier simulated-only training used seeds from 10000 up, validation
from 20000 up), 1024 x 1024 pixels at 0.3 m, in four UTM zones, each written
with its ``<stem>_truth.geojson`` beside it as ``geodetect simulate`` does.
Scores come from :func:`geodetect.evaluate.evaluate`, the code behind
``geodetect evaluate``: the detector runs through :func:`geodetect.detect`
(tiling, blending, polygonising, georeferencing: the whole host path), and
detected and true footprints are both rasterised on each scene's grid.

    python plugins/building_segmenter/evaluate.py [--scenes 8] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
#: (CRS, centre lon/lat) of the evaluation scenes, cycled
PLACES = [
    ("EPSG:32615", (-97.74, 30.27)),    # Austin (an Inria city)
    ("EPSG:32616", (-87.63, 41.88)),    # Chicago (an Inria city)
    ("EPSG:32633", (16.37, 48.21)),     # Vienna (an Inria city)
    ("EPSG:32610", (-122.42, 37.77)),   # San Francisco (an Inria city)
]
EVAL_SEEDS = range(1, 9)


def load_detector_class():
    """BuildingSegmenter, from the installed package."""
    return importlib.import_module("geodetect_plugins.building_segmenter").BuildingSegmenter


def eval_scene_kwargs(k: int, size: int = 1024) -> dict:
    crs, centre = PLACES[k % len(PLACES)]
    return dict(crs=crs, center=centre, size=(size, size), seed=EVAL_SEEDS[k])


def write_eval_scenes(folder, n: int, size: int = 1024) -> list:
    """Write ``n`` evaluation scenes and their ``<stem>_truth.geojson`` into ``folder``."""
    from geodetect.simulate import make_scene

    scenes = []
    for k in range(n):
        path = Path(folder) / f"urban_eval_{EVAL_SEEDS[k]}.tif"
        sim = make_scene(path, kind="urban", **eval_scene_kwargs(k, size))
        sim.truth.to_file(path.with_name(path.stem + "_truth.geojson"), driver="GeoJSON")
        scenes.append(sim)
    return scenes


def bare_throughput(det, path, batch: int = 8, repeats: int = 2) -> float:
    """Tiles/s of the compiled model alone on the tiles of one scene (no I/O, no blending, no polygons)."""
    import rasterio

    with rasterio.open(path) as ds:
        img = np.moveaxis(ds.read(), 0, -1)
    return bare_throughput_on(det, img, batch, repeats)


def bare_throughput_on(det, img, batch: int = 8, repeats: int = 2) -> float:
    """Tiles/s of the compiled model alone on the tiles of a uint8 (H, W, 3) image."""
    from geodetect.io.tiling import Tiling

    spec = det.spec
    img = img.astype(np.float32) / 255.0
    tiling = Tiling(img.shape[1], img.shape[0], spec.tile_size, spec.overlap)
    tiles = np.stack([img[y:y + h, x:x + w] for x, y, w, h in map(tiling.tile, range(len(tiling)))])
    det._run(tiles[:batch]).numpy()  # warm-up
    t = time.perf_counter()
    for _ in range(repeats):
        for i in range(0, len(tiles), batch):
            det._run(tiles[i:i + batch]).numpy()
    return repeats * len(tiles) / (time.perf_counter() - t)


def per_building(scenes, dets):
    """Share of each true footprint covered by detections (by roof and shape), and detections off buildings."""
    import pandas as pd
    import shapely

    rows, off = [], []
    for s in scenes:
        t = s.truth.to_crs(s.crs)
        p = dets[dets.scene_id == Path(s.path).stem].to_crs(s.crs)
        pu = shapely.union_all(p.geometry.values)
        tu = shapely.union_all(t.geometry.values)
        for geom, roof, shape in zip(t.geometry, t.roof, t["shape"]):
            rows.append((roof, shape, shapely.area(shapely.intersection(geom, pu)) / geom.area))
        for geom in p.geometry:
            off.append((geom.area, shapely.area(shapely.intersection(geom, tu)) / geom.area))
    cover = pd.DataFrame(rows, columns=["roof", "shape", "cover"])
    off = pd.DataFrame(off, columns=["area_m2", "on_building"])
    return cover, off


def evaluate(n_scenes: int = 8, batch_size: int = 8, threads: int = 1, size: int = 1024) -> dict:
    from geodetect.plugins.weights import configure_tensorflow

    configure_tensorflow(threads)
    import geodetect as gd
    from geodetect.evaluate import evaluate as gd_evaluate

    det = load_detector_class()()
    det.ensure_loaded()
    with tempfile.TemporaryDirectory(prefix="building-eval-") as wd:
        scenes = write_eval_scenes(wd, n_scenes, size)
        gd.detect(scenes[0].path, det, progress=False, batch_size=batch_size)  # warm-up (tracing)
        t0 = time.perf_counter()
        ev = gd_evaluate(det, wd, batch_size=batch_size)
        elapsed = time.perf_counter() - t0
        t1 = time.perf_counter()
        dets = gd.detect([s.path for s in scenes], det, progress=False, batch_size=batch_size)
        detect_s = time.perf_counter() - t1
        tiles = sum(st["tiles_run"] for st in dets.attrs["geodetect"])
        bare = bare_throughput(det, scenes[0].path, batch_size)
        cover, off = per_building(scenes, dets)
    return {
        "scenes": n_scenes,
        "seeds": list(EVAL_SEEDS[:n_scenes]),
        "size": size,
        "buildings_per_scene": [len(s.truth) for s in scenes],
        "summary": ev.summary,
        "table": ev.tables["per class (pixels)"],
        "text": ev.to_text(),
        "evaluate_seconds": elapsed,
        "detect_tiles_per_s": tiles / detect_s,
        "bare_tiles_per_s": bare,
        "tiles": tiles,
        "min_area_m2": det.min_area_m2,
        "threads": threads,
        "cover": cover,
        "off": off,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (default 1: shared machines)")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    a = p.parse_args(argv)
    r = evaluate(a.scenes, a.batch_size, a.threads)
    s = r["summary"]
    print(f"{r['scenes']} unseen simulated scenes (seeds {r['seeds'][0]}..{r['seeds'][-1]}, {r['size']} px at 0.3 m), "
          f"buildings per scene {min(r['buildings_per_scene'])}..{max(r['buildings_per_scene'])}, "
          f"min_area_m2 {r['min_area_m2']}")
    print(r["text"])
    print(f"\nbuilding IoU {s['iou']:.3f}, pixel accuracy {s['pixel_accuracy']:.3f}")
    print(f"throughput ({r['threads']} thread(s)): {r['detect_tiles_per_s']:.1f} tiles/s through geodetect.detect "
          f"({r['tiles']} tiles of 128 px; I/O, blending, polygonising and georeferencing included); "
          f"{r['bare_tiles_per_s']:.1f} tiles/s for the bare compiled model on the same tiles")
    cover, off = r["cover"], r["off"]
    found = cover.assign(found=cover.cover >= 0.5)
    print("\nper building (cover = share of the footprint detected; found = cover >= 0.5):")
    print("| roof | buildings | mean cover | found |\n| --- | ---: | ---: | ---: |")
    for key, g in found.groupby("roof"):
        print(f"| {key} | {len(g)} | {g.cover.mean():.2f} | {g.found.mean():.0%} |")
    print("by shape: " + ", ".join(f"{k} {g.cover.mean():.2f}" for k, g in found.groupby("shape"))
          + f"; found {found.found.mean():.1%} of {len(found)}")
    stray = off[off.on_building < 0.1]
    print(f"detected polygons {len(off)}: {(off.area_m2 < 8).sum()} under 8 m2; {len(stray)} (almost) off any "
          f"building, {(stray.area_m2 < 1).sum()} of them under 1 m2, largest {stray.area_m2.max():.0f} m2")
    if a.json:
        out = {k: v for k, v in r.items() if k not in ("table", "text", "cover", "off")}
        out["table"] = json.loads(r["table"].to_json(orient="index"))
        a.json.write_text(json.dumps(out, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
