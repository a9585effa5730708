"""Outlines of labelled raster regions as polygons, vectorised over every pixel edge.

:func:`outline_polygons` turns a label image (0 = nothing, 1..n = regions, each 4-connected) into
one polygon per label whose edges follow the pixel edges, holes included. It gives the polygons
``rasterio.features.shapes(..., connectivity=4)`` gives, without one Python object per vertex:
every boundary edge of every region is found, linked to the next one and ordered with numpy,
so its cost grows with the length of the outlines, not with the number of regions.
:class:`Outliner` does the same for an image given in strips of rows, with the labels of regions
that continue across a strip border joined (so a lake crossing every strip is one polygon) and
without the whole image in memory: only the outlines and the rows either side of each border.

How a boundary is walked: each edge is directed with its region on the left; at the edge's end
vertex, of the two pixels ahead, the walk turns right if the ahead-right one belongs to the
region, goes straight if only the ahead-left one does, and turns left otherwise. Where two pixels
of one region meet only at a corner (a region that reaches around and touches itself), the walk
thus keeps to the background, so the outline splits there into a shell and a hole that touch at
that corner (valid polygons), and two regions meeting at a corner keep separate outlines.
"""

from __future__ import annotations

import numpy as np

__all__ = ["outline_polygons", "Outliner"]

# directions: 0 east (+x), 1 south (+y, rows down), 2 west, 3 north; the region lies on the left,
# left of direction d is d + 1 (mod 4) in these row-down coordinates
_DX = np.array([1, 0, -1, 0], np.int64)
_DY = np.array([0, 1, 0, -1], np.int64)
# the four pixels around a vertex, as (row, column) offsets from the vertex in an image padded by one
# pixel: NW (0, 0), NE (0, 1), SW (1, 0), SE (1, 1); the two ahead of an edge per direction:
# ahead-left E: SE, S: SW, W: NW, N: NE; ahead-right E: NE, S: SE, W: SW, N: NW
_AL_R, _AL_C = np.array([1, 1, 0, 0]), np.array([1, 0, 0, 1])
_AR_R, _AR_C = np.array([0, 1, 1, 0]), np.array([1, 1, 0, 0])


def _edges(p: np.ndarray, rows: range, vertical: bool = True):
    """Directed boundary edges of a padded label image ``p``: horizontal ones on vertex rows ``rows``, and
    (``vertical``) the vertical ones of every pixel row: (x0, y0 start vertex, direction, label)."""
    xs, ys, ds, ls = [], [], [], []
    # horizontal edges on vertex row i between columns j and j + 1: pixels above p[i, j+1], below p[i+1, j+1];
    # a region below gives an east edge from (j, i), one above a west edge from (j + 1, i)
    above, below = p[rows.start:rows.stop, 1:-1], p[rows.start + 1:rows.stop + 1, 1:-1]
    i, j = np.nonzero(above != below)
    i += rows.start
    a, b = p[i, j + 1], p[i + 1, j + 1]
    for side, direction, dx0, dy0 in ((b, 0, 0, 0), (a, 2, 1, 0)):
        k = side > 0
        xs.append(j[k] + dx0); ys.append(i[k] + dy0); ds.append(np.full(int(k.sum()), direction, np.int8)); ls.append(side[k])
    # vertical edges on vertex column j between rows i and i + 1: pixels left p[i+1, j], right p[i+1, j+1];
    # a region on the left gives a south edge from (j, i), one on the right a north edge from (j, i + 1)
    left, right = (p[1:-1, :-1], p[1:-1, 1:]) if vertical else (p[:0, :-1], p[:0, 1:])
    i, j = np.nonzero(left != right)
    a, b = left[i, j], right[i, j]
    for side, direction, dx0, dy0 in ((a, 1, 0, 0), (b, 3, 0, 1)):
        k = side > 0
        xs.append(j[k] + dx0); ys.append(i[k] + dy0); ds.append(np.full(int(k.sum()), direction, np.int8)); ls.append(side[k])
    return (np.concatenate(xs).astype(np.int64), np.concatenate(ys).astype(np.int64),
            np.concatenate(ds).astype(np.int64), np.concatenate(ls))


def _ahead(p: np.ndarray, x0, y0, d, row_offset: int = 0):
    """Labels of the pixels ahead-left and ahead-right of each edge's end vertex; ``p`` is padded, and vertex
    row y lies between its rows y - row_offset and y - row_offset + 1."""
    x1, y1 = x0 + _DX[d], y0 + _DY[d] - row_offset
    return p[y1 + _AL_R[d], x1 + _AL_C[d]], p[y1 + _AR_R[d], x1 + _AR_C[d]]


def _successors(x0, y0, d, lab, al, ar, width):
    """Index of the edge that follows each edge along its region's outline (see the module's rule)."""
    turn = np.where(ar == lab, 3, np.where(al == lab, 0, 1))
    nd = (d + turn) % 4
    key = (y0 * (width + 1) + x0) * 4 + d
    order = np.argsort(key, kind="stable")
    want = ((y0 + _DY[d]) * (width + 1) + x0 + _DX[d]) * 4 + nd
    pos = np.searchsorted(key, want, sorter=order)
    nxt = order[np.minimum(pos, len(order) - 1)]
    if len(nxt) and not np.array_equal(key[nxt], want):  # every walk must find its next edge
        raise AssertionError("outline tracing found an unclosed boundary")
    return nxt


def _walk_order(nxt):
    """The edges of a permutation's cycles in walking order, cycle after cycle: (order, cycle id of each).

    Cycles come in the order of their smallest edge, each walked from that edge; a cycle's id is its smallest
    edge. The cycles are found as the connected components of the successor graph; then each cycle's last edge
    is linked to the next cycle's first, which makes one path through every edge, and a depth-first walk of
    that path (compiled, linear) gives the order.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components, depth_first_order

    n = len(nxt)
    if n == 0:
        return np.zeros(0, nxt.dtype), np.zeros(0, nxt.dtype)
    idx = np.arange(n, dtype=nxt.dtype)
    graph = csr_matrix((np.ones(n, np.int8), nxt, np.arange(n + 1)), shape=(n, n))
    ncyc, cyc = connected_components(graph, directed=True, connection="weak")
    start = np.full(ncyc, n, nxt.dtype)
    np.minimum.at(start, cyc, idx)  # each cycle's smallest edge
    start.sort()  # cycles in the order of their smallest edge
    pred = np.empty(n, nxt.dtype)
    pred[nxt] = idx
    chain = nxt.copy()
    chain[pred[start[:-1]]] = start[1:]  # a cycle's last edge leads on to the next cycle's first
    linked = idx != pred[start[-1]]  # the last cycle's last edge ends the path
    del graph, pred
    path = csr_matrix((np.ones(n - 1, np.int8), chain[linked], np.r_[0, np.cumsum(linked)]), shape=(n, n))
    order = depth_first_order(path, int(start[0]), directed=True, return_predecessors=False).astype(nxt.dtype)
    first = np.zeros(n, bool)
    first[start] = True
    return order, np.maximum.accumulate(np.where(first[order], order, -1))  # the last cycle start walked past


def _assemble(x0, y0, d, lab, nxt, n: int, row0: float = 0.0, col0: float = 0.0) -> np.ndarray:
    """Polygons of regions 1..n from their linked edges: label k at k - 1, shell first, then holes."""
    import shapely

    order, rep_s = _walk_order(nxt)
    d_s = d[order]
    first = np.flatnonzero(np.r_[True, rep_s[1:] != rep_s[:-1]])
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
    ring_label = lab[reps]
    ring_order = np.lexsort((area2 < 0, ring_label))  # per label: its shell first, then its holes
    rank = np.empty_like(ring_order)
    rank[ring_order] = np.arange(len(ring_order))
    vert_ring = rank[ring_idx]
    by_ring = np.argsort(vert_ring, kind="stable")  # vertices stay in walking order within a ring
    coords = np.column_stack([x0[keep][by_ring] + col0, y0[keep][by_ring] + row0]).astype(np.float64)
    rings = shapely.linearrings(coords, indices=vert_ring[by_ring])
    labels_sorted = ring_label[ring_order]
    shells = labels_sorted[np.r_[True, labels_sorted[1:] != labels_sorted[:-1]]]
    if not np.array_equal(shells, np.arange(1, n + 1)) or int((area2 > 0).sum()) != n:
        raise ValueError("outlines: labels must be exactly 1..n, each one 4-connected region")
    return shapely.polygons(rings, indices=labels_sorted - 1)


def outline_polygons(lab: np.ndarray, n: int, row0: float = 0.0, col0: float = 0.0) -> np.ndarray:
    """Polygons of regions 1..n of a label image, in pixel coordinates offset by (col0, row0).

    ``lab`` (h, w) integer labels, 0 off; each label must be present and 4-connected (as
    ``scipy.ndimage.label`` gives). Returns an object array of n shapely Polygons, label k at k - 1.
    """
    lab = np.asarray(lab)
    if n == 0:
        return np.zeros(0, dtype=object)
    p = np.pad(lab, 1)
    x0, y0, d, elab = _edges(p, range(0, lab.shape[0] + 1))
    al, ar = _ahead(p, x0, y0, d)
    nxt = _successors(x0, y0, d, elab, al, ar, lab.shape[1])
    return _assemble(x0, y0, d, elab, nxt, n, row0, col0)


class Outliner:
    """Outlines of an image given strip by strip (top to bottom), regions joined across strip borders.

    Each strip comes as region ids unique over the whole image (0 = off) and a class per id; regions
    of one class that touch across a border (4-connected) become one. :meth:`finish` returns the
    polygons of the joined regions and, for every id, the index of the region it became.
    Regions that touch neither border row of their strip are outlined as soon as the strip is added; only the
    boundary edges of regions touching a border wait for :meth:`finish`. Memory: the edges of one strip, those
    of the regions on the borders, two rows per border and the polygons made so far, never a whole image.
    """

    def __init__(self, width: int):
        self.width = width
        self._parts = []  # per strip: x0, y0, d, id, ahead-left id, ahead-right id (-1: on a border, set later)
        self._borders = []  # (vertex row, ids of the row above, ids of the row below)
        self._prev = None  # (row after the last strip, its last row of ids)
        self._done = []  # per strip: (ids of its regions touching no strip border, their polygons)

    def add(self, ids: np.ndarray, row0: int) -> None:
        """Region ids (h, w) of rows [row0, row0 + h); strips must follow each other without gaps."""
        ids = np.asarray(ids)
        h = ids.shape[0]
        if self._prev is not None and self._prev[0] != row0:
            raise ValueError(f"strips must follow each other: expected row {self._prev[0]}, got {row0}")
        p = np.pad(ids, 1)
        top = 0 if self._prev is None else 1  # horizontal edges on a border are made from both sides' rows later
        x0, y0, d, lab = _edges(p, range(top, h))  # the last vertex row: with the next strip, or in finish()
        al, ar = _ahead(p, x0, y0, d)
        # an edge ending on this strip's first or last vertex row may see pixels of the next or previous strip
        y1 = y0 + _DY[d]
        pending = (y1 == h) | ((y1 == 0) & (top == 1))
        al[pending] = -1
        ar[pending] = -1
        y0 += row0
        # regions touching neither border row of the strip are complete: outlined now, their edges let go
        if len(lab):
            base = int(lab.min())
            touching = np.zeros(int(lab.max()) - base + 1, bool)
            for row in (ids[-1], ids[0]) if self._prev is not None else (ids[-1],):
                r = row[(row >= base) & (row - base < len(touching))]
                touching[r - base] = True
            done = ~touching[lab - base]
            if done.any():
                present = np.zeros(len(touching), np.int64)
                present[lab[done] - base] = 1
                rank = np.cumsum(present)  # complete ids numbered 1..k in id order
                e = (x0[done], y0[done], d[done])
                nxt = _successors(*e, lab[done], al[done], ar[done], self.width)
                polys = _assemble(*e, rank[lab[done] - base], nxt, int(rank[-1]))
                self._done.append((np.flatnonzero(present) + base, polys))
                keep = ~done
                x0, y0, d, lab, al, ar = x0[keep], y0[keep], d[keep], lab[keep], al[keep], ar[keep]
        self._parts.append((x0.astype(np.int32), y0, d.astype(np.int8), lab, al, ar))
        if self._prev is not None:
            self._borders.append((row0, self._prev[1], ids[0].copy()))
        self._prev = (row0 + h, ids[-1].copy())

    def finish(self, classes: np.ndarray):
        """(polygons, region of each id): ``classes[i]`` is id i's class (``classes[0]`` unused).

        Polygons are in pixel coordinates of the whole image; region r's polygon is at index r; ids
        that were not seen map to -1.
        """
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        if self._prev is not None:  # the image's last row: a border with nothing below
            self._borders.append((self._prev[0], self._prev[1], np.zeros_like(self._prev[1])))
            self._prev = None
        n_ids = len(classes)
        classes = np.asarray(classes)
        a, b = [], []
        for _, top, bottom in self._borders:  # regions of one class touching across a border are one
            m = (top > 0) & (bottom > 0) & (classes[top] == classes[bottom])
            a.append(top[m]); b.append(bottom[m])
        a = np.concatenate(a) if a else np.zeros(0, np.int64)
        b = np.concatenate(b) if b else np.zeros(0, np.int64)
        _, comp = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(n_ids, n_ids)), directed=False)
        seen = np.zeros(n_ids, bool)
        for part in self._parts:
            seen[part[3]] = True
        for done_ids, _ in self._done:
            seen[done_ids] = True
        # regions numbered 1..m in the order of their smallest id; -1 for ids never seen (and 0, off)
        first_id = np.full(n_ids, n_ids, np.int64)
        np.minimum.at(first_id, comp[seen], np.flatnonzero(seen))
        used = np.flatnonzero(first_id < n_ids)
        region_of_comp = np.full(n_ids, -1, np.int64)
        region_of_comp[used[np.argsort(first_id[used], kind="stable")]] = np.arange(len(used))
        region = np.where(seen, region_of_comp[comp], -1)
        region[0] = -1
        root = np.where(region >= 0, region + 1, 0)  # 1..m for regions, 0 off
        xs, ys, ds, ls, als, ars = (list(t) for t in zip(*self._parts)) if self._parts else ([], [], [], [], [], [])
        ls = [root[v] for v in ls]
        als = [np.where(v < 0, -1, root[np.maximum(v, 0)]) for v in als]
        ars = [np.where(v < 0, -1, root[np.maximum(v, 0)]) for v in ars]
        # the rows either side of each border, in regions, padded: for the border's own horizontal edges and for
        # the pixels ahead of edges ending on it
        rows = {row: np.pad(np.stack([root[top], root[bottom]]), 1) for row, top, bottom in self._borders}
        for row, two in rows.items():
            x0, y0, d, lab = _edges(two, range(1, 2), vertical=False)
            xs.append(x0.astype(np.int32)); ys.append(y0 - 1 + row); ds.append(d.astype(np.int8)); ls.append(lab)
            als.append(np.full(len(x0), -1, np.int64)); ars.append(np.full(len(x0), -1, np.int64))
        x0, y0, d, lab = (np.concatenate(v) for v in (xs, ys, ds, ls))
        al, ar = np.concatenate(als), np.concatenate(ars)
        x0, d = x0.astype(np.int64), d.astype(np.int64)
        todo = al < 0
        if todo.any():  # edges ending on a border row: the pixels ahead are in the rows either side of it
            ends = y0[todo] + _DY[d[todo]]
            t_al, t_ar = np.empty(int(todo.sum()), np.int64), np.empty(int(todo.sum()), np.int64)
            idx = np.flatnonzero(todo)
            for row, two in rows.items():
                k = ends == row
                t_al[k], t_ar[k] = _ahead(two, x0[idx[k]], y0[idx[k]], d[idx[k]], row_offset=row - 1)
            al[idx], ar[idx] = t_al, t_ar
        m = len(used)
        geoms = np.empty(m, dtype=object)
        for done_ids, polys in self._done:  # complete in their strip: each id is a region of its own
            geoms[region[done_ids]] = polys
        self._done = []
        if len(lab):  # the regions that touch a strip border, joined: numbered 1..k for outlining
            nxt = _successors(x0, y0, d, lab, al, ar, self.width)
            present = np.zeros(m + 1, np.int64)
            present[lab] = 1
            rank = np.cumsum(present)
            geoms[np.flatnonzero(present) - 1] = _assemble(x0, y0, d, rank[lab], nxt, int(rank[-1]))
        return geoms, region
