"""Tiny test detectors, one per task, exact on synthetic bright shapes."""

from __future__ import annotations

import numpy as np

from geodetect.plugins import Boxes, Detector, DetectorSpec, Labels, Mask, Points, Task


class BrightPoints(Detector):
    """Test detector: the centroid of each bright blob (band 1 > 0.5), exact to sub-pixel."""

    spec = DetectorSpec(name="test-bright-points", version="0.0.1", task=Task.POINTS, classes=("spot",),
                        bands=(1,), tile_size=64, overlap=16, merge_radius_px=3.0)

    def predict(self, tiles):
        from scipy import ndimage

        out = []
        for t in tiles:
            lab, n = ndimage.label(t[..., 0] > 0.5)
            if n == 0:
                out.append(Points.empty())
                continue
            rc = np.array(ndimage.center_of_mass(t[..., 0], lab, range(1, n + 1))).reshape(-1, 2)
            out.append(Points(rc[:, ::-1] + 0.5, np.zeros(n, int), np.ones(n)))
        return out


class BrightBoxes(Detector):
    """Test detector: the bounding box of each bright blob."""

    spec = DetectorSpec(name="test-bright-boxes", version="0.0.1", task=Task.BOXES, classes=("thing",),
                        bands=(1,), tile_size=64, overlap=16)

    def predict(self, tiles):
        from scipy import ndimage

        out = []
        for t in tiles:
            lab, n = ndimage.label(t[..., 0] > 0.5)
            sl = ndimage.find_objects(lab)
            b = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in sl], float).reshape(-1, 4)
            out.append(Boxes(b, np.zeros(len(b), int), np.ones(len(b))))
        return out


class BrightMask(Detector):
    """Test detector: band 1 thresholded as a one-class probability mask."""

    spec = DetectorSpec(name="test-bright-mask", version="0.0.1", task=Task.SEGMENTATION, classes=("bright",),
                        bands=(1,), tile_size=64, overlap=16)

    def predict(self, tiles):
        return [Mask((t[..., :1] > 0.5).astype(np.float32)) for t in tiles]


class MeanLabel(Detector):
    """Test detector: 'bright' when the tile mean of band 1 > 0.5, else 'dark'."""

    spec = DetectorSpec(name="test-mean-label", version="0.0.1", task=Task.CLASSIFICATION,
                        classes=("dark", "bright"), bands=(1,), tile_size=64, overlap=0)

    def predict(self, tiles):
        m = tiles[..., 0].mean(axis=(1, 2))
        return [Labels(np.array([1 - (v > 0.5), float(v > 0.5)])) for v in m]


class FlakyPoints(BrightPoints):
    """BrightPoints whose first two predict calls fail, mid-task (for Spark retry tests).

    Failures are remembered as files in $GEODETECT_FLAKY_DIR, so retried tasks
    succeed. Without that variable it never fails.
    """

    spec = DetectorSpec(name="test-flaky-points", version="0.0.1", task=Task.POINTS, classes=("spot",),
                        bands=(1,), tile_size=64, overlap=16, merge_radius_px=3.0)

    def predict(self, tiles):
        import os

        d = os.environ.get("GEODETECT_FLAKY_DIR")
        out = super().predict(tiles)  # compute first: the failure comes mid-way through the task
        if d:
            for k in range(2):  # the first two predict calls anywhere fail; every later one succeeds
                try:
                    fd = os.open(os.path.join(d, f"failure-{k}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                os.close(fd)
                raise RuntimeError("simulated executor failure")
        return out


def spots(write_raster, name, shape, n, seed, half=2):
    """A dark scene with ``n`` bright squares of side ``2 * half`` at random places (seeded): for the
    point and box test detectors above. ``write_raster`` is the conftest fixture."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 20, np.uint8)
    pts = rng.integers(8, np.array(shape[::-1]) - 8, (n, 2))
    for c, r in pts:
        img[r - half : r + half, c - half : c + half] = 250
    return write_raster(img, name=name)
