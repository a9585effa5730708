"""Helpers for people who write detectors, and for geodetect's own tests.

>>> from geodetect.testing import check_detector
>>> from geodetect_plugins.sea_lion_counter import SeaLionCounter
>>> check_detector(SeaLionCounter)["task"]
'POINTS'
"""

from __future__ import annotations

import pickle

import numpy as np

from geodetect.errors import PluginError
from geodetect.plugins.registry import resolve_detector, validate_detector_class
from geodetect.simulate import make_scene

__all__ = ["check_detector", "check_weights_guarded", "make_scene", "assert_detections_equal"]


def check_detector(detector, *, n_tiles: int = 3, seed: int = 0) -> dict:
    """Run the plugin contract checks the registry runs, and a predict on random tiles.

    ``detector`` is a Detector class or instance. Raises PluginError with the
    reason on the first broken rule; returns a small report otherwise.
    """
    from geodetect.pipeline import _check_results

    cls = detector if isinstance(detector, type) else type(detector)
    validate_detector_class(cls)
    spec = detector.spec  # an instance may carry its own (options that change the classes)
    try:
        pickle.loads(pickle.dumps(spec))
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"detector {spec.name!r}: spec is not picklable ({exc}); Spark workers need it") from exc
    inst = resolve_detector(detector)  # instantiates a class, loads once, wraps load() failures
    rng = np.random.default_rng(seed)
    for n in (1, n_tiles):
        tiles = rng.random((n, spec.tile_size, spec.tile_size, spec.n_bands), dtype=np.float32)
        try:
            out = inst.predict(tiles)
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"detector {spec.name!r}: predict() failed on random tiles: {type(exc).__name__}: {exc}") from exc
        _check_results(inst, out, n, spec.tile_size)
    return {"name": spec.name, "task": spec.task.name, "classes": spec.classes, "bands": spec.bands}


def heavy_imports_of(module: str, heavy=("tensorflow", "keras", "torch")) -> list[str]:
    """The ``heavy`` modules that importing ``module`` loads, in a fresh Python process.

    Detector plugins must import their deep-learning framework in ``load()``,
    never at import time: listing detectors imports every plugin module.
    """
    import subprocess
    import sys

    code = f"import sys, {module}; print(' '.join(m for m in {tuple(heavy)!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise AssertionError(f"import {module} failed: {out.stderr.strip()[-500:]}")
    return out.stdout.split()


def check_weights_guarded(cls, weights, workdir, *, max_bytes: float | None = None) -> None:
    """Check that a weights-backed detector refuses a wrong hash and a tampered copy of its weights.

    ``cls(sha256=...)`` and ``cls(weights=...)`` must select another hash or file
    (the convention of the built-in detectors). The committed file must match
    ``cls.spec.weights_sha256`` (and be under ``max_bytes``). Raises AssertionError.
    """
    import shutil
    from pathlib import Path

    from geodetect.plugins.weights import sha256_of

    weights = Path(weights)
    assert sha256_of(weights) == cls.spec.weights_sha256, f"{weights}: sha256 differs from the spec's"
    if max_bytes is not None:
        assert weights.stat().st_size < max_bytes, f"{weights}: {weights.stat().st_size} bytes"
    for make, why in ((lambda: cls(sha256="0" * 64), "expected"), (None, "corrupt or was replaced")):
        if make is None:
            bad = Path(workdir) / weights.name
            shutil.copy(weights, bad)
            with open(bad, "r+b") as f:
                f.seek(min(2000, bad.stat().st_size // 2))
                f.write(b"\x00\x01\x02")
            make = lambda bad=bad: cls(weights=bad)  # noqa: E731
        try:
            make().ensure_loaded()
        except PluginError as exc:
            assert why in str(exc), f"unexpected error: {exc}"
        else:
            raise AssertionError(f"{cls.spec.name}: weights that should be refused were loaded ({why})")


def assert_detections_equal(left, right, *, tolerance: float = 1e-9, check_scores: bool = True) -> None:
    """Assert two detections tables hold the same detections, in any row order.

    Geometries must match within ``tolerance`` (CRS units); scores within 1e-6.
    """
    import shapely

    assert list(left.columns[:7]) == list(right.columns[:7]), f"columns differ: {list(left.columns)} vs {list(right.columns)}"
    assert left.crs == right.crs, f"CRS differ: {left.crs} vs {right.crs}"
    assert len(left) == len(right), f"{len(left)} vs {len(right)} detections"
    if len(left) == 0:
        return

    def ordered(df):
        c = shapely.centroid(df.geometry.values)
        key = df.assign(_x=np.round(shapely.get_x(c), 6), _y=np.round(shapely.get_y(c), 6))
        return key.sort_values(["scene_id", "class_name", "_x", "_y"]).reset_index(drop=True)

    a, b = ordered(left), ordered(right)
    for col in ("detector", "detector_version", "scene_id", "class_name"):
        diff = (a[col].values != b[col].values).nonzero()[0]
        assert len(diff) == 0, f"column {col!r} differs at {len(diff)} rows, first: {a[col].iloc[diff[0]]!r} vs {b[col].iloc[diff[0]]!r}"
    same = shapely.equals_exact(a.geometry.values, b.geometry.values, tolerance=tolerance)
    assert same.all(), f"{(~same).sum()} geometries differ, first at row {int(np.argmin(same))}"
    if check_scores:
        assert np.allclose(a.score.values, b.score.values, atol=1e-6), "scores differ"
    assert np.allclose(a.area_m2.values, b.area_m2.values, rtol=1e-6, atol=1e-6), "area_m2 differs"
