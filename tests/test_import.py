"""``import geodetect`` stays light: heavy optional dependencies are imported lazily.

The heavy packages are usually not installed in the test environment, which
would make a plain ``sys.modules`` check pass trivially. So the subprocess
gets importable stub packages of the same names on ``PYTHONPATH``: if
geodetect imported any of them at module level, the stub would show up in
``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HEAVY = ("tensorflow", "pyspark", "keplergl", "sedonadb", "sedona")


def _stub_path(tmp_path: Path) -> Path:
    root = tmp_path / "stubs"
    for name in HEAVY:
        pkg = root / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(f"# stub of {name} for test_import\n__version__ = '0.0.0'\n")
    return root


def _run(code: str, tmp_path: Path, stubs: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if stubs:
        extra = str(_stub_path(tmp_path))
        env["PYTHONPATH"] = extra + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )


def _heavy_loaded(stdout: str) -> list[str]:
    return json.loads(stdout.strip().splitlines()[-1])


CHECK = f"""
import sys, json
heavy = {HEAVY!r}
loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)
print(json.dumps(loaded))
"""


def test_stubs_are_importable(tmp_path):
    """Sanity check of the method: the stubs are found when imported on purpose."""
    proc = _run("import tensorflow, pyspark, keplergl, sedonadb, sedona\n" + CHECK, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(_heavy_loaded(proc.stdout)) >= set(HEAVY)


def test_import_geodetect_does_not_import_heavy_deps(tmp_path):
    proc = _run("import geodetect\n" + CHECK, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _heavy_loaded(proc.stdout) == []


def test_import_geodetect_without_stubs(tmp_path):
    """The same check against the real environment (no stub packages)."""
    proc = _run("import geodetect\n" + CHECK, tmp_path, stubs=False)
    assert proc.returncode == 0, proc.stderr
    assert _heavy_loaded(proc.stdout) == []


def test_cli_listing_does_not_import_heavy_deps(tmp_path):
    """`geodetect detectors` loads the built-in plugins; still nothing heavy at import time."""
    code = """
    import contextlib, io
    from geodetect.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(["detectors"])
    assert rc == 0, rc
    """
    proc = _run(textwrap.dedent(code) + CHECK, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert _heavy_loaded(proc.stdout) == []


def test_all_names_exist():
    import geodetect

    assert isinstance(geodetect.__all__, (list, tuple))
    assert len(geodetect.__all__) == len(set(geodetect.__all__)), "duplicate names in __all__"
    missing = [name for name in geodetect.__all__ if not hasattr(geodetect, name)]
    assert missing == []
    for name in geodetect.__all__:
        if name != "__version__":
            assert getattr(geodetect, name) is not None, name


def test_star_import(tmp_path):
    proc = _run(
        """
        import geodetect
        ns = {}
        exec("from geodetect import *", ns)
        missing = [n for n in geodetect.__all__ if n not in ns]
        assert not missing, missing
        """,
        tmp_path,
        stubs=False,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", ["detect", "write", "read", "register_detector", "list_detectors"])
def test_public_functions_are_callable(name):
    import geodetect

    assert name in geodetect.__all__
    assert callable(getattr(geodetect, name))


def test_public_classes():
    import geodetect

    assert issubclass(geodetect.GeodetectError, Exception)
    assert isinstance(geodetect.Detector, type)
    assert isinstance(geodetect.DetectorSpec, type)
    assert {t.name for t in geodetect.Task} >= {"POINTS", "BOXES", "SEGMENTATION", "CLASSIFICATION"}
    assert isinstance(geodetect.__version__, str) and geodetect.__version__


def test_import_and_points_detect_stay_light(tmp_path):
    """`import geodetect` loads no geopandas/pandas/rasterio/pyproj; a points run with progress off
    loads no scipy.spatial and no tqdm (they cost most of a first call, issue 18)."""
    code = f"""
    import sys, json
    import geodetect as gd
    before = sorted(m for m in ("geopandas", "pandas", "rasterio", "pyproj", "shapely") if m in sys.modules)
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    from detectors import MeanLabel, BrightPoints
    from geodetect.simulate import make_scene
    sim = make_scene({str(tmp_path / "s.tif")!r}, size=(300, 300), n_objects=5, seed=1)
    sys.modules.pop("scipy.spatial", None)
    class P(BrightPoints):
        def predict(self, tiles):
            import numpy as np
            from geodetect.plugins import Points
            return [Points(np.array([[10.5, 10.5]]), np.zeros(1, int), np.ones(1)) for _ in tiles]
    gd.detect(sim.path, P, progress=False)
    after = sorted(m for m in ("scipy.spatial", "tqdm") if m in sys.modules)
    print(json.dumps([before, after]))
    """
    proc = _run(textwrap.dedent(code), tmp_path, stubs=False)
    assert proc.returncode == 0, proc.stderr
    before, after = json.loads(proc.stdout.strip().splitlines()[-1])
    assert before == [] and after == []
