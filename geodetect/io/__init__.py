"""Raster input: opening scenes and tiling them."""

from geodetect.io.raster import Scene, open_scene, parse_bands
from geodetect.io.tiling import Tiling

__all__ = ["Scene", "open_scene", "parse_bands", "Tiling"]
