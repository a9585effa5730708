"""Outlines of labelled raster regions as polygons, vectorised over every pixel edge.

:func:`outline_polygons` turns a label image (0 = nothing, 1..n = regions, each 4-connected) into
one polygon per label whose edges follow the pixel edges, holes included. It gives the polygons
``rasterio.features.shapes(..., connectivity=4)`` gives, without one Python object per vertex:
every boundary edge of every region is found, linked to the next one and ordered with numpy,
so its cost grows with the length of the outlines, not with the number of regions.

How a boundary is walked: each edge is directed with its region on the left; at the edge's end
vertex, of the two pixels ahead, the walk turns right if the ahead-right one belongs to the
region, goes straight if only the ahead-left one does, and turns left otherwise. Where two pixels
of one region meet only at a corner (a region that reaches around and touches itself), the walk
thus keeps to the background, so the outline splits there into a shell and a hole that touch at
that corner (valid polygons), and two regions meeting at a corner keep separate outlines.
"""

from __future__ import annotations

import numpy as np

__all__ = ["outline_polygons"]

# directions: 0 east (+x), 1 south (+y, rows down), 2 west, 3 north; the region lies on the left,
# left of direction d is d + 1 (mod 4) in these row-down coordinates
_DX = np.array([1, 0, -1, 0], np.int64)
_DY = np.array([0, 1, 0, -1], np.int64)


def _edges(lab: np.ndarray):
    """Every directed boundary edge: (x0, y0 start vertex, direction, label), vertices on the pixel corners."""
    p = np.pad(lab, 1)
    xs, ys, ds, ls = [], [], [], []
    # horizontal edges on vertex row i between columns j and j + 1: pixels above p[i, j+1], below p[i+1, j+1];
    # a region below gives an east edge from (j, i), one above a west edge from (j + 1, i)
    above, below = p[:-1, 1:-1], p[1:, 1:-1]
    i, j = np.nonzero(above != below)
    a, b = above[i, j], below[i, j]
    for side, direction, dx0, dy0 in ((b, 0, 0, 0), (a, 2, 1, 0)):
        k = side > 0
        xs.append(j[k] + dx0); ys.append(i[k] + dy0); ds.append(np.full(int(k.sum()), direction, np.int8)); ls.append(side[k])
    # vertical edges on vertex column j between rows i and i + 1: pixels left p[i+1, j], right p[i+1, j+1];
    # a region on the left gives a south edge from (j, i), one on the right a north edge from (j, i + 1)
    left, right = p[1:-1, :-1], p[1:-1, 1:]
    i, j = np.nonzero(left != right)
    a, b = left[i, j], right[i, j]
    for side, direction, dx0, dy0 in ((a, 1, 0, 0), (b, 3, 0, 1)):
        k = side > 0
        xs.append(j[k] + dx0); ys.append(i[k] + dy0); ds.append(np.full(int(k.sum()), direction, np.int8)); ls.append(side[k])
    return (np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64),
            np.concatenate(ds).astype(np.int64), np.concatenate(ls)), p


def _successors(x0, y0, d, lab, p, width):
    """Index of the edge that follows each edge along its region's outline."""
    x1, y1 = x0 + _DX[d], y0 + _DY[d]
    # the four pixels around vertex (x, y) in the padded image: NW p[y, x], NE p[y, x+1], SW p[y+1, x], SE p[y+1, x+1]
    # ahead-left / ahead-right (row, col offsets) per direction: E: SE / NE, S: SW / SE, W: NW / SW, N: NE / NW
    al_r, al_c = np.array([1, 1, 0, 0])[d], np.array([1, 0, 0, 1])[d]
    ar_r, ar_c = np.array([0, 1, 1, 0])[d], np.array([1, 1, 0, 0])[d]
    ahead_left = p[y1 + al_r, x1 + al_c] == lab
    ahead_right = p[y1 + ar_r, x1 + ar_c] == lab
    turn = np.where(ahead_right, 3, np.where(ahead_left, 0, 1))
    nd = (d + turn) % 4
    key = (y0 * (width + 1) + x0) * 4 + d
    order = np.argsort(key, kind="stable")
    want = (y1 * (width + 1) + x1) * 4 + nd
    pos = np.searchsorted(key, want, sorter=order)
    nxt = order[np.minimum(pos, len(order) - 1)]
    if len(nxt) and not np.array_equal(key[nxt], want):  # every walk must find its next edge
        raise AssertionError("outline tracing found an unclosed boundary")
    return nxt


def _walk_order(nxt):
    """The edges of a permutation's cycles in walking order, cycle after cycle: (order, cycle id of each).

    Pointer doubling: after k rounds each edge knows the smallest edge index among the 2^k edges
    from it, and how many steps ahead it lies; once that is the same along every cycle, it is the
    cycle's smallest edge, where its walk starts.
    """
    n = len(nxt)
    rep = np.arange(n, dtype=nxt.dtype)
    ahead = np.zeros(n, nxt.dtype)
    jump = nxt.copy()
    span = 1
    while not np.array_equal(rep, rep[nxt]):
        later = rep[jump]
        take = later < rep
        ahead = np.where(take, ahead[jump] + span, ahead)
        rep = np.where(take, later, rep)
        jump = jump[jump]
        span *= 2
    length = np.bincount(rep, minlength=n)
    first = np.cumsum(length) - length  # where each cycle (by its smallest edge) starts in the output
    step = np.where(ahead == 0, 0, length[rep] - ahead)  # steps from the cycle's start to this edge
    order = np.empty(n, nxt.dtype)
    order[first[rep] + step] = np.arange(n, dtype=nxt.dtype)
    return order, rep[order]


def outline_polygons(lab: np.ndarray, n: int, row0: float = 0.0, col0: float = 0.0) -> np.ndarray:
    """Polygons of regions 1..n of a label image, in pixel coordinates offset by (col0, row0).

    ``lab`` (h, w) integer labels, 0 off; each label must be present and 4-connected (as
    ``scipy.ndimage.label`` gives). Returns an object array of n shapely Polygons, label k at k - 1.
    """
    import shapely

    lab = np.asarray(lab)
    if n == 0:
        return np.zeros(0, dtype=object)
    (x0, y0, d, elab), p = _edges(lab)
    nxt = _successors(x0, y0, d, elab, p, lab.shape[1])
    order, rep_s = _walk_order(nxt)
    d_s = d[order]
    start = np.r_[True, rep_s[1:] != rep_s[:-1]]
    first = np.flatnonzero(start)
    last = np.r_[first[1:], len(order)] - 1
    prev_d = np.r_[-1, d_s[:-1]]
    prev_d[first] = d_s[last]
    corner = d_s != prev_d  # a vertex only where the outline turns
    keep = order[corner]
    ring_of = rep_s[corner]
    # signed area of each cycle (shoelace over all its edges): > 0 for a shell, < 0 for a hole
    x1, y1 = x0 + _DX[d], y0 + _DY[d]
    reps, ring_idx = np.unique(ring_of, return_inverse=True)
    area2 = np.bincount(rep_s, weights=(x0 * y1 - x1 * y0)[order].astype(np.float64), minlength=len(nxt))[reps]
    ring_label = elab[reps]
    ring_order = np.lexsort((area2 < 0, ring_label))  # per label: its shell first, then its holes
    rank = np.empty_like(ring_order)
    rank[ring_order] = np.arange(len(ring_order))
    vert_ring = rank[ring_idx]
    by_ring = np.argsort(vert_ring, kind="stable")  # vertices stay in walking order within a ring
    coords = np.column_stack([x0[keep][by_ring] + col0, y0[keep][by_ring] + row0]).astype(np.float64)
    rings = shapely.linearrings(coords, indices=vert_ring[by_ring])
    labels_sorted = ring_label[ring_order]
    if not np.array_equal(np.unique(labels_sorted), np.arange(1, n + 1)):
        raise ValueError("outline_polygons: labels must be exactly 1..n")
    return shapely.polygons(rings, indices=labels_sorted - 1)
