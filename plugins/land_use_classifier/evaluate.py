"""Evaluate the land-use classifier on the real AID split it never trained on; write the model card's JSON.

Every image of the split is placed (:func:`geodetect.train.placement.write_placed`)
as a GeoTIFF at ``PLACEMENT_GSD_M`` (8 m: 150 px = 1,200 m, one tile of the
detector) and run through :func:`geodetect.detect`, scenes in, detections out:

* six classes: ``LandUseClassifier()``, the tile's class against the AID
  image's seed class (:data:`geodetect.train.landuse.AID_TO_LAND_USE`);
* three classes: the six-class label mapped through the grouping (what
  ``geodetect evaluate --grouping three-class`` scores), and on the test split
  also the plugin's ``grouping="three-class"`` (group probabilities summed,
  what ``-O grouping=three-class`` gives);
* unmapped AID classes (Mountain, Pond, River): what the model calls them;
* robustness (test split): the same images as one grey band repeated three
  times (a panchromatic scene); and the quality-test subset placed at 10 m
  instead of 8 (1.25 x the ground: the host reads 280 px, 2 x 2 overlapping
  tiles; the image's label is the tiles' majority);
* the quality-test subset (test images numbered 20, 40, ..., 200; what
  ``tests/test_landuse_real.py`` checks);
* speed: gd.detect over one placed mosaic of test images vs the bare compiled model on the same tiles.

    python plugins/land_use_classifier/evaluate.py [--data ../shared/data/landuse-aid] [--out eval_real.json]

On a busy machine the parts can run in parallel processes and be merged:

    evaluate.py --parts val --out /tmp/a.json & evaluate.py --parts test,test_three --out /tmp/b.json & ...
    evaluate.py --merge /tmp/a.json /tmp/b.json ... --out eval_real.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "landuse-aid"
DEFAULT_OUT = HERE / "eval_real.json"
#: placement GSD of the scale-robustness check: 1.25 x the declared 8 m
SCALE_GSD_M = 10.0


def load_plugin():
    return importlib.import_module("geodetect_plugins.land_use_classifier")


def quality_subset(items):
    """The fixed subset the real-data quality test runs on: test images numbered 20, 40, ..., 200."""
    return [it for it in items if it.number % 20 == 0]


def detect_labels(det, images: dict, workdir: Path, gsd_m: float) -> dict:
    """``{key: label}`` for uint8 images placed at ``gsd_m`` and run through gd.detect (one call, all scenes).

    An image read as several tiles gets its tiles' majority label (ties: the higher summed score).
    """
    import geodetect as gd
    from geodetect.train.placement import write_placed

    workdir.mkdir(parents=True, exist_ok=True)
    paths = [write_placed(img, workdir / f"{key}.tif", gsd_m) for key, img in images.items()]
    dets = gd.detect([str(p) for p in paths], det, progress=False)
    out = {}
    for key, g in dets.groupby("scene_id"):
        votes = Counter(g.class_name)
        score = g.groupby("class_name").score.sum()
        out[key] = max(votes, key=lambda c: (votes[c], score[c]))
    for p in paths:
        p.unlink()
    missing = set(images) - set(out)
    if missing:
        raise RuntimeError(f"gd.detect returned no label for {sorted(missing)[:3]}")
    return out


def scores(truth, pred, classes) -> dict:
    """Accuracy, per-class recall, balanced accuracy and confusion matrix (rows truth, columns predicted)."""
    t = np.array([classes.index(c) for c in truth])
    p = np.array([classes.index(c) for c in pred])
    conf = np.zeros((len(classes), len(classes)), int)
    np.add.at(conf, (t, p), 1)
    recall = {c: float(conf[k, k] / conf[k].sum()) for k, c in enumerate(classes) if conf[k].sum()}
    return {"images": int(len(t)), "accuracy": float((t == p).mean()) if len(t) else float("nan"),
            "balanced_accuracy": float(np.mean(list(recall.values()))) if recall else float("nan"),
            "recall": recall, "classes": list(classes), "confusion": conf.tolist()}


def evaluate_items(mod, det6, det3, items, workdir: Path, *, gsd_m: float, grey: bool = False) -> dict:
    """Six- and three-class scores of AID ``items`` placed at ``gsd_m`` (``grey``: one band repeated).

    ``three_label_mapped``: the six-class label put through the grouping (``geodetect evaluate
    --grouping three-class``); ``three``: the ``grouping="three-class"`` detector ``det3`` (group
    probabilities summed), run only when ``det3`` is given.
    """
    from geodetect.train.landuse import read_image

    images = {}
    for it in items:
        img = read_image(it.path)
        if grey:
            img = np.repeat(np.rint(img @ np.array([0.299, 0.587, 0.114]))[..., None], 3, axis=-1).astype(np.uint8)
        images[f"{it.aid_class}_{it.number}"] = img
    six = detect_labels(det6, images, workdir / "six", gsd_m)
    keys = list(images)
    mapped = [(k, it) for k, it in zip(keys, items) if it.land_use is not None]
    truth3 = [mod.THREE_CLASS[it.land_use] for _, it in mapped]
    res = {
        "six": scores([it.land_use for _, it in mapped], [six[k] for k, _ in mapped], list(mod.CLASSES)),
        "three_label_mapped": scores(truth3, [mod.THREE_CLASS[six[k]] for k, _ in mapped], list(mod.GROUPS)),
    }
    if det3 is not None:
        three = detect_labels(det3, images, workdir / "three", gsd_m)
        res["three"] = scores(truth3, [three[k] for k, _ in mapped], list(mod.GROUPS))
    per_aid: dict = {}
    for k, it in zip(keys, items):
        d = per_aid.setdefault(it.aid_class, {"seed_class": it.land_use, "images": 0, "predicted": Counter()})
        d["images"] += 1
        d["predicted"][six[k]] += 1
    for d in per_aid.values():
        d["predicted"] = dict(sorted(d["predicted"].items()))
        if d["seed_class"] is not None:
            d["accuracy"] = d["predicted"].get(d["seed_class"], 0) / d["images"]
    res["per_aid_class"] = per_aid
    return res


def speed(mod, det6, items, workdir: Path, n_side: int = 8, repeats: int = 3) -> dict:
    """tiles/s and Mpx/s of gd.detect over one placed mosaic of n_side x n_side test images, and of the bare
    compiled model on the same tiles (best of ``repeats``)."""
    import geodetect as gd
    from geodetect.train.landuse import read_image
    from geodetect.train.placement import write_placed

    imgs = [read_image(it.path) for it in items[: n_side * n_side]]
    n_side = int(np.sqrt(len(imgs)))
    rows = [np.concatenate(imgs[r * n_side:(r + 1) * n_side], axis=1) for r in range(n_side)]
    path = write_placed(np.concatenate(rows, axis=0), workdir / "mosaic.tif", mod.PLACEMENT_GSD_M)
    batches = []
    real = det6.predict

    def spy(tiles):
        batches.append(np.array(tiles))
        return real(tiles)

    det6.predict = spy
    try:
        gd.detect(str(path), det6, progress=False)
    finally:
        del det6.predict
    n = sum(len(b) for b in batches)
    best_p = best_b = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        gd.detect(str(path), det6, progress=False)
        best_p = min(best_p, time.perf_counter() - t)
        t = time.perf_counter()
        for b in batches:
            det6.predict(b)
        best_b = min(best_b, time.perf_counter() - t)
    px = 224 * 224 / 1e6
    return {"tiles": n, "gd_detect_tiles_per_s": n / best_p, "gd_detect_mpx_per_s": n * px / best_p,
            "gd_detect_km2_per_s": n * (mod.TILE_M / 1e3) ** 2 / best_p, "bare_model_tiles_per_s": n / best_b,
            "ratio": best_b / best_p, "threads": 1, "cpu_count": os.cpu_count(),
            "note": "one TensorFlow thread; best of %d; machine shared with other jobs" % repeats}


PARTS = ("val", "test", "test_three", "subset", "grey", "scale", "speed")


def evaluate(data: Path, *, threads: int = 1, parts=PARTS) -> dict:
    """The evaluation's ``parts`` (all by default; separate processes can run some each and
    :func:`merge` their JSON)."""
    from geodetect.plugins.weights import configure_tensorflow, sha256_of
    from geodetect.train.landuse import AID_TO_LAND_USE, read_aid, read_image

    configure_tensorflow(threads)
    mod = load_plugin()
    det6, det3 = mod.LandUseClassifier(), mod.LandUseClassifier(grouping="three-class")
    det6.ensure_loaded()
    t0 = time.time()
    out = {
        "detector": det6.spec.name, "version": det6.spec.version, "weights_sha256": sha256_of(mod.WEIGHTS),
        "data": "AID (15 of 30 classes, first 200 images each, 150 x 150 px) at " + str(data),
        "split_rule": "by file number n: (n - 1) % 20 in 0..13 train, 14..16 val, 17..19 test",
        "aid_to_seed": AID_TO_LAND_USE,
        "placement_gsd_m": mod.PLACEMENT_GSD_M, "spec_gsd_m": det6.spec.gsd_m, "tile_size": det6.spec.tile_size,
        "gsd_range": list(det6.spec.gsd_range), "python": platform.python_version(), "parts": list(parts),
    }
    test = read_aid(data, "test")
    mapped = [it for it in test if it.land_use is not None]
    sub = [it for it in quality_subset(test) if it.land_use is not None]
    with tempfile.TemporaryDirectory(prefix="landuse-real-eval-") as wd:
        wd = Path(wd)
        for split in ("val", "test"):
            if split in parts:
                out[split] = evaluate_items(mod, det6, None, read_aid(data, split), wd / split, gsd_m=mod.PLACEMENT_GSD_M)
                print(f"{split}: six-class accuracy {out[split]['six']['accuracy']:.3f}, three-class "
                      f"{out[split]['three_label_mapped']['accuracy']:.3f} ({out[split]['six']['images']} images)",
                      flush=True)
        if "test_three" in parts:  # the grouping="three-class" detector (probabilities summed) on the test split
            det3.ensure_loaded()
            images = {f"{it.aid_class}_{it.number}": read_image(it.path) for it in mapped}
            got = detect_labels(det3, images, wd / "three", mod.PLACEMENT_GSD_M)
            out["test_three"] = scores([mod.THREE_CLASS[it.land_use] for it in mapped],
                                       [got[f"{it.aid_class}_{it.number}"] for it in mapped], list(mod.GROUPS))
        named = {"subset": ("test_quality_subset", sub, dict(gsd_m=mod.PLACEMENT_GSD_M)),
                 "grey": ("test_grey", mapped, dict(gsd_m=mod.PLACEMENT_GSD_M, grey=True)),
                 "scale": ("test_subset_at_10m", sub, dict(gsd_m=SCALE_GSD_M))}
        for part, (name, its, kw) in named.items():
            if part in parts:
                r = evaluate_items(mod, det6, None, its, wd / name, **kw)
                out[name] = {"six": r["six"], "three_label_mapped": r["three_label_mapped"]}
                print(f"{name}: six-class accuracy {r['six']['accuracy']:.3f}, three-class "
                      f"{r['three_label_mapped']['accuracy']:.3f}", flush=True)
        if "subset" in parts:
            out["test_quality_subset"]["rule"] = "test images numbered 20, 40, ..., 200 (mapped classes)"
        if "speed" in parts:
            out["speed"] = speed(mod, det6, test, wd)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def merge(results: list) -> dict:
    """One result from the partial results of :func:`evaluate` (same weights); ``test_three`` joins ``test``."""
    out: dict = {}
    for r in results:
        for k, v in r.items():
            if k in out and k not in ("parts", "seconds") and k in PARTS_KEYS and out[k] != v:
                raise ValueError(f"partial results disagree on {k!r}")
            out.setdefault(k, v)
    if len({r["weights_sha256"] for r in results}) != 1:
        raise ValueError("partial results are of different weights")
    out["parts"] = sorted({p for r in results for p in r["parts"]})
    out["seconds"] = round(sum(r["seconds"] for r in results), 1)
    if "test_three" in out and "test" in out:
        out["test"]["three"] = out.pop("test_three")
    return out


PARTS_KEYS = ("detector", "version", "weights_sha256", "spec_gsd_m", "placement_gsd_m", "split_rule")


def _conf_md(r: dict) -> list[str]:
    cls = r["classes"]
    lines = ["| truth \\ predicted | " + " | ".join(cls) + " | recall |", "| --- |" + " ---: |" * (len(cls) + 1)]
    for c, row in zip(cls, r["confusion"]):
        if sum(row):
            rec = r["recall"].get(c)
            lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + f" | {rec:.3f} |")
    return lines


def markdown(res: dict) -> str:
    """The model card's tables, from the JSON (so every number in the card comes from it)."""
    L = ["| split | images | six classes: accuracy (balanced) | three classes, label mapped: accuracy (balanced) | "
         "three classes, probabilities summed |", "| --- | ---: | ---: | ---: | ---: |"]
    rows = [("validation", res["val"]), ("test", res["test"]), ("test subset (quality test)", res["test_quality_subset"])]
    names = {"test_grey": "test, grey (one band repeated)", "test_subset_at_10m": "test subset placed at 10 m (1.25x)"}
    rows += [(v, res[k]) for k, v in names.items() if k in res]
    for name, r in rows:
        tm, t3 = r["three_label_mapped"], r.get("three")
        L.append(f"| {name} | {r['six']['images']} | {r['six']['accuracy']:.3f} ({r['six']['balanced_accuracy']:.3f}) | "
                 f"{tm['accuracy']:.3f} ({tm['balanced_accuracy']:.3f}) | "
                 + (f"{t3['accuracy']:.3f} ({t3['balanced_accuracy']:.3f}) |" if t3 else "— |"))
    for split in ("test", "val"):
        L += ["", f"Confusion, {split} split, six classes (rows: truth; shrub has no AID image):", ""]
        L += _conf_md(res[split]["six"])
        L += ["", f"Confusion, {split} split, three classes (six-class label mapped by the grouping):", ""]
        L += _conf_md(res[split]["three_label_mapped"])
        if "three" in res[split]:
            L += ["", f"Confusion, {split} split, three classes (grouping='three-class': probabilities summed):", ""]
            L += _conf_md(res[split]["three"])
    L += ["", "Test split by AID class (what the six-class model calls each):", "",
          "| AID class | seed class | images | predicted | accuracy |", "| --- | --- | ---: | --- | ---: |"]
    for aid, d in sorted(res["test"]["per_aid_class"].items()):
        pred = ", ".join(f"{c} {n}" for c, n in sorted(d["predicted"].items(), key=lambda kv: -kv[1]))
        acc = f"{d['accuracy']:.3f}" if "accuracy" in d else "—"
        L.append(f"| {aid} | {d['seed_class'] or '(none)'} | {d['images']} | {pred} | {acc} |")
    if "speed" in res:
        s = res["speed"]
        L += ["", f"Speed: gd.detect {s['gd_detect_tiles_per_s']:.1f} tiles/s = {s['gd_detect_mpx_per_s']:.2f} Mpx/s "
                  f"(224 px tiles at the model's GSD) = {s['gd_detect_km2_per_s']:.0f} km²/s; bare compiled model "
                  f"{s['bare_model_tiles_per_s']:.1f} tiles/s on the same {s['tiles']} tiles; ratio {s['ratio']:.2f} "
                  f"({s['note']})."]
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="AID-layout folder (default ../shared/data/landuse-aid)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON to write (default eval_real.json beside this script)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated parts to run (default all: {','.join(PARTS)})")
    p.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                   help="only merge partial JSONs (each from a --parts run) into --out")
    p.add_argument("--markdown", type=Path, default=None, metavar="JSON",
                   help="only print the model card's tables from an earlier run's JSON")
    a = p.parse_args(argv)
    if a.markdown is not None:
        print(markdown(json.loads(a.markdown.read_text())))
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if a.merge:
        res = merge([json.loads(f.read_text()) for f in a.merge])
    else:
        parts = tuple(a.parts.split(","))
        bad = set(parts) - set(PARTS)
        if bad:
            p.error(f"unknown parts {sorted(bad)}; choose from {', '.join(PARTS)}")
        res = evaluate(a.data, threads=a.threads, parts=parts)
        if "test_three" in res and "test" in res:
            res["test"]["three"] = res.pop("test_three")
    a.out.write_text(json.dumps(res, indent=1, sort_keys=False) + "\n")
    if set(PARTS) - set(res["parts"]):
        print(f"wrote the parts {res['parts']} to {a.out}")
        return 0
    for split in ("val", "test"):
        for k in ("six", "three", "three_label_mapped"):
            if k not in res[split]:
                continue
            r = res[split][k]
            print(f"--- {split}, {k} classes: accuracy {r['accuracy']:.3f}, balanced {r['balanced_accuracy']:.3f} "
                  f"({r['images']} images) ---")
            w = max(len(c) for c in r["classes"])
            print(" " * w + " " + " ".join(f"{c[:6]:>6}" for c in r["classes"]))
            for c, row in zip(r["classes"], r["confusion"]):
                print(f"{c:>{w}} " + " ".join(f"{v:6d}" for v in row))
    if "speed" in res:
        s = res["speed"]
        print(f"speed: gd.detect {s['gd_detect_tiles_per_s']:.1f} tiles/s ({s['gd_detect_mpx_per_s']:.2f} Mpx/s), "
              f"bare model {s['bare_model_tiles_per_s']:.1f} tiles/s, ratio {s['ratio']:.2f}")
    print(markdown(res))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
