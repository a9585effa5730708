"""Scores of tile classifications: accuracy and a confusion matrix.

Each classified tile is scored against the true class at the centre of its
footprint. Tiles whose centre no truth polygon covers are not scored; they are
counted (``unlabelled``) so nothing goes missing silently. A ``grouping``
(fine class -> group, e.g. the land-use seed's three classes) maps both sides
before scoring; names not in the mapping are kept as they are.

Examples
--------
>>> import pandas as pd
>>> r = classification_scores(pd.Series(["a", "b", "b"]), pd.Series(["a", "b", "a"]), classes=["a", "b"])
>>> round(r["accuracy"], 3)
0.667
>>> int(r["confusion"].loc["a", "b"])   # true a, detected b
1
"""

from __future__ import annotations

__all__ = ["classification_scores", "label_tiles"]


def label_tiles(tiles, truth):
    """True class at the centre of each tile footprint (a Series aligned with ``tiles``; None where uncovered)."""
    import geopandas as gpd
    import pandas as pd

    if len(tiles) == 0:
        return pd.Series([], dtype=object)
    t = truth.to_crs(tiles.crs) if truth.crs is not None and tiles.crs is not None else truth
    # a centre in the tile's own projected grid would be better, but footprints are small: the
    # centroid of the footprint polygon is within a fraction of a pixel of the tile centre
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # geographic centroid warning
        centres = gpd.GeoDataFrame({"_i": range(len(tiles))}, geometry=tiles.geometry.centroid.values, crs=tiles.crs)
    hit = gpd.sjoin(centres, t[["class_name", "geometry"]], how="left", predicate="within")
    hit = hit[~hit.index.duplicated(keep="first")]
    return pd.Series(hit["class_name"].values, index=tiles.index, dtype=object).where(
        pd.notna(hit["class_name"].values), None)


def classification_scores(detected, true, *, classes, grouping: dict | None = None) -> dict:
    """Accuracy and confusion (rows true, columns detected) of two aligned label Series."""
    import pandas as pd

    det = pd.Series(detected).astype(object).reset_index(drop=True)
    tru = pd.Series(true).astype(object).reset_index(drop=True)
    labelled = tru.notna()
    n_unlabelled = int((~labelled).sum())
    det, tru = det[labelled], tru[labelled]
    classes = list(classes)
    if grouping:
        det = det.map(lambda v: grouping.get(v, v))
        tru = tru.map(lambda v: grouping.get(v, v))
        classes = list(dict.fromkeys(grouping.get(c, c) for c in classes))
    extra = sorted(set(tru) - set(classes)) + sorted(set(det) - set(classes) - set(tru))
    labels = classes + extra
    conf = pd.crosstab(pd.Categorical(tru, categories=labels), pd.Categorical(det, categories=labels),
                       dropna=False).reindex(index=labels, columns=labels, fill_value=0)
    conf.index.name, conf.columns.name = "true", "detected"
    n = int(len(tru))
    acc = float((det.values == tru.values).sum() / n) if n else float("nan")
    per = pd.DataFrame({"true_tiles": conf.sum(axis=1), "detected_tiles": conf.sum(axis=0)})
    diag = pd.Series([conf.loc[c, c] for c in labels], index=labels)
    per["recall"] = diag / per["true_tiles"].where(per["true_tiles"] > 0)
    per["precision"] = diag / per["detected_tiles"].where(per["detected_tiles"] > 0)
    return {"accuracy": acc, "confusion": conf, "per_class": per, "scored_tiles": n, "unlabelled_tiles": n_unlabelled}
