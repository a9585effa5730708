"""Streaming: a 20,000 x 20,000 scene is processed with memory far below its size."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

SCRIPT = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, {tests!r})
    import numpy as np, geodetect as gd
    from detectors import BrightPoints

    class Big(BrightPoints):  # reads all three bands, as the README's 1.2 GB claim says
        spec = BrightPoints.spec.__class__(**{{**BrightPoints.spec.__dict__, "name": "big-points",
                                              "bands": (1, 2, 3), "tile_size": 1024, "overlap": 32}})
        seen_bands = set()

        def predict(self, tiles):
            Big.seen_bands.add(tiles.shape[-1])
            return super().predict(tiles)

    gd.detect({small!r}, Big, progress=False)              # warm up: imports, caches, first tiles
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    dets = gd.detect({big!r}, Big, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({{"before_kb": before, "after_kb": after, "n": len(dets), "bands": sorted(Big.seen_bands),
                      "stats": dets.attrs["geodetect"][0]}}))
    """
)


def _sparse_scene(path, size, spots, nodata=None):
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs="EPSG:32633",
                   transform=from_origin(400000, 5000000, 0.5, 0.5), tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", SPARSE_OK=True)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        for c, r in spots:
            block = np.full((3, 16, 16), 10, np.uint8)
            block[:, 6:10, 6:10] = 255
            dst.write(block, window=Window(c - 8, r - 8, 16, 16))


def _peak_growth_mb(tmp_path, size, spots):
    scene, small = tmp_path / f"scene{size}.tif", tmp_path / "small.tif"
    _sparse_scene(scene, size, spots)
    _sparse_scene(small, 2048, [(500, 500)])
    code = SCRIPT.format(tests=str(Path(__file__).parent), small=str(small), big=str(scene))
    # large arrays straight from mmap and back to the OS on free: peak RSS then measures what is
    # held at once, not where glibc's dynamic threshold happens to stand (that made this flaky)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900, env=env)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["bands"] == [3]  # every tile carried the three bands of the scene
    assert res["stats"]["tiles_run"] == res["stats"]["tiles_total"]
    assert res["n"] == len(set(spots))  # every spot found once
    return (res["after_kb"] - res["before_kb"]) / 1024, scene.stat().st_size


@pytest.mark.slow
def test_20k_scene_streams_with_bounded_memory(tmp_path):
    """Memory is bounded by the tile batches in flight, never by the scene.

    The reader runs ahead of the model by at most two batches (the prefetch queue), builds the
    next one (its tiles and their stacked copy) while the model works on one: at most five
    batches of 8 x 1024 x 1024 x 3 float32 (100 MB each) are alive at once, plus GDAL's block
    cache (64 MB). That bound does not depend on the scene's size: an 8,000^2 scene and a
    20,000^2 one (6x the pixels, 1.2 GB of three-band pixels) both stay under it.
    """
    rng = np.random.default_rng(0)
    big_spots = [(int(c), int(r)) for c, r in rng.integers(100, 19_900, (40, 2))]
    small_spots = [(int(c), int(r)) for c, r in rng.integers(100, 7_900, (10, 2))]
    grew_small, _ = _peak_growth_mb(tmp_path, 8_000, small_spots)
    grew_big, disk = _peak_growth_mb(tmp_path, 20_000, big_spots)
    assert disk < 20e6  # sparse on disk; 1.2 GB of pixels (three bands) when read
    scene_mb = 20_000 * 20_000 * 3 / 1e6
    batch_mb = 8 * 1024 * 1024 * 3 * 4 / 2**20
    bound = 5 * batch_mb + 64 + 60  # batches in flight + GDAL cache + interpreter/GDAL slack
    print(f"peak RSS growth: 8,000^2 scene {grew_small:.0f} MB, 20,000^2 scene {grew_big:.0f} MB "
          f"({scene_mb:.0f} MB of pixels; bound from the batch size {bound:.0f} MB)")
    assert grew_small < bound and grew_big < bound  # the same bound, whatever the scene's size
    assert grew_big < 0.5 * scene_mb  # far below the scene's size
