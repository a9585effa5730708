"""``geodetect evaluate``: run a detector over scenes with ground truth and score it.

Ground truth sits beside each scene as ``<scene stem>_truth.geojson`` (or
``.parquet`` / ``.gpkg``), as ``geodetect simulate`` writes it: points for
POINTS detectors, polygons for BOXES and SEGMENTATION, polygons with a
``class_name`` for CLASSIFICATION. The metric follows the detector's task:

* POINTS: count RMSE per class over scenes, averaged over classes (the Kaggle
  sea-lion metric), and precision / recall / F1 of points matched within a radius;
* BOXES: precision, recall, F1 and AP at IoU 0.5 per class;
* SEGMENTATION: IoU per class and pixel accuracy, both sides rasterised on the
  scene's grid (:mod:`geodetect.metrics.segmentation`);
* CLASSIFICATION: accuracy and a confusion matrix of tiles against the true
  class at each tile's centre (:mod:`geodetect.metrics.classification`), with an
  optional ``grouping`` of classes (a mapping, or the name of one of the
  detector's ``groupings`` such as the land-use ``"three-class"``).

With ``reference=`` (another detector's name), the truth is that detector's
output on the same scenes, and no truth files are needed: e.g. the water
segmenter scored against the expert NDWI method it was trained to reproduce.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from geodetect.errors import ConfigError, VectorReadError

__all__ = ["evaluate", "find_scenes", "Evaluation"]

_SCENE_EXT = (".tif", ".tiff", ".vrt", ".jpg", ".jpeg", ".png")
_TRUTH_EXT = (".geojson", ".parquet", ".gpkg")


@dataclass
class Evaluation:
    """Scores of one detector on one data set."""

    detector: str
    task: str
    n_scenes: int
    summary: dict = field(default_factory=dict)  # headline numbers
    tables: dict = field(default_factory=dict)  # name -> pandas DataFrame

    def to_text(self) -> str:
        lines = [f"detector {self.detector} ({self.task}) on {self.n_scenes} scenes"]
        lines += [f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}" for k, v in self.summary.items()]
        for name, table in self.tables.items():
            lines += ["", f"{name}:", table.to_string(float_format=lambda v: f"{v:.3f}")]
        return "\n".join(lines)


def find_scenes(data, *, need_truth: bool = True) -> list[tuple[str, str | None]]:
    """(scene, truth) pairs in a folder; every scene must have its truth file unless ``need_truth`` is False."""
    d = Path(os.fspath(data))
    if not d.is_dir():
        raise ConfigError(f"{d}: not a folder; --data takes a folder of scenes with <scene>_truth.geojson beside each")
    pairs = []
    for scene in sorted(p for p in d.iterdir() if p.suffix.lower() in _SCENE_EXT and not p.stem.endswith("_truth")):
        truth = next((scene.with_name(scene.stem + "_truth" + e) for e in _TRUTH_EXT
                      if scene.with_name(scene.stem + "_truth" + e).exists()), None)
        if truth is None and need_truth:
            raise VectorReadError(f"{scene}: no ground truth beside it ({scene.stem}_truth.geojson); add it or move the scene")
        pairs.append((str(scene), str(truth) if truth else None))
    if not pairs:
        raise ConfigError(f"{d}: no scenes ({', '.join(_SCENE_EXT)}) in this folder")
    return pairs


def _resolve_grouping(grouping, det) -> dict | None:
    if grouping is None or isinstance(grouping, dict):
        return grouping
    named = getattr(det, "groupings", {}) or {}
    if grouping not in named:
        have = ", ".join(sorted(named)) or "none"
        raise ConfigError(f"detector {det.spec.name!r} has no grouping {grouping!r} (it has: {have})")
    return dict(named[grouping])


def evaluate(detector, data, *, iou: float = 0.5, radius_m: float | None = None, reference=None,
             grouping=None, progress: bool = False, **options) -> Evaluation:
    """Score ``detector`` on the scenes of folder ``data`` (see the module docstring).

    ``reference``: a detector whose output on the same scenes is the truth.
    ``grouping``: for classifiers, a mapping class -> group or the name of one of the detector's groupings.
    ``options`` go to :func:`geodetect.detect` (``bands``, ``crs``, ``bounds``, ...) for both detectors.
    """
    import pandas as pd

    from geodetect.frames import read
    from geodetect.pipeline import detect
    from geodetect.plugins import Task
    from geodetect.plugins.registry import resolve_detector

    import math

    try:
        iou = float(iou)
    except (TypeError, ValueError):
        iou = float("nan")
    if not (0 < iou <= 1):
        raise ConfigError(f"iou (--iou) must be a number in (0, 1], got {iou!r}")
    if radius_m is not None:
        try:
            radius_m = float(radius_m)
        except (TypeError, ValueError):
            radius_m = float("nan")
        if not (math.isfinite(radius_m) and radius_m > 0):
            raise ConfigError(f"radius (--radius) must be a positive number of metres, got {radius_m!r}")
    det = resolve_detector(detector)
    spec = det.spec
    groups = _resolve_grouping(grouping, det)
    if groups is not None and spec.task is not Task.CLASSIFICATION:
        raise ConfigError(f"grouping applies to classifiers; {spec.name!r} is a {spec.task.name} detector")
    pairs = find_scenes(data, need_truth=reference is None)
    scenes = [s for s, _ in pairs]
    ref = resolve_detector(reference) if reference is not None else None  # before the long run: fail early
    dets = detect(scenes, det, progress=progress, **options)
    if ref is not None:
        truth = detect(scenes, ref, progress=progress, **options)
        truth_by_scene = {sid: truth[truth["scene_id"] == sid] for sid in (Path(s).stem for s in scenes)}
    else:
        truths = []
        for scene, tpath in pairs:
            t = read(tpath)
            t["scene_id"] = Path(scene).stem
            truths.append(t.to_crs(dets.crs))
        truth = pd.concat(truths, ignore_index=True)
        truth_by_scene = {Path(s).stem: truths[i] for i, s in enumerate(scenes)}
    _check_truth_classes(truth, spec, groups, data, reference=ref)
    name = spec.name + (f" vs {ref.spec.name}" if ref is not None else "")
    ev = Evaluation(name, spec.task.name, len(pairs))
    if spec.task is Task.POINTS:
        from geodetect.counts import counts
        from geodetect.metrics.points import count_rmse, match_points

        ids = [Path(s).stem for s, _ in pairs]
        pc = counts(dets, classes=spec.classes, scene_ids=ids)
        tc = counts(truth, classes=spec.classes, scene_ids=ids)
        rmse, per_class = count_rmse(pc, tc, classes=spec.classes, per_class=True)
        r = radius_m if radius_m is not None else max(spec.merge_radius_px * (spec.gsd_m or 1.0), 0.5)
        m = match_points(dets, truth, r, classes=spec.classes)
        ev.summary = {"count_rmse_mean_over_classes": float(rmse), "precision": m.precision, "recall": m.recall,
                      "f1": m.f1, "match_radius_m": r, "detections": len(dets), "true_objects": len(truth)}
        ev.tables = {"count RMSE per class": per_class.to_frame("rmse"), "point matching per class": m.per_class,
                     "counts per scene (detected)": pc, "counts per scene (true)": tc}
    elif spec.task is Task.BOXES:
        from geodetect.metrics.boxes import box_metrics

        table = box_metrics(dets, truth, spec.classes, iou=iou)
        macro = table.loc["macro"]
        ev.summary = {"precision": float(macro.precision), "recall": float(macro.recall), "f1": float(macro.f1),
                      "ap": float(macro.ap), "iou": iou}
        ev.tables = {f"per class at IoU {iou}": table}
    elif spec.task is Task.SEGMENTATION:
        from geodetect.metrics.segmentation import PixelCounts, score_scene

        counts = PixelCounts(len(spec.classes))
        for scene in scenes:
            sid = Path(scene).stem
            score_scene(counts, scene, dets[dets["scene_id"] == sid], truth_by_scene[sid], spec.classes,
                        crs=options.get("crs"), bounds=options.get("bounds"))
        table = counts.table(spec.classes)
        ev.summary = {"iou": float(pd.Series(counts.iou()).mean()), "pixel_accuracy": counts.pixel_accuracy(),
                      "detected_polygons": len(dets), "true_polygons": len(truth)}
        ev.tables = {"per class (pixels)": table}
    else:  # CLASSIFICATION
        from geodetect.metrics.classification import classification_scores, label_tiles

        labels = [label_tiles(dets[dets["scene_id"] == Path(s).stem], truth_by_scene[Path(s).stem]) for s in scenes]
        true = pd.concat(labels) if labels else pd.Series([], dtype=object)
        r = classification_scores(dets.loc[true.index, "class_name"], true, classes=spec.classes, grouping=groups)
        ev.summary = {"accuracy": r["accuracy"], "scored_tiles": r["scored_tiles"],
                      "unlabelled_tiles": r["unlabelled_tiles"]}
        if groups:
            ev.summary["grouping"] = grouping if isinstance(grouping, str) else "custom"
        ev.tables = {"confusion (rows true, columns detected)": r["confusion"], "per class": r["per_class"]}
    return ev


def _check_truth_classes(truth, spec, groups, data, reference=None) -> None:
    """Refuse a truth with no object the detector could find: every recall would be 0/0 (NaN)."""
    where = f"{reference.spec.name}'s output on {data}" if reference is not None else f"the truth files in {data}"
    if len(truth) == 0:
        raise ConfigError(f"{where}: no true objects at all, so recall and IoU are undefined; evaluate on scenes "
                          "that have objects")
    if "class_name" not in truth.columns:
        return
    have = set(truth["class_name"].astype(str))
    wanted = set(spec.classes) | (set(groups.keys()) | set(groups.values()) if groups else set())
    if not have & wanted:
        raise ConfigError(
            f"{where}: none of the {len(truth):,} true objects is of a class of {spec.name} "
            f"(truth: {', '.join(sorted(have))}; detector: {', '.join(spec.classes)}); scores would be undefined: "
            "evaluate on truth of the detector's classes"
        )
