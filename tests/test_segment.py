"""gd.segment and `geodetect detect -o x.tif`: the class map of a segmentation detector as a GeoTIFF."""

import os

import numpy as np
import pytest
import rasterio
from rasterio.features import rasterize
from rasterio.transform import from_origin

import geodetect as gd
from detectors import BrightMask, BrightPoints
from geodetect.cli import main
from geodetect.errors import ConfigError, PluginError
from geodetect.plugins import Detector, DetectorSpec, Mask, Task
from geodetect.stitch import MaskMosaic


class Thirds(Detector):
    """Three classes by the value of band 1 (dark, mid, bright), probabilities 0.8 / 0.1 / 0.1; threshold 0.5."""

    spec = DetectorSpec(name="test-thirds", version="0.0.1", task=Task.SEGMENTATION, classes=("dark", "mid", "bright"),
                        bands=(1,), tile_size=64, overlap=16, threshold=0.5)

    def predict(self, tiles):
        out = []
        for t in tiles:
            k = np.clip((t[..., 0] * 3).astype(int), 0, 2)
            p = np.full(t.shape[:2] + (3,), 0.1, np.float32)
            np.put_along_axis(p, k[..., None], 0.8, axis=2)
            p[t[..., 0] > 0.95] = 0.3  # no class reaches the threshold: 0 in the map
            out.append(Mask(p))
        return out


class Broken(BrightMask):
    spec = DetectorSpec(**{**BrightMask.spec.__dict__, "name": "test-broken-mask"})

    def predict(self, tiles):
        raise RuntimeError("boom")


def _scene(path, w=333, h=300, nodata_box=True, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (h, w)).astype(np.uint8)
    a[a == 7] = 8
    if nodata_box:
        a[:40, :50] = 7
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32633",
                       transform=from_origin(400000, 5000000, 2, 2), nodata=7) as d:
        d.write(a, 1)
    return str(path), a


def _read(path):
    with rasterio.open(path) as d:
        return d.read(1), d.profile, d.tags(1)


def test_class_map_is_the_thresholded_pixels_with_nodata(tmp_path):
    path, a = _scene(tmp_path / "s.tif")
    res = gd.segment(path, BrightMask, tmp_path / "out.tif", progress=False)
    m, prof, tags = _read(tmp_path / "out.tif")
    exp = np.where(a == 7, 255, (a / 255 > 0.5).astype(np.uint8))
    assert m.shape == a.shape and (m == exp).all()
    assert prof["crs"] == "EPSG:32633" and prof["transform"] == from_origin(400000, 5000000, 2, 2)
    assert prof["nodata"] == 255 and prof["compress"] == "deflate" and prof["tiled"]
    assert tags["CLASS_1"] == "bright" and tags["CLASS_0"] == "none"
    assert res["pixels"] == {"none": int((exp == 0).sum()), "bright": int((exp == 1).sum()), "nodata": 2000}
    assert res["grid"] == (333, 300) and res["pixel_size"] == (2.0, 2.0) and res["stats"]["tiles_run"] > 0


def test_a_scene_smaller_than_a_block(tmp_path):
    path, a = _scene(tmp_path / "s.tif", w=100, h=70, nodata_box=False)
    gd.segment(path, BrightMask, tmp_path / "out.tif", progress=False)
    m, prof, _ = _read(tmp_path / "out.tif")
    assert not prof.get("tiled") and (m == (a / 255 > 0.5)).all()


def test_three_classes_numbered_from_one_and_below_threshold_is_zero(tmp_path):
    path, a = _scene(tmp_path / "s.tif", nodata_box=False)
    res = gd.segment(path, Thirds, tmp_path / "out.tif", progress=False)
    m, _, tags = _read(tmp_path / "out.tif")
    v = a.astype(np.float32) / 255
    exp = np.clip((v * 3).astype(int), 0, 2) + 1
    exp[v > 0.95] = 0
    assert (m == exp).all()
    assert [tags[f"CLASS_{k}"] for k in (1, 2, 3)] == ["dark", "mid", "bright"]
    assert res["pixels"]["mid"] == int((exp == 2).sum()) and res["pixels"]["none"] == int((exp == 0).sum())
    with rasterio.open(tmp_path / "out.tif") as d:
        cmap = d.colormap(1)
    assert cmap[0][:3] == (0, 0, 0) and len({cmap[k][:3] for k in (1, 2, 3)}) == 3  # a colour for each class


def test_the_map_and_the_polygons_of_detect_agree(tmp_path):
    path, a = _scene(tmp_path / "s.tif")
    gd.segment(path, BrightMask, tmp_path / "out.tif", progress=False)
    m, prof, _ = _read(tmp_path / "out.tif")
    dets = gd.detect(path, BrightMask, crs_out="EPSG:32633", progress=False)
    burnt = rasterize(dets.geometry, out_shape=m.shape, transform=prof["transform"], fill=0, default_value=1,
                      dtype="uint8")
    assert (burnt == (m == 1)).all()


def test_on_disk_blend_and_many_windows_give_the_same_map(tmp_path, monkeypatch):
    path, a = _scene(tmp_path / "s.tif", w=700, h=555, seed=3)
    gd.segment(path, Thirds, tmp_path / "mem.tif", progress=False)
    monkeypatch.setattr(MaskMosaic, "MEMORY_BUDGET", 1000)  # the scratch GeoTIFF accumulator
    monkeypatch.setattr(MaskMosaic, "STRIP_PIXELS", 256 * 256)  # windows of one block: edges cut at 700 and 555
    gd.segment(path, Thirds, tmp_path / "disk.tif", progress=False)
    assert (_read(tmp_path / "mem.tif")[0] == _read(tmp_path / "disk.tif")[0]).all()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary left beside the outputs


def test_resampled_scene_map_is_on_the_detector_grid(tmp_path):
    path, _ = _scene(tmp_path / "s.tif", nodata_box=False)

    class Coarse(BrightMask):
        spec = DetectorSpec(**{**BrightMask.spec.__dict__, "name": "test-coarse-mask", "gsd_m": 4.0})

    res = gd.segment(path, Coarse, tmp_path / "out.tif", progress=False)
    _, prof, _ = _read(tmp_path / "out.tif")
    assert (prof["width"], prof["height"]) == res["grid"] == (167, 150)
    assert prof["transform"].a == pytest.approx(333 * 2 / 167) and prof["transform"].c == 400000
    assert any("resampled" in n for n in res["stats"]["notes"])


def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    path, _ = _scene(tmp_path / "s.tif")
    with pytest.raises(ConfigError, match="segmentation detectors only"):
        gd.segment(path, BrightPoints, tmp_path / "a.tif", progress=False)
    with pytest.raises(ConfigError, match=r"\.tif"):
        gd.segment(path, BrightMask, tmp_path / "a.parquet", progress=False)
    with pytest.raises(ConfigError, match="one class raster per scene"):
        gd.segment([path, path], BrightMask, tmp_path / "a.tif", progress=False)
    (tmp_path / "keep.tif").write_bytes(b"old")
    with pytest.raises(PluginError, match="boom"):
        gd.segment(path, Broken, tmp_path / "keep.tif", progress=False)
    assert (tmp_path / "keep.tif").read_bytes() == b"old"  # a failed run leaves the old file as it was
    assert sorted(os.listdir(tmp_path)) == ["keep.tif", "s.tif"]


def test_cli_writes_the_class_raster(tmp_path, capsys):
    path, a = _scene(tmp_path / "s.tif")
    gd.register_detector(BrightMask, replace=True)
    out = tmp_path / "water.tif"
    assert main(["detect", path, "-d", "test-bright-mask", "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "wrote the class raster" in err and "bright" in err and "nodata 2,000 px" in err
    assert (_read(out)[0] == np.where(a == 7, 255, (a / 255 > 0.5).astype(np.uint8))).all()
    gd.register_detector(BrightPoints, replace=True)
    for argv, msg in (
        (["detect", path, path, "-d", "test-bright-mask", "-o", str(tmp_path / "b.tif")], "holds one scene"),
        (["detect", path, "-d", "test-bright-mask", "-o", str(tmp_path / "b.tif"), "--crs-out", "EPSG:3857"],
         "--crs-out does not apply"),
        (["detect", path, "-d", "test-bright-points", "-o", str(tmp_path / "b.tif")], "segmentation detectors only"),
    ):
        assert main(argv) != 0
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b.tif").exists()
