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
