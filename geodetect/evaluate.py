"""``geodetect evaluate``: run a detector over scenes with ground truth and score it.

Ground truth sits beside each scene as ``<scene stem>_truth.geojson`` (or
``.parquet`` / ``.gpkg``), as ``geodetect simulate`` writes it: points for
POINTS detectors, polygons for BOXES and SEGMENTATION, polygons with a
``class_name`` for CLASSIFICATION. The metric follows the detector's task:

* POINTS: count RMSE per class over scenes, averaged over classes (the Kaggle
  sea-lion metric), and precision / recall / F1 of points matched within a radius;
* BOXES: precision, recall, F1 and AP at IoU 0.5 per class.
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


def find_scenes(data) -> list[tuple[str, str]]:
    """(scene, truth) pairs in a folder; every scene must have its truth file."""
    d = Path(os.fspath(data))
    if not d.is_dir():
        raise ConfigError(f"{d}: not a folder; --data takes a folder of scenes with <scene>_truth.geojson beside each")
    pairs = []
    for scene in sorted(p for p in d.iterdir() if p.suffix.lower() in _SCENE_EXT and not p.stem.endswith("_truth")):
        truth = next((scene.with_name(scene.stem + "_truth" + e) for e in _TRUTH_EXT
                      if scene.with_name(scene.stem + "_truth" + e).exists()), None)
        if truth is None:
            raise VectorReadError(f"{scene}: no ground truth beside it ({scene.stem}_truth.geojson); add it or move the scene")
        pairs.append((str(scene), str(truth)))
    if not pairs:
        raise ConfigError(f"{d}: no scenes ({', '.join(_SCENE_EXT)}) in this folder")
    return pairs


def evaluate(detector, data, *, iou: float = 0.5, radius_m: float | None = None, progress: bool = False,
             **options) -> Evaluation:
    """Score ``detector`` on the scenes of folder ``data`` (see the module docstring)."""
    import pandas as pd

    from geodetect.frames import read
    from geodetect.pipeline import detect
    from geodetect.plugins import Task
    from geodetect.plugins.registry import resolve_detector

    det = resolve_detector(detector)
    spec = det.spec
    pairs = find_scenes(data)
    dets = detect([s for s, _ in pairs], det, progress=progress, **options)
    truths = []
    for scene, truth in pairs:
        t = read(truth)
        t["scene_id"] = Path(scene).stem
        truths.append(t.to_crs(dets.crs))
    truth = pd.concat(truths, ignore_index=True)
    ev = Evaluation(spec.name, spec.task.name, len(pairs))
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
    else:
        raise ConfigError(f"evaluation of {spec.task.name} detectors is not available yet")
    return ev
