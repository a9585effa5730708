"""Counts of detections per scene and class, and the Kaggle sea-lion submission CSV.

>>> import geopandas as gpd
>>> from shapely.geometry import Point
>>> dets = gpd.GeoDataFrame({"scene_id": ["2", "2", "10"], "class_name": ["pups", "pups", "adult_males"]},
...                         geometry=[Point(0, 0)] * 3, crs=4326)
>>> counts(dets).loc["2"].tolist()
[0, 0, 0, 0, 2]
>>> list(counts(dets).index)   # integer-like ids in numeric order
['2', '10']
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from geodetect.errors import ConfigError

__all__ = ["SEA_LION_CLASSES", "KAGGLE_COLUMNS", "counts", "write_kaggle_submission", "kaggle_submission"]

#: the five classes of the NOAA Steller sea-lion Kaggle competition, in submission order
SEA_LION_CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups")
KAGGLE_COLUMNS = ("test_id",) + SEA_LION_CLASSES

_INT = re.compile(r"^[+-]?\d+$")


def _natural(ids):
    """Sort ids: integer-like ones numerically first, then the others as text."""
    ids = [str(i) for i in ids]
    return sorted(ids, key=lambda s: (0, int(s), s) if _INT.match(s) else (1, 0, s))


def counts(dets, *, classes=SEA_LION_CLASSES, scene_ids=None):
    """Detections per scene (rows, index ``scene_id``) and class (columns), zeros filled.

    Parameters
    ----------
    dets : a detections table (``scene_id`` and ``class_name`` columns), e.g. from
        :func:`geodetect.detect` or :func:`geodetect.read`.
    classes : the columns, in order (default: the five Kaggle sea-lion classes);
        ``None`` uses the classes present, sorted. A detection of a class not
        listed is an error (pass ``classes=`` for other detectors).
    scene_ids : scenes to report even without detections. By default the scenes
        of ``dets`` plus, for a table fresh from :func:`geodetect.detect`, every
        scene it ran on (``dets.attrs["geodetect"]``), so scenes where nothing
        was found get a row of zeros. Give them when the table was read from a
        file.

    Returns
    -------
    pandas.DataFrame of int64, index ``scene_id`` (str) in natural order.
    """
    import pandas as pd

    for col in ("scene_id", "class_name"):
        if col not in getattr(dets, "columns", ()):
            raise ConfigError(f"counts: the detections need a {col!r} column")
    sid = dets["scene_id"].astype(str)
    cls = dets["class_name"].astype(str)
    if classes is None:
        classes = sorted(set(cls))
    classes = [str(c) for c in classes]
    unknown = sorted(set(cls) - set(classes))
    if unknown:
        raise ConfigError(f"counts: detections of class(es) {unknown} are not among {classes}; pass classes=")
    ids = set(sid)
    if scene_ids is not None:
        ids |= {str(s) for s in scene_ids}
    else:
        for st in (getattr(dets, "attrs", {}) or {}).get("geodetect", []) or []:
            if isinstance(st, dict) and "scene_id" in st:
                ids.add(str(st["scene_id"]))
    table = pd.crosstab(sid, cls) if len(dets) else pd.DataFrame()
    out = table.reindex(index=_natural(ids), columns=classes).fillna(0).astype("int64")
    out.index.name = "scene_id"
    out.columns.name = None
    return out


def write_kaggle_submission(counts_df, path) -> Path:
    """Write counts as the Kaggle sea-lion submission CSV.

    Columns ``test_id,adult_males,subadult_males,adult_females,juveniles,pups``;
    ``test_id`` is the scene id as it is (Kaggle's test images are ``0.jpg``,
    ``1.jpg``, ... so their ids are integers written as text). Rows in natural
    order; counts rounded to integers. The file is written beside the target
    and renamed into place.
    """
    import numpy as np

    missing = [c for c in SEA_LION_CLASSES if c not in counts_df.columns]
    if missing:
        raise ConfigError(f"write_kaggle_submission: counts lack column(s) {missing}")
    df = counts_df[list(SEA_LION_CLASSES)]
    ids = [str(i) for i in df.index]
    if len(set(ids)) != len(ids):
        raise ConfigError("write_kaggle_submission: duplicate scene ids in the counts")
    vals = df.to_numpy(np.float64)
    if not np.all(np.isfinite(vals)) or (vals < 0).any():
        raise ConfigError("write_kaggle_submission: counts must be finite and >= 0")
    pos = {s: k for k, s in enumerate(ids)}
    lines = [",".join(KAGGLE_COLUMNS)]
    for s in _natural(ids):
        if any(ch in s for ch in ',"\n\r'):
            raise ConfigError(f"write_kaggle_submission: scene id {s!r} cannot be a CSV test_id")
        lines.append(",".join([s] + [str(int(v)) for v in np.rint(vals[pos[s]])]))
    from geodetect._atomic import atomic_output

    path = Path(os.fspath(path))
    with atomic_output(path, what="the submission") as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n", newline="")
    return path


def kaggle_submission(detections, out, *, scene_ids=None):
    """Detections (a table, or a file :func:`geodetect.read` reads) -> submission CSV at ``out``.

    What ``geodetect counts detections.parquet --out submission.csv`` does.
    Returns the counts DataFrame.
    """
    if isinstance(detections, (str, os.PathLike)):
        from geodetect.frames import read

        detections = read(detections)
    table = counts(detections, scene_ids=scene_ids)
    write_kaggle_submission(table, out)
    return table
