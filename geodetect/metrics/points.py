"""Point detection and counting metrics: count RMSE (the Kaggle sea-lion metric) and point matching.

* :func:`count_rmse`: per class, the root mean square error of the counts
  over scenes; then the mean over classes. This is the NOAA Steller sea-lion
  Kaggle metric ("RMSE averaged over the columns").
* :func:`match_points`: one-to-one matching of predicted and true points
  within a radius in metres, regardless of class: a match is a found animal;
  its two classes fill the confusion matrix. Matching is greedy by distance:
  the closest (prediction, truth) pair within the radius is matched first,
  then the closest of the remaining ones, and so on (ties: lower prediction
  index, then lower truth index). When both tables have a ``scene_id``
  column, points match within their scene only.

Per class ``c``: a true positive is a match whose truth and prediction are
both ``c``; a prediction of ``c`` that is unmatched or matched to another
class is a false positive of ``c``; a truth of ``c`` that is unmatched or
matched to another class is a false negative of ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geodetect.errors import ConfigError
from geodetect.metrics import precision_recall_f1

__all__ = ["count_rmse", "match_points", "PointMatch"]

NONE = "(none)"


def _as_counts(df, name: str):
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ConfigError(f"count_rmse: {name} must be a DataFrame (index scene id, one column per class)")
    out = df.copy()
    out.index = out.index.map(str)
    if out.index.has_duplicates:
        dup = sorted(set(out.index[out.index.duplicated()]))
        raise ConfigError(f"count_rmse: {name} has duplicate scene ids: {dup[:5]}")
    return out


def count_rmse(pred_counts, true_counts, *, classes=None, per_class: bool = False):
    """Count RMSE per class over scenes, averaged over classes.

    Parameters
    ----------
    pred_counts, true_counts : DataFrames indexed by scene id, one column per class
        (as :func:`geodetect.counts.counts` makes). Scene ids compare as strings.
        A scene of the truth missing from the predictions counts as all zeros; a
        predicted scene that is not in the truth is an error.
    classes : the classes to score (default: the truth's columns).
    per_class : also return the per-class RMSE.

    Returns
    -------
    float (the mean over classes), or (float, pandas.Series of per-class RMSE).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"a": [1, 2], "b": [0, 0]}, index=["s1", "s2"])
    >>> p = pd.DataFrame({"a": [2, 2], "b": [0, 2]}, index=["s1", "s2"])
    >>> round(count_rmse(p, t), 6)   # a: sqrt((1 + 0) / 2); b: sqrt((0 + 4) / 2)
    1.06066
    """
    truth = _as_counts(true_counts, "true_counts")
    pred = _as_counts(pred_counts, "pred_counts")
    if len(truth) == 0:
        raise ConfigError("count_rmse: true_counts has no scenes")
    extra = sorted(set(pred.index) - set(truth.index))
    if extra:
        raise ConfigError(f"count_rmse: {len(extra)} predicted scene(s) not in the truth, e.g. {extra[:5]}; "
                          "check the scene ids match (they compare as strings)")
    classes = list(truth.columns if classes is None else classes)
    missing = [c for c in classes if c not in truth.columns]
    if missing:
        raise ConfigError(f"count_rmse: true_counts has no column(s) {missing}")
    p = pred.reindex(index=truth.index, columns=classes).fillna(0).to_numpy(np.float64)
    t = truth[classes].to_numpy(np.float64)
    import pandas as pd

    rmse = pd.Series(np.sqrt(np.mean((p - t) ** 2, axis=0)), index=classes, name="rmse")
    mean = float(rmse.mean())
    return (mean, rmse) if per_class else mean


@dataclass
class PointMatch:
    """Result of :func:`match_points`.

    ``precision``, ``recall``, ``f1``: finding animals, whatever their class.
    ``per_class``: DataFrame indexed by class (plus ``"macro"``), columns
    ``n_true, n_pred, tp, fp, fn, precision, recall, f1`` (class must agree).
    ``confusion``: DataFrame of counts, rows the true class, columns the
    predicted class, each with a ``"(none)"`` entry: row ``(none)`` holds
    unmatched predictions, column ``(none)`` unmatched truths.
    ``pred_match``: per prediction, the index (position) of its matched truth, or -1.
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    per_class: object
    confusion: object
    pred_match: np.ndarray
    distances_m: np.ndarray

    def summary(self) -> str:
        return (f"{self.tp} matched, {self.fp} false, {self.fn} missed: precision {self.precision:.3f}, "
                f"recall {self.recall:.3f}, F1 {self.f1:.3f}")


def _xy_metres(pred, truth, crs):
    from pyproj import CRS

    for name, f in (("pred", pred), ("truth", truth)):
        if f.crs is None:
            raise ConfigError(f"match_points: {name} has no CRS; set it (e.g. .set_crs('EPSG:4326'))")
        if "class_name" not in f.columns:
            raise ConfigError(f"match_points: {name} needs a 'class_name' column")
        if len(f) and not (f.geometry.geom_type == "Point").all():
            raise ConfigError(f"match_points: {name} must hold Point geometries")
    if crs is not None:
        metric = CRS.from_user_input(crs)
        if metric.is_geographic:
            raise ConfigError(f"match_points: crs must be projected (metres), got geographic {metric.name}")
    elif not truth.crs.is_geographic and truth.crs.equals(pred.crs):
        metric = truth.crs
    else:
        metric = None
        for frame in (truth, pred):
            if len(frame):
                try:
                    metric = frame.estimate_utm_crs()
                    break
                except Exception:  # noqa: BLE001
                    pass
        metric = metric or CRS.from_user_input("EPSG:6933")

    def xy(f):
        g = f.to_crs(metric).geometry
        unit = metric.axis_info[0].unit_conversion_factor if metric.axis_info else 1.0
        return np.column_stack([g.x.to_numpy(), g.y.to_numpy()]) * (unit or 1.0)

    return xy(pred), xy(truth)


def match_points(pred, truth, radius_m: float, *, classes=None, crs=None) -> PointMatch:
    """Match predicted to true points within ``radius_m`` metres (see the module docstring).

    Parameters
    ----------
    pred, truth : GeoDataFrames of points with a ``class_name`` column (and optionally
        ``scene_id``), in any CRS (they are projected to metres: ``crs``, else the
        truth's own projected CRS, else its UTM zone).
    radius_m : largest distance of a match, metres.
    classes : class names for the tables (default: the truth's and predictions' classes, sorted).

    Examples
    --------
    >>> import geopandas as gpd
    >>> from shapely.geometry import Point
    >>> t = gpd.GeoDataFrame({"class_name": ["pup", "cow"]}, geometry=[Point(0, 0), Point(10, 0)], crs=32606)
    >>> p = gpd.GeoDataFrame({"class_name": ["pup", "pup"]}, geometry=[Point(0.3, 0), Point(10, 0.2)], crs=32606)
    >>> m = match_points(p, t, 0.5)
    >>> (m.tp, m.fp, m.fn), m.per_class.loc["pup", ["tp", "fp", "fn"]].tolist()
    ((2, 0, 0), [1, 1, 0])
    """
    import pandas as pd
    from scipy.spatial import cKDTree

    radius = float(radius_m)
    if not radius > 0:
        raise ConfigError(f"match_points: radius_m must be positive, got {radius_m}")
    pxy, txy = _xy_metres(pred, truth, crs)
    pc = pred["class_name"].astype(str).to_numpy()
    tc = truth["class_name"].astype(str).to_numpy()
    if classes is None:
        classes = sorted(set(pc) | set(tc))
    classes = [str(c) for c in classes]
    if "scene_id" in pred.columns and "scene_id" in truth.columns:
        ps, ts = pred["scene_id"].astype(str).to_numpy(), truth["scene_id"].astype(str).to_numpy()
    else:
        ps, ts = np.zeros(len(pred), object), np.zeros(len(truth), object)

    # candidate pairs within the radius, same scene
    pi_l, ti_l, d_l = [], [], []
    for sid in sorted(set(ps) & set(ts)):
        pidx, tidx = np.nonzero(ps == sid)[0], np.nonzero(ts == sid)[0]
        tree = cKDTree(txy[tidx])
        for k, cand in zip(pidx, tree.query_ball_point(pxy[pidx], radius)):
            for j in cand:
                pi_l.append(k)
                ti_l.append(tidx[j])
                d_l.append(float(np.hypot(*(pxy[k] - txy[tidx[j]]))))
    pi_a, ti_a, d_a = np.array(pi_l, np.int64), np.array(ti_l, np.int64), np.array(d_l)
    keep = d_a <= radius
    pi_a, ti_a, d_a = pi_a[keep], ti_a[keep], d_a[keep]
    match = np.full(len(pred), -1, np.int64)
    dist = np.full(len(pred), np.nan)
    taken = np.zeros(len(truth), bool)
    for k in np.lexsort((ti_a, pi_a, d_a)):
        p, t = pi_a[k], ti_a[k]
        if match[p] >= 0 or taken[t]:
            continue
        match[p], dist[p], taken[t] = t, d_a[k], True

    labels = classes + [NONE]
    conf = pd.DataFrame(0, index=pd.Index(labels, name="true"), columns=pd.Index(labels, name="predicted"))
    for p in range(len(pred)):
        t_lab = tc[match[p]] if match[p] >= 0 else NONE
        if t_lab not in conf.index or pc[p] not in conf.columns:
            raise ConfigError(f"match_points: class {t_lab if t_lab not in conf.index else pc[p]!r} is not in classes")
        conf.loc[t_lab, pc[p]] += 1
    for t in np.nonzero(~taken)[0]:
        if tc[t] not in conf.index:
            raise ConfigError(f"match_points: class {tc[t]!r} is not in classes")
        conf.loc[tc[t], NONE] += 1

    rows = []
    for c in classes:
        n_true, n_pred = int((tc == c).sum()), int((pc == c).sum())
        tp = int(conf.loc[c, c])
        rows.append([n_true, n_pred, tp, n_pred - tp, n_true - tp, *precision_recall_f1(tp, n_pred, n_true)])
    cols = ["n_true", "n_pred", "tp", "fp", "fn", "precision", "recall", "f1"]
    per = pd.DataFrame(rows, index=pd.Index(classes, name="class"), columns=cols)
    macro = [int(per[c].sum()) for c in cols[:5]]
    macro += [float(per[c].mean(skipna=True)) if per[c].notna().any() else float("nan") for c in cols[5:]]
    per.loc["macro"] = macro
    for c in cols[:5]:
        per[c] = per[c].astype(np.int64)
    tp = int((match >= 0).sum())
    precision, recall, f1 = precision_recall_f1(tp, len(pred), len(truth))
    return PointMatch(tp, len(pred) - tp, len(truth) - tp, precision, recall, f1, per, conf, match, dist)
