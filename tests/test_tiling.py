import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from geodetect.io.tiling import Tiling, axis_owned, axis_starts


@settings(max_examples=200, deadline=None)
@given(length=st.integers(1, 5000), size=st.integers(2, 600), data=st.data())
def test_tiles_cover_axis_and_stay_inside(length, size, data):
    overlap = data.draw(st.integers(0, size - 1))
    starts = axis_starts(length, size, overlap)
    ends = np.minimum(starts + size, length)
    assert starts[0] == 0
    assert ends[-1] == length  # no strip left unread at the right/bottom edge
    assert np.all(starts >= 0) and np.all(starts + min(size, length) <= length)  # no tile outside the image
    assert np.all(np.diff(starts) > 0)
    assert np.all(np.diff(starts) <= size - overlap)  # neighbours overlap by at least `overlap`
    lo, hi = axis_owned(starts, length, size)
    assert lo[0] == 0 and hi[-1] == length
    assert np.all(lo[1:] == hi[:-1])  # owned intervals partition the axis
    assert np.all(lo >= starts) and np.all(hi <= ends)  # a tile only owns pixels it has read
    assert np.all(hi > lo)


def test_edge_tile_shifted_back_inside():
    # thesis edge handling: the last window ends on the edge instead of running outside
    assert axis_starts(1000, 128, 0).tolist()[-1] == 1000 - 128
    assert axis_starts(1000, 128, 0).tolist()[:3] == [0, 128, 256]


def test_tiling_owned_regions_partition_grid():
    t = Tiling(300, 170, 64, 16)
    cover = np.zeros((170, 300), int)
    for i in range(len(t)):
        cl, rl, ch, rh = t.owned(i)
        cover[rl:rh, cl:ch] += 1
        x0, y0, w, h = t.tile(i)
        assert x0 + w <= 300 and y0 + h <= 170
        assert x0 <= cl and ch <= x0 + w and y0 <= rl and rh <= y0 + h
    assert np.all(cover == 1)
    ids = np.arange(len(t))
    assert (t.owned_arrays(ids) == np.array([t.owned(i) for i in ids])).all()
