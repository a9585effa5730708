"""A detector refuses scenes whose GSD is far outside what it was trained for; a one-band image can
be given as its band repeated."""

import numpy as np
import pytest
from rasterio.transform import from_origin

import geodetect as gd
from geodetect.errors import GeodetectError
from geodetect.errors import PluginError
from geodetect.plugins import Detector, DetectorSpec, Points, Task


class _Ranged(Detector):
    spec = DetectorSpec(name="test-gsd-ranged", version="0", task=Task.POINTS, classes=("x",), bands=(1, 2, 3),
                        tile_size=32, overlap=8, gsd_m=0.5, gsd_range=(0.25, 1.0))

    def predict(self, tiles):
        # one point per tile centre whose three channels are equal (a repeated band)
        out = []
        for t in tiles:
            same = np.allclose(t[..., 0], t[..., 1]) and np.allclose(t[..., 1], t[..., 2])
            out.append(Points(np.array([[16.0, 16.0]]), np.zeros(1, int), np.ones(1)) if same else Points.empty())
        return out


@pytest.mark.parametrize("gsd, ok", [(0.5, True), (0.25, True), (1.0, True), (0.1, False), (4.0, False)])
def test_scene_gsd_outside_range_is_refused(write_raster, gsd, ok):
    arr = np.full((3, 64, 64), 100, np.uint8)
    path = write_raster(arr, transform=from_origin(500000, 4200000, gsd, gsd))
    if ok:
        dets = gd.detect(path, detector=_Ranged(), progress=False)
        assert len(dets) > 0
    else:
        with pytest.raises(GeodetectError, match=r"outside the 0\.25-1 m test-gsd-ranged was trained for"):
            gd.detect(path, detector=_Ranged(), progress=False, on_error="raise")


def test_gsd_range_is_validated():
    with pytest.raises(PluginError, match="gsd_range"):
        DetectorSpec(name="bad", version="0", task=Task.POINTS, classes=("x",), bands=(1,), gsd_range=(2.0, 1.0))
    with pytest.raises(PluginError, match="gsd_range"):
        DetectorSpec(name="bad", version="0", task=Task.POINTS, classes=("x",), bands=(1,), gsd_range=(0, 1.0))


def test_panchromatic_band_repeated(write_raster):
    path = write_raster(np.full((1, 64, 64), 90, np.uint8), transform=from_origin(500000, 4200000, 0.5, 0.5))
    with pytest.raises(GeodetectError, match=r"--bands 1,1,1"):
        gd.detect(path, detector=_Ranged(), progress=False, on_error="raise")
    dets = gd.detect(path, detector=_Ranged(), bands="1,1,1", progress=False)
    # every tile saw three equal channels: one point per tile run
    assert len(dets) == dets.attrs["geodetect"][0]["tiles_run"] > 0
