"""Georeferenced synthetic scenes with exact ground truth.

Scenes are real GeoTIFFs (tiled, deflate-compressed) in any CRS, with objects
at known positions. Ground truth is computed with ``affine`` and ``pyproj``
directly (not through :mod:`geodetect.georef`), so tests comparing the two
check the pipeline independently. Used by the tests, the demo and training.

Kinds of scene (``make_scene(path, kind=...)``):

* ``"sea-lions"``: Steller sea-lion rookeries (:func:`geodetect.simulate.sealions.make_rookery`).
* ``"vehicles"``: cars, trucks and buses on roads and parking lots at 0.3 m (:func:`geodetect.simulate.vehicles.make_vehicles`).
* ``"water"``: lakes, rivers and coast on land, four bands (blue, green, red, nir) (:func:`geodetect.simulate.water.make_water`).
* ``"urban"``: buildings with shadows, roads and trees at 0.3 m (:func:`geodetect.simulate.urban.make_urban`).
* ``"land-use"``: a patchwork of the six land-use classes at 1 m (:func:`geodetect.simulate.landuse.make_landuse`).

Examples
--------
>>> from geodetect.simulate import make_scene
>>> sim = make_scene("/tmp/sim.tif", crs="EPSG:32606", center=(-150.0, 60.0),
...                  size=(512, 512), n_objects=20, seed=1)            # doctest: +SKIP
>>> len(sim.truth)                                                     # doctest: +SKIP
20
"""

from __future__ import annotations

from geodetect.errors import ConfigError
from geodetect.simulate._grid import SimScene, seam_positions
from geodetect.simulate.sealions import SEA_LION_CLASSES, SEA_LION_SIZES_M, make_rookery

__all__ = ["KINDS", "SimScene", "make_scene", "seam_positions", "SEA_LION_CLASSES", "SEA_LION_SIZES_M"]

#: scene kinds: name -> "module:function" (imported on use)
KINDS = {
    "sea-lions": "geodetect.simulate.sealions:make_rookery",
    "vehicles": "geodetect.simulate.vehicles:make_vehicles",
    "water": "geodetect.simulate.water:make_water",
    "urban": "geodetect.simulate.urban:make_urban",
    "land-use": "geodetect.simulate.landuse:make_landuse",
}


def make_scene(path, *, kind: str = "sea-lions", **kwargs) -> SimScene:
    """Write a synthetic scene of ``kind`` to ``path``; keyword arguments go to that kind's maker."""
    import importlib

    target = KINDS.get(kind)
    if target is None:
        raise ConfigError(f"unknown scene kind {kind!r}; choose one of {', '.join(sorted(KINDS))}")
    n = kwargs.get("n_objects")
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
        raise ConfigError(f"simulate: --objects must be a whole number >= 0, got {n!r}")
    if kwargs.get("size") is not None or kwargs.get("gsd_m") is not None or kwargs.get("crs") is not None \
            or kwargs.get("center") is not None:  # refused before anything is drawn (the makers check again)
        from geodetect.simulate._grid import check_scene_args

        check_scene_args(kwargs.get("crs", "EPSG:4326"), kwargs.get("center", (0.0, 0.0)),
                         kwargs.get("size", (1, 1)), kwargs.get("gsd_m", 1.0))
    mod, func = target.split(":")
    return getattr(importlib.import_module(mod), func)(path, **kwargs)
