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


def _successors(x0, y0, d, lab, al, ar, width, partial: bool = False):
    """Index of the edge that follows each edge along its region's outline (see the module's rule); with
    ``partial``, -1 where the next edge is not among those given (else that is an error)."""
    turn = np.where(ar == lab, 3, np.where(al == lab, 0, 1))
    nd = (d + turn) % 4
    key = (np.asarray(y0, np.int64) * (width + 1) + x0) * 4 + d
    order = np.argsort(key, kind="stable")
    want = ((y0 + _DY[d]) * (width + 1) + x0 + _DX[d]) * 4 + nd
    del turn, nd
    pos = np.searchsorted(key, want, sorter=order)
    nxt = order[np.minimum(pos, len(order) - 1)]
    nxt = nxt.astype(np.int32) if len(nxt) < 2**31 else nxt
    if partial:
        return np.where(key[nxt] == want, nxt, -1).astype(nxt.dtype)
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


def _rings(x0, y0, d, nxt):
    """The cycles of ``nxt`` as rings of corner vertices, cycle after cycle in the order of their smallest edge:
    (vx, vy, each ring's first vertex, each ring's smallest edge, twice each ring's signed area (> 0: a shell))."""
    if len(nxt) == 0:
        e = np.zeros(0, np.int64)
        return e, e, e, e, np.zeros(0)
    order, rep_s = _walk_order(nxt)
    d_s = d[order]
    first = np.flatnonzero(np.r_[True, rep_s[1:] != rep_s[:-1]])
    last = np.r_[first[1:], len(order)] - 1
    prev_d = np.empty_like(d_s)
    prev_d[1:] = d_s[:-1]
    prev_d[first] = d_s[last]
    corner = d_s != prev_d  # a vertex only where the outline turns
    del d_s, prev_d, first, last
    keep = order[corner]
    ring_of = rep_s[corner]
    del order, rep_s, corner
    start = np.flatnonzero(np.r_[True, ring_of[1:] != ring_of[:-1]]) if len(keep) else np.zeros(0, np.int64)
    reps = ring_of[start]
    del ring_of
    vx, vy = x0[keep].astype(np.int64), y0[keep].astype(np.int64)
    return vx, vy, start, reps, _area2(vx, vy, start)


def _ring_index(start, n_vertices):
    """The ring of each vertex, from the rings' first vertices."""
    idx = np.zeros(n_vertices, np.int64)
    idx[start[1:]] = 1
    return np.cumsum(idx)


def _area2(vx, vy, start):
    """Twice the signed area of each ring (shoelace over its vertices)."""
    nv = np.arange(1, len(vx) + 1)
    nv[np.r_[start[1:], len(vx)] - 1] = start  # each ring's last vertex is followed by its first
    return np.bincount(_ring_index(start, len(vx)), weights=(vx * vy[nv] - vx[nv] * vy).astype(np.float64),
                       minlength=len(start))


def _assemble(x0, y0, d, lab, nxt, n: int, row0: float = 0.0, col0: float = 0.0, holes=None, place=None) -> np.ndarray:
    """Polygons of regions 1..n from their linked edges: label k at k - 1, shell first, then holes; ``holes``
    (vx, vy, first vertex of each, label of each) are rings outlined earlier, added as holes of their labels.
    ``place`` (e.g. a :class:`geodetect.georef.Placement`) moves the flat (n, 2) coordinates in place before the
    polygons are made."""
    import shapely

    vx, vy, start, reps, area2 = _rings(x0, y0, d, nxt)
    parts = [(vx, vy, start)]
    ring_label = lab[reps]
    if holes is not None and len(holes[2]):
        parts.append((holes[0], holes[1], np.asarray(holes[2], np.int64)))
        ring_label = np.r_[ring_label, holes[3]]
        area2 = np.r_[area2, np.full(len(holes[3]), -1.0)]
    ring_order = np.lexsort((area2 < 0, ring_label))  # per label: its shell first, then its holes
    labels_sorted = ring_label[ring_order]
    shells = labels_sorted[np.r_[True, labels_sorted[1:] != labels_sorted[:-1]]]
    if not np.array_equal(shells, np.arange(1, n + 1)) or int((area2 > 0).sum()) != n:
        raise ValueError("outlines: labels must be exactly 1..n, each one 4-connected region")
    # flat coordinates, ring after ring, each closed by its first vertex again, made into polygons in one call: no
    # ring objects beside the polygons (a region with millions of holes was held twice while they were cloned), and
    # each source's vertices put in place a slice at a time (no index array as long as the vertices, nor a joined copy)
    size = np.concatenate([np.diff(np.r_[s, len(x)]) for x, _, s in parts])  # vertices of each ring
    offsets = np.zeros(len(ring_order) + 1, np.int64)
    np.cumsum(size[ring_order] + 1, out=offsets[1:])
    dest = np.empty(len(ring_order), np.int64)
    dest[ring_order] = offsets[:-1]  # each ring's first row in the flat coordinates
    coords = np.empty((int(offsets[-1]), 2), np.float64)
    r0 = 0
    for x, y, s in parts:
        _scatter_rings(coords, x, y, s, dest[r0:r0 + len(s)], col0, row0)
        r0 += len(s)
    del parts, vx, vy, holes, x, y, s  # the loop's names keep the last part (the holes) alive otherwise
    if place is not None:
        place(coords)
    coords[offsets[1:] - 1] = coords[offsets[:-1]]
    firsts = np.searchsorted(labels_sorted, np.arange(1, n + 2))  # each label's first ring (its shell); the end
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords, (offsets, firsts))


#: vertices placed at once by _assemble
_SLICE = 1 << 20


def _scatter_rings(coords, x, y, start, dest, col0: float, row0: float) -> None:
    """Vertex i of ring r (rings from ``start``) to row ``dest[r] + i - start[r]`` of ``coords``, offset by (col0, row0)."""
    shift = dest - start
    for a in range(0, len(x), _SLICE):
        i = np.arange(a, min(a + _SLICE, len(x)))
        pos = shift[np.searchsorted(start, i, "right") - 1]  # each vertex's ring (none empty)
        pos += i
        coords[pos, 0] = x[a:a + len(i)] + col0
        coords[pos, 1] = y[a:a + len(i)] + row0


def outline_polygons(lab: np.ndarray, n: int, row0: float = 0.0, col0: float = 0.0, place=None) -> np.ndarray:
    """Polygons of regions 1..n of a label image, in pixel coordinates offset by (col0, row0).

    ``lab`` (h, w) integer labels, 0 off; each label must be present and 4-connected (as
    ``scipy.ndimage.label`` gives). Returns an object array of n shapely Polygons, label k at k - 1.
    ``place``: called on the flat (n, 2) pixel coordinates, moves them in place before the polygons are made
    (:class:`geodetect.georef.Placement`: polygons made in the map CRS).
    """
    lab = np.asarray(lab)
    if n == 0:
        return np.zeros(0, dtype=object)
    p = np.pad(lab, 1)
    x0, y0, d, elab = _edges(p, range(0, lab.shape[0] + 1))
    al, ar = _ahead(p, x0, y0, d)
    nxt = _successors(x0, y0, d, elab, al, ar, lab.shape[1])
    return _assemble(x0, y0, d, elab, nxt, n, row0, col0, place=place)


class Outliner:
    """Outlines of an image given strip by strip (top to bottom), regions joined across strip borders.

    Each strip comes as region ids (0 = off) numbered on from the previous strip's (the first strip's from 1)
    and the class of each new id; regions of one class that touch across a border (4-connected) become one.
    :meth:`finish` returns the polygons of the joined regions and, for every id, the index of the region it
    became.

    Regions are outlined as soon as nothing below can change them: those touching neither border row of their
    strip when the strip comes, joined ones once none of their ids is on the last row seen. A region still
    reaching the last row has its holes outlined as they close (every edge of the ring above the last row, and
    no turn of it decided by a pixel of another region that may still join it): they wait as corner vertices
    (8 bytes each, not the 30-odd of an edge) for their region's outer outline. Memory: the edges of one strip,
    the outer outlines and unclosed holes of the regions still reaching the last row, the rows of the borders
    those look into, and the polygons made so far, never a whole image.
    """

    def __init__(self, width: int, place=None):
        self.width = width
        self._place = place  # as outline_polygons': polygons made from placed coordinates
        self._next = 1  # the next strip's first id
        self._parts = []  # edges of regions touching a border, not yet outlined: (x0, y0, d, id, al, ar), -1: ahead unknown
        self._pairs = []  # (ids above, ids below) of one class touching across a border, not yet outlined
        self._rows = {}  # vertex row of each border -> (ids of the row above, ids of the row below)
        self._prev = None  # (row after the last strip, its last row of ids, its classes, its first id)
        self._done = []  # (polygons, key of each = its region's smallest id, member ids, their keys)
        self._holes = []  # rings closed while their region was open: (vx, vy, first vertex of each, tag, tags)

    def add(self, ids: np.ndarray, row0: int, classes) -> None:
        """Region ids (h, w) of rows [row0, row0 + h), and ``classes``: the class of each of its ids in order
        (ids ``first .. first + len(classes) - 1``, ``first`` one past the previous strip's); strips follow each
        other without gaps."""
        ids = np.asarray(ids)
        classes = np.asarray(classes)
        h = ids.shape[0]
        first = self._next
        if self._prev is not None and self._prev[0] != row0:
            raise ValueError(f"strips must follow each other: expected row {self._prev[0]}, got {row0}")
        if ids.size and (ids.max(initial=0) >= first + len(classes) or ids[ids > 0].min(initial=first) < first):
            raise ValueError(f"strip ids must be 0 or {first}..{first + len(classes) - 1}")
        self._next = first + len(classes)
        p = np.pad(ids, 1)
        top = 0 if self._prev is None else 1  # horizontal edges on a border are made from both sides' rows
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
            touching = np.zeros(len(classes), bool)
            for row in (ids[-1], ids[0]) if self._prev is not None else (ids[-1],):
                touching[row[row > 0] - first] = True
            done = ~touching[lab - first]
            if done.any():
                present = np.zeros(len(classes), np.int64)
                present[lab[done] - first] = 1
                rank = np.cumsum(present)  # complete ids numbered 1..k in id order
                e = (x0[done], y0[done], d[done])
                nxt = _successors(*e, lab[done], al[done], ar[done], self.width)
                polys = _assemble(*e, rank[lab[done] - first], nxt, int(rank[-1]), place=self._place)
                own = np.flatnonzero(present) + first
                self._done.append((polys, own, own, own))
                keep = ~done
                x0, y0, d, lab, al, ar = x0[keep], y0[keep], d[keep], lab[keep], al[keep], ar[keep]
        self._parts.append((x0.astype(np.int32), y0, d.astype(np.int8), lab, al, ar))
        if self._prev is not None:
            _, above, prev_classes, prev_first = self._prev
            m = (above > 0) & (ids[0] > 0)
            m[m] = prev_classes[above[m] - prev_first] == classes[ids[0][m] - first]
            self._pairs.append((above[m], ids[0][m]))
            self._border(row0, above, ids[0], m)
        self._prev = (row0 + h, ids[-1].copy(), classes, first)
        if top:
            self._resolve(ids[-1])

    def _border(self, row: int, above: np.ndarray, below: np.ndarray, joined: np.ndarray) -> None:
        """Keep a border's two rows, and its horizontal edges as edges of the ids either side: an edge wherever
        the pixels above and below are not one region (``joined``: same class, so one region)."""
        self._rows[row] = (above.copy(), below.copy())
        edge = ~joined
        j_b = np.flatnonzero(edge & (below > 0))  # a region below: an east edge from (j, row)
        j_a = np.flatnonzero(edge & (above > 0))  # a region above: a west edge from (j + 1, row)
        x0 = np.concatenate([j_b, j_a + 1]).astype(np.int32)
        d = np.concatenate([np.zeros(len(j_b), np.int8), np.full(len(j_a), 2, np.int8)])
        lab = np.concatenate([below[j_b], above[j_a]])
        unknown = np.full(len(x0), -1, lab.dtype)
        self._parts.append((x0, np.full(len(x0), row, np.int64), d, lab, unknown, unknown.copy()))

    def _resolve(self, frontier: np.ndarray) -> None:
        """Outline the joined regions none of whose ids is on ``frontier`` (the last row seen); of the others, the
        rings that have closed (holes above the last row) are kept as vertices and their edges let go."""
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        x0, y0, d, lab, al, ar = (np.concatenate(v) for v in zip(*self._parts))
        if not len(lab):
            self._parts = []
            return
        a = np.concatenate([t[0] for t in self._pairs]) if self._pairs else np.zeros(0, lab.dtype)
        b = np.concatenate([t[1] for t in self._pairs]) if self._pairs else np.zeros(0, lab.dtype)
        f = np.unique(frontier[frontier > 0])
        # the ids still waiting: those with edges, those joined to others (an id whose edges all lay on holes
        # outlined earlier has none left) and those on the last row
        u = np.unique(np.concatenate([lab, a, b, f.astype(lab.dtype)]))
        ncomp, comp = connected_components(
            coo_matrix((np.ones(len(a)), (np.searchsorted(u, a), np.searchsorted(u, b))), shape=(len(u), len(u))),
            directed=False)
        open_ = np.zeros(ncomp, bool)
        open_[comp[np.searchsorted(u, f)]] = True
        ready = ~open_[comp]  # per waiting id
        key = np.full(ncomp, np.iinfo(np.int64).max, np.int64)  # a region's key: its smallest id
        np.minimum.at(key, comp, u.astype(np.int64))

        # labels: a joined region = self._next + its component (past every id); any other id stays itself
        def label(v):
            v = np.asarray(v).astype(np.int64)
            i = np.minimum(np.searchsorted(u, v), len(u) - 1)
            return np.where((v > 0) & (u[i] == v), self._next + comp[i], v)

        at = np.searchsorted(u, lab)
        elab = self._next + comp[at]
        eal, ear = label(al), label(ar)  # -1 (not known yet) stays -1
        todo = np.flatnonzero(al < 0)
        if len(todo):  # edges ending on a border row: the pixels ahead are in the rows either side of it
            ends = y0[todo] + _DY[d[todo]]
            for row in np.unique(ends):
                if int(row) not in self._rows:  # the last row seen: what lies below is not known yet
                    continue
                k = todo[ends == row]
                above, below = self._rows[int(row)]
                two = np.pad(np.stack([label(above), label(below)]), 1)
                eal[k], ear[k] = _ahead(two, x0[k], y0[k], d[k], row_offset=int(row) - 1)
        del at
        e = ready[np.searchsorted(u, lab)]
        done_now = np.zeros(len(lab), bool)
        if ready.any():
            done_now |= e
            comps = np.unique(comp[ready])  # regions outlined now, numbered 1..k in component order
            nxt = _successors(x0[e], y0[e], d[e], elab[e], eal[e], ear[e], self.width)
            # the holes' vertices (int32) are let go by _assemble before the polygons are made: not held here
            polys = _assemble(x0[e], y0[e], d[e], np.searchsorted(comps, elab[e] - self._next) + 1, nxt, len(comps),
                              holes=self._take_holes(u, comp, ready, comps), place=self._place)
            del nxt
            self._done.append((polys, key[comps], u[ready], key[comp[ready]]))
            pk = ~ready[np.searchsorted(u, a)]
            self._pairs = [(a[pk], b[pk])]
        # the open regions' rings that have closed: every edge's next one known and final, all of them present
        o = np.flatnonzero(~e & (eal >= 0) & (ear >= 0))
        if len(o):
            def provisional(v):  # a pixel ahead in another region still open: a later join may change the turn
                j = np.clip(v - self._next, 0, ncomp - 1)
                return (v >= self._next) & (v != elab[o]) & open_[j]

            o = o[~provisional(eal[o]) & ~provisional(ear[o])]
        if len(o):
            nxt = _successors(x0[o], y0[o], d[o], elab[o], eal[o], ear[o], self.width, partial=True)
            src = np.flatnonzero(nxt >= 0)
            ncyc, cyc = connected_components(
                coo_matrix((np.ones(len(src), np.int8), (src, nxt[src])), shape=(len(o), len(o))),
                directed=True, connection="weak")
            broken = np.zeros(ncyc, bool)
            broken[cyc[nxt < 0]] = True
            closed = ~broken[cyc]
            if closed.any():
                c = o[closed]
                renum = np.full(len(o), -1, np.int64)
                renum[closed] = np.arange(int(closed.sum()))
                vx, vy, start, reps, _ = _rings(x0[c], y0[c], d[c], renum[nxt[closed]])
                tags = key[comp[np.searchsorted(u, lab[c][reps])]]
                self._holes.append((vx.astype(np.int32), vy.astype(np.int32), start, tags, np.unique(tags)))
                done_now[c] = True
            del nxt, src, cyc, closed
        keep = ~done_now
        # what waits keeps its raw ids ahead (regions are numbered anew each time); -1 where in the rows of a border
        self._parts = [(x0[keep], y0[keep], d[keep], lab[keep], al[keep], ar[keep])]
        waiting = self._parts[0][4] < 0
        needed = set(np.unique(self._parts[0][1][waiting] + _DY[self._parts[0][2][waiting]]).tolist())
        for row in [r for r in self._rows if r not in needed]:  # a border's rows, once no edge looks into them
            del self._rows[row]

    def _take_holes(self, u, comp, ready, comps):
        """The holes outlined earlier of the regions outlined now: (vx, vy, first vertex of each, label 1..k)."""
        out, kept = [], []
        for vx, vy, start, tags, utags in self._holes:
            i = np.minimum(np.searchsorted(u, utags), len(u) - 1)
            if not np.array_equal(u[i], utags):  # every open region keeps an id with edges or joins
                raise AssertionError("outlines: a hole's region was lost")
            if not ready[i].any():
                kept.append((vx, vy, start, tags, utags))
                continue
            ring_ready = ready[np.searchsorted(u, tags)]
            nv = np.diff(np.r_[start, len(vx)])
            v_ready = np.repeat(ring_ready, nv)
            lab = np.searchsorted(comps, comp[np.searchsorted(u, tags[ring_ready])]) + 1
            out.append((vx[v_ready], vy[v_ready], np.r_[0, np.cumsum(nv[ring_ready])[:-1]], lab))
            if not ring_ready.all():
                rest = ~ring_ready
                kept.append((vx[~v_ready], vy[~v_ready], np.r_[0, np.cumsum(nv[rest])[:-1]], tags[rest],
                             np.unique(tags[rest])))
        self._holes = kept
        if not out:
            return None
        offs = np.cumsum([0] + [len(t[0]) for t in out[:-1]])
        return [np.concatenate([t[0] for t in out]), np.concatenate([t[1] for t in out]),
                np.concatenate([t[2] + o for t, o in zip(out, offs)]), np.concatenate([t[3] for t in out])]

    def finish(self, classes=None):
        """(polygons, region of each id): region r's polygon is at index r, regions numbered in the order of
        their smallest id; ids never seen (and 0, off) map to -1. Polygons are in pixel coordinates of the
        whole image, placed by the Outliner's ``place`` if it has one. (``classes`` is not used: the classes
        came with the strips.)"""
        if self._prev is not None:  # the image's last row: a border with nothing below
            last = self._prev[1]
            self._border(self._prev[0], last, np.zeros_like(last), np.zeros(len(last), bool))
            self._prev = None
            self._resolve(np.zeros(0, np.int64))
        if self._holes:
            raise AssertionError("outlines: holes left without their region")
        n_ids = self._next
        done, self._done = self._done, []
        region = np.full(n_ids, -1, np.int64)
        if not done:
            return np.zeros(0, dtype=object), region
        polys = np.concatenate([t[0] for t in done])
        keys = np.concatenate([np.asarray(t[1], np.int64) for t in done])
        order = np.argsort(keys, kind="stable")
        geoms = np.empty(len(polys), dtype=object)
        geoms[:] = polys[order]
        sorted_keys = keys[order]
        for _, _, members, member_keys in done:
            region[np.asarray(members, np.int64)] = np.searchsorted(sorted_keys, np.asarray(member_keys, np.int64))
        return geoms, region
