"""Shared fixtures: tiny rasters made on the fly (test detectors live in detectors.py)."""

from __future__ import annotations

import numpy as np
import pytest



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
    """One local[2] Spark session for the whole test run (it takes seconds to start)."""
    import os
    import sys
    from pathlib import Path

    pytest.importorskip("pyspark", reason="pyspark is not installed")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ["PYSPARK_PYTHON"] = sys.executable
    tests = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([tests] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("geodetect-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
