"""Box detection metrics: precision, recall, F1 and average precision at an IoU threshold.

Matching is greedy by score, per class (and per scene): predictions are taken
from the highest score down, each is matched to the still-unmatched truth box
of its class with the highest IoU, provided that IoU is at least ``iou``
(ties between equal IoUs go to the first truth box). A matched prediction is a
true positive, an unmatched one a false positive; unmatched truth boxes are
false negatives. AP is the area under the precision envelope over all recall
points (PASCAL VOC 2010+ "all-point interpolation").

Two kinds of input, not mixed:

* GeoDataFrames (detections from :func:`geodetect.detect`, truth with a
  ``class_name`` column): polygons of any shape, in the same CRS; IoU is
  computed on the polygons after reprojection to a metric CRS (the truth's
  local UTM zone unless ``crs`` is given). When both tables have a
  ``scene_id`` column, boxes are matched within their scene only.
* Pixel arrays: predictions ``(xyxy, class_ids, scores[, image_ids])``, truth
  ``(xyxy, class_ids[, image_ids])``, boxes ``[col_min, row_min, col_max,
  row_max]``; class ids are indexes into ``classes`` or class names.

Predictions and truth of classes not in ``classes`` are ignored.
"""

from __future__ import annotations

import numpy as np

from geodetect.errors import ConfigError
from geodetect.metrics import precision_recall_f1

__all__ = ["box_metrics", "average_precision", "match_boxes"]

_COLUMNS = ["n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1", "ap"]


def average_precision(tp_sorted: np.ndarray, n_true: int) -> float:
    """VOC all-point AP from true-positive flags of predictions sorted by descending score.

    >>> average_precision(np.array([1, 0, 1]), 2)   # P@R: 1@0.5, then 2/3@1.0
    0.8333333333333333
    """
    if n_true == 0:
        return float("nan")
    tp = np.asarray(tp_sorted, np.float64)
    if len(tp) == 0:
        return 0.0
    ctp = np.cumsum(tp)
    cfp = np.cumsum(1.0 - tp)
    rec = ctp / n_true
    prec = ctp / (ctp + cfp)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mpre = np.concatenate([[0.0], prec, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _class_ids(values, classes) -> np.ndarray:
    """Class names or indexes -> indexes into classes; -1 for anything else."""
    v = np.asarray(values)
    if len(v) == 0:
        return np.zeros(0, np.int64)
    if v.dtype.kind in "iu":
        return np.where((v >= 0) & (v < len(classes)), v, -1).astype(np.int64)
    if v.dtype.kind == "f":
        if not np.all(np.mod(v, 1) == 0):
            raise ConfigError("class ids must be integers or class names")
        return _class_ids(v.astype(np.int64), classes)
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup.get(str(x), -1) for x in v], np.int64)


def _pairs_xyxy(pb: np.ndarray, tb: np.ndarray):
    """Candidate pairs (pred, truth) of intersecting boxes and their IoU (vectorised)."""
    import shapely

    if len(pb) == 0 or len(tb) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tree = shapely.STRtree(shapely.box(tb[:, 0], tb[:, 1], tb[:, 2], tb[:, 3]))
    pi, ti = tree.query(shapely.box(pb[:, 0], pb[:, 1], pb[:, 2], pb[:, 3]), predicate="intersects")
    iw = np.clip(np.minimum(pb[pi, 2], tb[ti, 2]) - np.maximum(pb[pi, 0], tb[ti, 0]), 0, None)
    ih = np.clip(np.minimum(pb[pi, 3], tb[ti, 3]) - np.maximum(pb[pi, 1], tb[ti, 1]), 0, None)
    inter = iw * ih
    ap = (pb[pi, 2] - pb[pi, 0]) * (pb[pi, 3] - pb[pi, 1])
    at = (tb[ti, 2] - tb[ti, 0]) * (tb[ti, 3] - tb[ti, 1])
    union = ap + at - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return pi.astype(np.int64), ti.astype(np.int64), iou


def _pairs_geoms(pg: np.ndarray, tg: np.ndarray):
    """Candidate pairs of intersecting polygons and their IoU (areas in the geometries' CRS)."""
    import shapely

    if len(pg) == 0 or len(tg) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    tree = shapely.STRtree(tg)
    pi, ti = tree.query(pg, predicate="intersects")
    inter = shapely.area(shapely.intersection(pg[pi], tg[ti]))
    union = shapely.area(pg[pi]) + shapely.area(tg[ti]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return pi.astype(np.int64), ti.astype(np.int64), iou


def match_boxes(pi, ti, iou, pred_rank, n_pred: int, n_true: int, threshold: float):
    """Greedy matching: returns the matched truth index of each prediction (-1 = false positive).

    ``pi, ti, iou`` are candidate pairs that are allowed to match (same class,
    same scene); ``pred_rank`` orders predictions (0 = highest score).
    """
    match = np.full(n_pred, -1, np.int64)
    ok = iou >= threshold
    pi, ti, iou = pi[ok], ti[ok], iou[ok]
    if len(pi) == 0:
        return match
    # pairs in the order they are considered: by prediction rank, then best IoU first, then truth index
    order = np.lexsort((ti, -iou, pred_rank[pi]))
    taken = np.zeros(n_true, bool)
    for p, t in zip(pi[order].tolist(), ti[order].tolist()):
        if match[p] >= 0 or taken[t]:
            continue
        match[p] = t
        taken[t] = True
    return match


def box_metrics(pred, truth, classes, iou: float = 0.5, *, crs=None):
    """Per-class precision, recall, F1 and AP at an IoU threshold, plus their macro averages.

    Parameters
    ----------
    pred : detections GeoDataFrame (``class_name``, ``score``, polygon geometry) or a tuple
        ``(xyxy, class_ids, scores)`` / ``(xyxy, class_ids, scores, image_ids)`` in pixels.
    truth : GeoDataFrame (``class_name``, polygon geometry) or ``(xyxy, class_ids[, image_ids])``.
    classes : class names, in order (pixel class ids index into it).
    iou : a prediction matches a truth box of its class when IoU >= ``iou``.
    crs : metric CRS for GeoDataFrames (default: the truth's UTM zone, else EPSG:6933).

    Returns
    -------
    pandas.DataFrame indexed by class plus ``"macro"``, columns ``n_true``, ``n_pred``,
    ``tp``, ``fp``, ``fn``, ``precision``, ``recall``, ``f1``, ``ap``. Precision is
    NaN for a class without predictions or truth, 0 when it has truth but no
    predictions; recall and AP are NaN for a class without truth. The macro row
    averages the per-class values that are not NaN and sums the counts.

    Examples
    --------
    >>> import numpy as np
    >>> truth = (np.array([[0, 0, 10, 10], [20, 0, 30, 10]]), np.array([0, 0]))
    >>> pred = (np.array([[0, 0, 10, 9], [50, 50, 60, 60]]), np.array([0, 0]), np.array([0.9, 0.8]))
    >>> m = box_metrics(pred, truth, ["car"])
    >>> m.loc["car", ["precision", "recall", "f1", "ap"]].tolist()
    [0.5, 0.5, 0.5, 0.5]
    """
    import pandas as pd

    classes = tuple(classes)
    if not classes:
        raise ConfigError("box_metrics needs at least one class")
    if not (0.0 < float(iou) <= 1.0):
        raise ConfigError(f"iou must be in (0, 1], got {iou}")
    geo_p, geo_t = _is_frame(pred), _is_frame(truth)
    if geo_p != geo_t:
        raise ConfigError("box_metrics: pass both predictions and truth as GeoDataFrames, or both as pixel arrays")
    if geo_p:
        p_cls, p_score, p_img, t_cls, t_img, pairs = _from_frames(pred, truth, classes, crs)
    else:
        p_cls, p_score, p_img, t_cls, t_img, pairs = _from_arrays(pred, truth, classes)
    pi, ti, ious = pairs
    same = (p_cls[pi] == t_cls[ti]) & (p_img[pi] == t_img[ti]) & (p_cls[pi] >= 0)
    pi, ti, ious = pi[same], ti[same], ious[same]
    # rank: descending score, stable (ties keep input order)
    order = np.argsort(-p_score, kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    match = match_boxes(pi, ti, ious, rank, len(p_cls), len(t_cls), float(iou))

    rows = []
    for k, name in enumerate(classes):
        sel = order[p_cls[order] == k]  # this class's predictions, by descending score
        tp_flags = (match[sel] >= 0).astype(np.int64)
        n_true = int((t_cls == k).sum())
        n_pred = len(sel)
        tp = int(tp_flags.sum())
        fp, fn = n_pred - tp, n_true - tp
        precision, recall, f1 = precision_recall_f1(tp, n_pred, n_true)
        rows.append([n_true, n_pred, tp, fp, fn, precision, recall, f1, average_precision(tp_flags, n_true)])
    df = pd.DataFrame(rows, index=list(classes), columns=_COLUMNS)
    macro = [int(df[c].sum()) for c in _COLUMNS[:5]]
    macro += [float(df[c].mean(skipna=True)) if df[c].notna().any() else float("nan") for c in _COLUMNS[5:]]
    df.loc["macro"] = macro
    for c in _COLUMNS[:5]:
        df[c] = df[c].astype(np.int64)
    df.index.name = "class"
    df.attrs["iou"] = float(iou)
    return df


def _is_frame(x) -> bool:
    return hasattr(x, "geometry") and hasattr(x, "columns")


def _from_arrays(pred, truth, classes):
    def unpack(x, n_fields, what):
        if hasattr(x, "xyxy"):  # a geodetect Boxes result
            x = (x.xyxy, x.class_ids, x.scores)
        if not isinstance(x, (tuple, list)) or len(x) not in (n_fields, n_fields + 1):
            raise ConfigError(f"box_metrics: {what} must be a GeoDataFrame or a tuple of {n_fields} "
                              f"(or {n_fields + 1}, with image ids) arrays")
        return list(x) + ([None] if len(x) == n_fields else [])

    pb, pc, ps, pim = unpack(pred, 3, "pred")
    tb, tc, tim = unpack(truth, 2, "truth")
    pb = np.asarray(pb, np.float64).reshape(-1, 4)
    tb = np.asarray(tb, np.float64).reshape(-1, 4)
    ps = np.asarray(ps, np.float64).reshape(-1)
    p_cls, t_cls = _class_ids(pc, classes), _class_ids(tc, classes)
    if not (len(pb) == len(p_cls) == len(ps)):
        raise ConfigError(f"box_metrics: pred has {len(pb)} boxes, {len(p_cls)} class ids and {len(ps)} scores")
    if len(tb) != len(t_cls):
        raise ConfigError(f"box_metrics: truth has {len(tb)} boxes and {len(t_cls)} class ids")
    p_img = _image_ids(pim, len(pb))
    t_img = _image_ids(tim, len(tb))
    if (pim is None) != (tim is None):
        raise ConfigError("box_metrics: give image ids for both predictions and truth, or for neither")
    if pim is not None:
        codes = {v: i for i, v in enumerate(np.unique(np.concatenate([p_img.astype(str), t_img.astype(str)])))}
        p_img = np.array([codes[str(v)] for v in p_img], np.int64)
        t_img = np.array([codes[str(v)] for v in t_img], np.int64)
    return p_cls, ps, p_img, t_cls, t_img, _pairs_xyxy(pb, tb)


def _image_ids(ids, n):
    if ids is None:
        return np.zeros(n, np.int64)
    ids = np.asarray(ids).reshape(-1)
    if len(ids) != n:
        raise ConfigError(f"box_metrics: {len(ids)} image ids for {n} boxes")
    return ids


def _metric_crs(truth, pred, crs):
    from pyproj import CRS

    if crs is not None:
        c = CRS.from_user_input(crs)
        if c.is_geographic:
            raise ConfigError(f"box_metrics: crs must be projected (metres), got geographic {c.name}")
        return c
    for frame in (truth, pred):
        if len(frame):
            try:
                u = frame.estimate_utm_crs()
                if u is not None:
                    return u
            except Exception:  # noqa: BLE001 - e.g. an empty or polar extent
                pass
    return CRS.from_user_input("EPSG:6933")


def _from_frames(pred, truth, classes, crs):
    for name, f in (("pred", pred), ("truth", truth)):
        if f.crs is None:
            raise ConfigError(f"box_metrics: {name} has no CRS; set it (e.g. .set_crs('EPSG:4326'))")
        if "class_name" not in f.columns:
            raise ConfigError(f"box_metrics: {name} needs a 'class_name' column")
    if "score" not in pred.columns:
        raise ConfigError("box_metrics: pred needs a 'score' column")
    if not pred.crs.equals(truth.crs):
        raise ConfigError(f"box_metrics: pred and truth are in different CRSs ({pred.crs.name} vs "
                          f"{truth.crs.name}); reproject one with .to_crs() first")
    metric = _metric_crs(truth, pred, crs)
    pg = np.asarray(pred.to_crs(metric).geometry.values, dtype=object)
    tg = np.asarray(truth.to_crs(metric).geometry.values, dtype=object)
    p_cls = _class_ids(pred["class_name"].to_numpy(), classes)
    t_cls = _class_ids(truth["class_name"].to_numpy(), classes)
    if "scene_id" in pred.columns and "scene_id" in truth.columns:
        ids = {v: i for i, v in enumerate(sorted(set(pred["scene_id"].astype(str)) | set(truth["scene_id"].astype(str))))}
        p_img = pred["scene_id"].astype(str).map(ids).to_numpy(np.int64)
        t_img = truth["scene_id"].astype(str).map(ids).to_numpy(np.int64)
    else:
        p_img, t_img = np.zeros(len(pred), np.int64), np.zeros(len(truth), np.int64)
    return p_cls, pred["score"].to_numpy(np.float64), p_img, t_cls, t_img, _pairs_geoms(pg, tg)

