"""The numpy close-pair finder of the seam merge gives exactly cKDTree's pairs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from geodetect._pairs import close_pairs


def _as_set(pairs):
    return {tuple(p) for p in np.sort(np.asarray(pairs).reshape(-1, 2), axis=1)}


@pytest.mark.parametrize("n,span,radius", [(0, 10, 1.0), (1, 10, 1.0), (2, 1, 5.0), (2000, 100, 3.0),
                                            (5000, 50, 0.5), (300, 10, 0.0), (1000, 1e6, 4.0), (400, 3, 1.0)])
def test_same_pairs_as_ckdtree(n, span, radius):
    rng = np.random.default_rng(n)
    xy = rng.uniform(-span, span, (n, 2))
    if n > 10:  # exact duplicates, points on the cell grid and pairs exactly `radius` apart
        xy[: n // 10] = np.round(xy[: n // 10])
        xy[n // 10 : n // 5] = xy[: n // 10]
        xy[n // 5 : n // 5 + 5] = xy[:5] + [radius, 0]
    got = close_pairs(xy, radius)
    assert got.dtype == np.int64 and got.shape[1] == 2
    assert np.all(got[:, 0] < got[:, 1])
    assert len(_as_set(got)) == len(got), "a pair reported twice"
    want = cKDTree(xy).query_pairs(radius, output_type="ndarray") if n else np.zeros((0, 2))
    assert _as_set(got) == _as_set(want)
