"""Shared fixtures: tiny rasters made on the fly (test detectors live in detectors.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

#: the real labelled imagery (../shared/data beside the checkout, or $GEODETECT_DATA); never committed
REAL_DATA = Path(os.environ.get("GEODETECT_DATA") or Path(__file__).resolve().parents[1].parent / "shared" / "data")
#: CI sets GEODETECT_REQUIRE_DATA=1: a missing data set then fails the test instead of skipping it
REQUIRE_DATA = os.environ.get("GEODETECT_REQUIRE_DATA", "") not in ("", "0")


def real_dataset(name: str) -> Path:
    """The folder of one real data set (``sealions-noaa``, ``vehicles-kit-ais``, ``buildings-dubai``,
    ``landuse-aid``); skips the test when it is absent (a user's clone), fails it under CI's switch."""
    folder = REAL_DATA / name
    if not folder.is_dir():
        reason = (f"real data set {name!r} not found at {folder} (../shared/data beside the checkout, "
                  "or set GEODETECT_DATA)")
        if REQUIRE_DATA:
            pytest.fail(f"GEODETECT_REQUIRE_DATA is set but {reason}", pytrace=False)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, a required dependency of the built-in detectors: imported plainly, so a broken
    install fails the tests that need it instead of turning them into skips. Through geodetect's
    import, which loads the SQLite users (GDAL, sqlite3) first, as every detector does."""
    from geodetect.plugins.weights import import_tensorflow

    return import_tensorflow()



@pytest.fixture
def write_raster(tmp_path):
    """Write an array (bands, rows, cols) as a GeoTIFF; returns the path."""
    import rasterio
    from rasterio.transform import from_origin

    def _write(arr, name="scene.tif", crs="EPSG:32610", transform=None, nodata=None, **extra):
        arr = np.asarray(arr)
        if arr.ndim == 2:
            arr = arr[None]
        path = tmp_path / name
        profile = dict(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=arr.shape[0],
                       dtype=arr.dtype, transform=transform or from_origin(500000, 4200000, 1.0, 1.0))
        if crs is not None:
            profile["crs"] = crs
        if nodata is not None:
            profile["nodata"] = nodata
        profile.update(extra)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr)
        return str(path)

    return _write


@pytest.fixture(scope="session")
def spark():
    """One local[2] Spark session with Apache Sedona registered, for the whole test run (it takes seconds to start).

    The Sedona jars come from `make jars` (Maven Central into build/jars): without them this fails
    with the coordinates to fetch; it never skips.
    """
    import os
    from pathlib import Path

    pytest.importorskip("pyspark", reason="pyspark is not installed")
    tests = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([tests] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    from geodetect import spark as gds

    session = gds.session(master="local[2]", app_name="geodetect-tests",
                          conf={"spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g",
                                # a Thrift server started from this session shares its views and functions
                                "spark.sql.hive.thriftServer.singleSession": "true"})
    yield session
    session.stop()
