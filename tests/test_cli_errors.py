"""Bad inputs through the real ``geodetect`` CLI, run as a subprocess.

Every bad input must end with exit code 2 and exactly one stderr line
``error: ...`` that names the offending file (or detector / option), no
traceback, and no output file (nor temporary file) left behind.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

DETECTOR = "sea-lion-counter"  # 3 bands (1, 2, 3), 0.1 m GSD, tiles 256/64
CLI = [sys.executable, "-m", "geodetect.cli"]
UTM10N = "EPSG:32610"


# --------------------------------------------------------------------------- helpers


def _write_tif(path: Path, arr, *, crs=UTM10N, transform="default", nodata=None, **extra) -> Path:
    """Write (bands, rows, cols) as a GeoTIFF at 0.1 m/pixel (the detector's GSD)."""
    import rasterio
    import rasterio.errors
    from rasterio.transform import from_origin

    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    profile = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0], dtype=arr.dtype)
    if transform == "default":
        transform = from_origin(500000.0, 4200000.0, 0.1, 0.1)
    if transform is not None:
        profile["transform"] = transform
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    profile.update(extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
    return path


def _noise(bands=3, size=64, seed=0):
    return np.random.default_rng(seed).integers(1, 255, (bands, size, size), dtype=np.uint8)


def _run(args, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("PYTHONWARNINGS", None)
    return subprocess.run(
        CLI + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.fixture
def outdir(tmp_path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def _detect(scenes, out: Path, *extra, cwd: Path) -> subprocess.CompletedProcess:
    scenes = scenes if isinstance(scenes, (list, tuple)) else [scenes]
    return _run(["detect", *scenes, "--detector", DETECTOR, "--out", out, "--no-progress", *extra], cwd)


def _assert_clean_error(proc: subprocess.CompletedProcess, must_name: str, out: Path) -> str:
    """Exit 2, one ``error:`` line naming ``must_name``, no traceback, no output, no temp files."""
    ctx = f"\nexit={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert proc.returncode == 2, ctx
    assert "Traceback" not in proc.stderr, ctx
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line{ctx}"
    line = lines[0]
    assert line.startswith("error: "), ctx
    assert must_name in line, f"error line does not name {must_name!r}{ctx}"
    assert not out.exists(), f"output file {out} was written{ctx}"
    leftovers = sorted(p.name for p in out.parent.iterdir())
    assert leftovers == [], f"files left in the output folder: {leftovers}{ctx}"
    return line


# --------------------------------------------------------------------------- bad scenes


def _missing(d: Path) -> Path:
    return d / "does_not_exist.tif"


def _zero_bytes(d: Path) -> Path:
    p = d / "empty.tif"
    p.write_bytes(b"")
    return p


def _truncated_header(d: Path) -> Path:
    """A GeoTIFF cut inside its header / first IFD: opening must fail."""
    import rasterio

    good = _write_tif(d / "whole.tif", _noise())
    data = good.read_bytes()
    p = d / "cut_header.tif"
    p.write_bytes(data[:100])
    good.unlink()
    with pytest.raises(Exception):  # precondition: GDAL cannot open it
        rasterio.open(p).close()
    return p


def _truncated_cog(d: Path) -> Path:
    """A COG cut in half: the header is intact (opens), pixel blocks are missing (reads fail)."""
    import rasterio
    import rasterio.shutil

    src = _write_tif(d / "src.tif", _noise(size=512, seed=1))
    cog = d / "whole_cog.tif"
    rasterio.shutil.copy(src, cog, driver="COG")
    data = cog.read_bytes()
    p = d / "cut_cog.tif"
    p.write_bytes(data[: len(data) // 2])
    src.unlink()
    cog.unlink()
    with rasterio.open(p) as ds:  # precondition: opening works ...
        assert ds.count == 3 and ds.width == 512
        with pytest.raises(Exception):  # ... but reading every pixel does not
            ds.read()
    return p


def _text_file(d: Path) -> Path:
    p = d / "notes.tif"
    p.write_text("this is a text file, not a GeoTIFF\n" * 20)
    return p


def _no_crs(d: Path) -> Path:
    return _write_tif(d / "no_crs.tif", _noise(), crs=None)


def _no_georef(d: Path) -> Path:
    return _write_tif(d / "no_georef.tif", _noise(), crs=None, transform=None)


def _one_band(d: Path) -> Path:
    return _write_tif(d / "one_band.tif", _noise(bands=1))


BAD_SCENES = {
    "missing file": _missing,
    "zero-byte tif": _zero_bytes,
    "truncated inside header": _truncated_header,
    "truncated COG (reads fail)": _truncated_cog,
    "text file named .tif": _text_file,
    "no CRS": _no_crs,
    "no geotransform and no CRS": _no_georef,
    "fewer bands than the detector needs": _one_band,
}


@pytest.mark.parametrize("make", list(BAD_SCENES.values()), ids=list(BAD_SCENES))
def test_bad_scene(tmp_path, outdir, make):
    indir = tmp_path / "in"
    indir.mkdir()
    scene = make(indir)
    out = outdir / "out.parquet"
    proc = _detect(scene, out, cwd=tmp_path)
    _assert_clean_error(proc, str(scene), out)


def test_no_crs_message_suggests_crs_option(tmp_path, outdir):
    scene = _no_crs(tmp_path)
    out = outdir / "out.parquet"
    line = _assert_clean_error(_detect(scene, out, cwd=tmp_path), str(scene), out)
    assert "--crs" in line


def test_fewer_bands_message_names_the_files_bands_and_the_option(tmp_path, outdir):
    scene = _one_band(tmp_path)
    out = outdir / "out.parquet"
    line = _assert_clean_error(_detect(scene, out, cwd=tmp_path), str(scene), out)
    assert "needs band 2 but the file has 1 band(s) (1=gray)" in line, line  # what it needs, what the file has
    assert "--bands 1,1,1" in line, line  # and the option that fixes it


def test_bad_scene_among_good_ones_goes_on_with_exit_3(tmp_path, outdir):
    """A good scene and a broken one: the good one is written, the bad one reported, exit code 3."""
    good = _write_tif(tmp_path / "good.tif", _noise())
    bad = _zero_bytes(tmp_path)
    out = outdir / "out.parquet"
    proc = _detect([good, bad], out, cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert "Traceback" not in proc.stderr
    assert out.exists()


def test_fail_fast_stops_at_the_bad_scene_and_writes_nothing(tmp_path, outdir):
    good = _write_tif(tmp_path / "good.tif", _noise())
    bad = _zero_bytes(tmp_path)
    out = outdir / "out.parquet"
    _assert_clean_error(_detect([good, bad], out, "--fail-fast", cwd=tmp_path), str(bad), out)


# --------------------------------------------------------------------------- bad options


def test_unknown_detector(tmp_path, outdir):
    scene = _write_tif(tmp_path / "good.tif", _noise())
    out = outdir / "out.parquet"
    proc = _run(["detect", scene, "--detector", "no-such-detector", "--out", out, "--no-progress"], tmp_path)
    line = _assert_clean_error(proc, "no-such-detector", out)
    assert DETECTOR in line, "the error should list the known detectors"


def test_wrong_band_count(tmp_path, outdir):
    scene = _write_tif(tmp_path / "good.tif", _noise())
    out = outdir / "out.parquet"
    line = _assert_clean_error(_detect(scene, out, "--bands", "1,2", cwd=tmp_path), str(scene), out)
    assert "--bands gives 2 band(s) but sea-lion-counter needs 3 (1, 2, 3)" in line, line
    assert "the file's bands: 1=red, 2=green, 3=blue" in line, line


def test_bad_tiling(tmp_path, outdir):
    scene = _write_tif(tmp_path / "good.tif", _noise())
    out = outdir / "out.parquet"
    proc = _detect(scene, out, "--tile-size", "32", "--overlap", "64", cwd=tmp_path)
    line = _assert_clean_error(proc, "error: ", out)
    assert "overlap" in line.lower()
    assert re.search(r"\b32\b", line) and re.search(r"\b64\b", line), line


def test_unknown_output_extension(tmp_path, outdir):
    """A bad --out is a bad input like the others: one error line, and it should be
    caught before any scene is processed (not after a possibly long run)."""
    scene = _write_tif(tmp_path / "good.tif", _noise())
    out = outdir / "out.xyz"
    _assert_clean_error(_detect(scene, out, cwd=tmp_path), str(out), out)


# --------------------------------------------------------------------------- not errors


def _read(out: Path):
    import geopandas as gpd

    return gpd.read_parquet(out)


SCHEMA = ("detector", "detector_version", "scene_id", "class_name", "score", "geometry", "area_m2")


def test_all_nodata_scene_is_not_an_error(tmp_path, outdir):
    scene = _write_tif(tmp_path / "blank.tif", np.zeros((3, 300, 300), np.uint8), nodata=0)
    out = outdir / "out.parquet"
    proc = _detect(scene, out, cwd=tmp_path)
    ctx = f"\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert proc.returncode == 0, ctx
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, ctx
    assert out.exists(), ctx
    dets = _read(out)
    assert len(dets) == 0
    assert set(SCHEMA) <= set(dets.columns)
    assert dets.crs is not None and dets.crs.to_epsg() == 4326
    notes = [ln for ln in proc.stderr.splitlines() if re.search(r"\ball\b.*tiles.*nodata", ln, re.I)]
    assert notes, f"no 'all tiles were nodata' note on stderr{ctx}"
    assert sorted(p.name for p in outdir.iterdir()) == ["out.parquet"], "temp files left behind"


def test_no_crs_succeeds_with_crs_option(tmp_path, outdir):
    """A scene without CRS placed with --crs: detections land inside its footprint."""
    import rasterio
    from pyproj import Transformer

    from geodetect.simulate import make_scene

    sim = make_scene(tmp_path / "sim.tif", crs=UTM10N, center=(-123.0, 37.9), size=(256, 256), n_objects=6,
                     seed=3, surf=False)
    with rasterio.open(sim.path) as src:
        arr, transform = src.read(), src.transform
    scene = _write_tif(tmp_path / "sim_no_crs.tif", arr, crs=None, transform=transform)
    with rasterio.open(scene) as ds:
        assert ds.crs is None and not ds.transform.is_identity  # precondition

    out = outdir / "out.parquet"
    proc = _detect(scene, out, "--crs", UTM10N, cwd=tmp_path)
    ctx = f"\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert proc.returncode == 0, ctx
    assert "Traceback" not in proc.stderr and "error:" not in proc.stderr, ctx
    dets = _read(out)
    assert dets.crs.to_epsg() == 4326
    assert set(SCHEMA) <= set(dets.columns)
    assert len(dets) > 0, "six animals on a flat background, none found"
    assert (dets["scene_id"] == "sim_no_crs").all()
    # footprint of the scene in lon/lat, from the transform and pyproj directly
    to_ll = Transformer.from_crs(UTM10N, "EPSG:4326", always_xy=True)
    cx, cy = zip(*[transform @ c for c in [(0, 0), (256, 0), (0, 256), (256, 256)]])
    lon, lat = to_ll.transform(np.array(cx), np.array(cy))
    assert dets.geometry.x.between(min(lon), max(lon)).all()
    assert dets.geometry.y.between(min(lat), max(lat)).all()


# --------------------------------------------------------------------------- other commands


def test_detectors_lists_sea_lion_counter(tmp_path):
    proc = _run(["detectors"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert DETECTOR in proc.stdout


def test_detect_help_mentions_bands(tmp_path):
    proc = _run(["detect", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "--bands" in proc.stdout
