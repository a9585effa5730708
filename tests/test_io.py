"""Raster input: formats, masks, band mapping, scaling, resampling."""

import numpy as np
import pytest
import rasterio

import geodetect as gd
from detectors import BrightPoints
from geodetect.errors import BandError, ConfigError
from geodetect.io.raster import open_scene, parse_bands, scale_to_float32


def _spots(shape=(200, 200), spots=((50, 50), (150, 120))):
    img = np.full(shape, 20, np.uint8)
    for c, r in spots:
        img[r - 2 : r + 2, c - 2 : c + 2] = 250
    return img


def test_vrt_input(write_raster, tmp_path):
    src = write_raster(_spots())
    vrt = tmp_path / "scene.vrt"
    with rasterio.open(src) as ds:
        from rasterio.vrt import WarpedVRT
        from rasterio.shutil import copy

        with WarpedVRT(ds) as v:
            copy(v, vrt, driver="VRT")
    dets = gd.detect(str(vrt), BrightPoints, progress=False)
    assert len(dets) == 2 and dets.scene_id.iloc[0] == "scene"


def test_nodata_value_and_all_nodata_tiles(write_raster):
    img = _spots((256, 256), ((40, 40), (200, 200)))
    img[:, 128:] = 0  # right half nodata: (200, 200) is under it
    path = write_raster(img, nodata=0)
    dets = gd.detect(path, BrightPoints, progress=False)
    st = dets.attrs["geodetect"][0]
    assert len(dets) == 1
    assert st["tiles_nodata"] > 0 and st["tiles_run"] + st["tiles_nodata"] == st["tiles_total"]
    assert any("nodata" in n for n in st["notes"])


def test_internal_mask_is_honoured(tmp_path):
    from rasterio.transform import from_origin

    img = _spots((256, 256), ((40, 40), (200, 200)))
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=1, dtype="uint8",
                           crs="EPSG:32610", transform=from_origin(500000, 4200000, 1, 1)) as dst:
            dst.write(img, 1)
            mask = np.full((256, 256), 255, np.uint8)
            mask[150:, 150:] = 0
            dst.write_mask(mask)
    dets = gd.detect(str(path), BrightPoints, progress=False)
    assert len(dets) == 1  # the spot under the mask is not reported


def test_band_selection_by_description_and_mapping(write_raster):
    arr = np.stack([np.full((100, 100), 10, np.uint8), _spots((100, 100), ((30, 30),)), np.zeros((100, 100), np.uint8)])
    path = write_raster(arr)
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = ("red", "nir", "green")
    scene = open_scene(path, bands=("nir",))
    assert scene.indexes == (2,)
    scene.close()
    assert open_scene(path, bands=("nir",), band_override={"nir": 3}).indexes == (3,)
    assert len(gd.detect(path, BrightPoints, bands="2", progress=False)) == 1
    assert len(gd.detect(path, BrightPoints, progress=False)) == 0  # band 1 is flat
    with pytest.raises(BandError, match="no band named 'swir'"):
        open_scene(path, bands=("swir",))
    with pytest.raises(BandError, match="has 3 band"):
        open_scene(path, bands=(4,))


def test_parse_bands():
    assert parse_bands("4,3,2") == (4, 3, 2)
    assert parse_bands("nir=1, red=2") == {"nir": 1, "red": 2}
    with pytest.raises(ConfigError):
        parse_bands("nir=1,2")
    with pytest.raises(ConfigError):
        parse_bands("nir=0")


def test_scaling_is_declared_not_guessed():
    a = np.array([0, 255], np.uint8)
    assert scale_to_float32(a, a.dtype, "dtype").tolist() == [0.0, 1.0]
    b = np.array([0, 65535], np.uint16)
    assert scale_to_float32(b, b.dtype, "dtype").tolist() == [0.0, 1.0]
    assert scale_to_float32(b, b.dtype, (0, 4095))[1] == pytest.approx(65535 / 4095)
    f = np.array([0.25, 3.0], np.float32)
    assert scale_to_float32(f, f.dtype, "dtype").tolist() == [0.25, 3.0]
    assert scale_to_float32(a, a.dtype, "none").tolist() == [0.0, 255.0]


def test_scaling_identical_across_tiles(write_raster):
    """A dark tile and a bright tile are scaled the same way (no per-tile stretch)."""
    seen = []

    class Spy(BrightPoints):
        def predict(self, tiles):
            seen.extend(t[..., 0].max() for t in tiles)
            return super().predict(tiles)

    img = np.full((64, 128), 40, np.uint8)
    img[:, 64:] = 200
    gd.detect(write_raster(img), Spy, tile_size=64, overlap=0, progress=False)
    assert sorted(np.round(seen, 4)) == [round(40 / 255, 4), round(200 / 255, 4)]


def test_partial_band_map_does_not_trust_colour_tags(write_raster):
    """Landsat NIR/red/green tagged RGB: with --bands nir=1 given, 'green' must not silently become band 2."""
    path = write_raster(np.zeros((3, 20, 20), np.uint8), photometric="RGB")
    with rasterio.open(path) as ds:
        assert [c.name for c in ds.colorinterp] == ["red", "green", "blue"]
    assert open_scene(path, bands=("green",)).indexes == (2,)  # nothing mapped: the tags are used
    with pytest.raises(BandError, match="no band named 'green'.*--bands green=N"):
        open_scene(path, bands=("nir", "green"), band_override={"nir": 1})
    assert open_scene(path, bands=("nir", "green"), band_override={"nir": 1, "green": 3}).indexes == (1, 3)


def test_web_mercator_pixels_measured_on_the_ground(write_raster):
    """A 30 map-metre EPSG:3857 pixel at 37.8 N is 23.7 m on the ground; a 23.7 m detector keeps the grid."""
    from pyproj import Transformer
    from rasterio.transform import from_origin

    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(-122.3, 37.8)
    path = write_raster(np.zeros((1, 100, 100), np.uint8), crs="EPSG:3857", transform=from_origin(x, y, 30, 30))
    assert not open_scene(path, bands=(1,), gsd_m=23.7).resampled
    s = open_scene(path, bands=(1,), gsd_m=30.0)  # a 30 m detector: 23.7 m pixels are resampled to 30 m
    assert s.resampled and s.width == round(100 * 23.7 / 30)


def _reference_tiles(scene, tiling, ids):
    """Each tile read on its own, as rasterio reads a window (bands first, pixels as stored)."""
    from rasterio.windows import Window

    out = {}
    for i in ids:
        x0, y0, w, h = tiling.tile(i)
        raw = scene.dataset.read(scene.indexes, window=Window(x0, y0, w, h))
        masks = scene.dataset.read_masks(scene.indexes, window=Window(x0, y0, w, h)).max(axis=0) > 0
        out[i] = raw, masks
    return out


@pytest.mark.parametrize("per_strip", [1, 2, None])  # tiles a read at most (None: the default, whole rows here)
@pytest.mark.parametrize("kind", ["uint8 nodata", "float32 NaN", "uint16 no mask"])
def test_tiles_cut_from_strips_equal_tiles_read_alone(write_raster, monkeypatch, per_strip, kind):
    """Neighbouring tiles of a row are read as one strip and cut from it: every tile equals its own window read."""
    import threading

    from geodetect import pipeline
    from geodetect.io.tiling import Tiling

    rng = np.random.default_rng(5)
    shape = (3, 333, 517)  # edge tiles are clipped in both directions
    if kind == "uint8 nodata":
        img = rng.integers(1, 255, shape).astype(np.uint8)
        img[:, 100:180, 200:260] = 0
        path = write_raster(img, nodata=0, tiled=True, blockxsize=64, blockysize=64, compress="deflate")
    elif kind == "float32 NaN":
        img = rng.random(shape, dtype=np.float32)
        img[1, 10:20, 400:420] = np.nan
        path = write_raster(img)
    else:
        img = rng.integers(0, 4000, shape).astype(np.uint16)
        path = write_raster(img, interleave="band")
    if per_strip is not None:  # tiles 100 px wide at a stride of 72, 100 rows, 3 bands
        monkeypatch.setattr(pipeline, "STRIP_BYTES", (72 * (per_strip - 1) + 100) * 100 * 3 * img.dtype.itemsize)
    scene = open_scene(path, bands=(1, 2, 3))
    tiling = Tiling(scene.width, scene.height, 100, 28)
    ids = [i for i in range(len(tiling)) if i % 11 != 5]  # gaps in the rows, as a block's or a resumed run's ids
    want = _reference_tiles(scene, tiling, ids)
    reads = []
    monkeypatch.setattr(scene, "_read_raw", lambda *a, _f=scene._read_raw, **k: reads.append(a) or _f(*a, **k))
    got = list(pipeline._tile_reads(scene, tiling, ids, threading.Event()))
    assert [g[0] for g in got] == ids
    widest = max(w for _, _, w, _ in reads)
    assert widest == {1: 100, 2: 172, None: 517}[per_strip]  # 517: a whole row of the scene in one read
    for i, raw, valid in got:
        ref_raw, ref_valid = want[i]
        assert raw.shape == ref_raw.shape and raw.dtype == ref_raw.dtype
        np.testing.assert_array_equal(raw, ref_raw)  # NaN equal NaN
        if kind == "float32 NaN":
            ref_valid = ref_valid & np.all(np.isfinite(ref_raw), axis=0)
        if valid is None:
            assert ref_valid.all()
        else:
            np.testing.assert_array_equal(valid, ref_valid)
        data, mask = scene._to_float(raw, valid, pad_to=100)
        alone, alone_mask = scene.read(*tiling.tile(i), pad_to=100)
        np.testing.assert_array_equal(data, alone)
        np.testing.assert_array_equal(mask, alone_mask)
    scene.close()


def test_strip_reads_and_decode_threads_change_no_detection(write_raster, monkeypatch):
    """Tiles read one window at a time in one decoding thread (a user's GDAL_NUM_THREADS=1) give the same detections
    as strips of tiles whose blocks GDAL decodes in parallel (the default)."""
    from geodetect import pipeline

    rng = np.random.default_rng(8)
    spots = [tuple(int(v) for v in rng.integers(10, 890, 2)) for _ in range(80)]
    img = np.stack([_spots((900, 900), spots)] * 3) + rng.integers(0, 20, (3, 900, 900)).astype(np.uint8)
    path = write_raster(img, tiled=True, blockxsize=128, blockysize=128, compress="deflate")
    monkeypatch.delenv("GDAL_NUM_THREADS", raising=False)
    assert pipeline._decode_threads()["GDAL_NUM_THREADS"] in {"1", "2", "3", "4"}
    strips = gd.detect(path, BrightPoints, tile_size=256, overlap=32, progress=False)
    monkeypatch.setattr(pipeline, "STRIP_BYTES", 1)
    monkeypatch.setenv("GDAL_NUM_THREADS", "1")
    assert pipeline._decode_threads() == {}  # the user's setting is left to GDAL
    alone = gd.detect(path, BrightPoints, tile_size=256, overlap=32, progress=False)
    assert len(strips) > 60
    assert strips.geometry.equals(alone.geometry) and np.array_equal(strips.score.to_numpy(), alone.score.to_numpy())
