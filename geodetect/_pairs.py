"""Close pairs of 2-D points in numpy: what ``scipy.spatial.cKDTree.query_pairs`` gives, without SciPy.

Importing ``scipy.spatial`` costs 0.3-1.5 s (it pulls in ``scipy.linalg``, ``scipy.special`` and
``scipy.sparse``), which was most of the first ``gd.detect`` of a process. The seam merge only
needs the pairs closer than a few pixels among points near tile edges: a grid of cells one radius
wide finds them with a sort and a few ``searchsorted`` calls.
"""

from __future__ import annotations

import numpy as np

__all__ = ["close_pairs"]

# a cell and the four neighbours after it in (column, row) order: every pair of cells within one
# cell of each other is looked at exactly once
_OFFSETS = ((0, 0), (1, -1), (1, 0), (1, 1), (0, 1))


def close_pairs(xy: np.ndarray, radius: float) -> np.ndarray:
    """(P, 2) int64 index pairs ``i < j`` of points at Euclidean distance ``<= radius``.

    The same set of pairs as ``cKDTree(xy).query_pairs(radius, output_type="ndarray")``
    (in another order).
    """
    xy = np.asarray(xy, np.float64)
    n = len(xy)
    if n < 2 or not radius >= 0:
        return np.zeros((0, 2), np.int64)
    cell = float(radius) if radius > 0 else 1.0
    cx = np.floor((xy[:, 0] - xy[:, 0].min()) / cell).astype(np.int64)
    cy = np.floor((xy[:, 1] - xy[:, 1].min()) / cell).astype(np.int64)
    ny = int(cy.max()) + 3  # room for the row offsets -1..+1 without wrapping into the next column
    if (int(cx.max()) + 2) * ny >= 2**62:  # a radius tiny against the spread: cell keys would overflow
        from scipy.spatial import cKDTree

        return np.sort(cKDTree(xy).query_pairs(radius, output_type="ndarray").astype(np.int64), axis=1)
    key = cx * ny + (cy + 1)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    r2 = float(radius) * float(radius)
    out = []
    for dx, dy in _OFFSETS:
        want = skey + (dx * ny + dy)
        lo = np.searchsorted(skey, want, "left")
        hi = np.searchsorted(skey, want, "right")
        if dx == 0 and dy == 0:
            lo = np.arange(n) + 1  # the same cell: only the points after this one (each pair once)
        cnt = np.maximum(hi - lo, 0)
        total = int(cnt.sum())
        if not total:
            continue
        a = np.repeat(np.arange(n), cnt)
        start = np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
        b = start + np.arange(total)
        i, j = order[a], order[b]
        d = xy[i] - xy[j]
        close = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] <= r2
        out.append(np.column_stack([i[close], j[close]]))
    if not out:
        return np.zeros((0, 2), np.int64)
    pairs = np.concatenate(out)
    return np.sort(pairs, axis=1)
