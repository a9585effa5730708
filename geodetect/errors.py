"""The one exception hierarchy of geodetect.

Every error raised on purpose by geodetect derives from :class:`GeodetectError`
and also from the builtin exception that fits it, so ``except OSError`` keeps
working for callers who do not know geodetect. Messages say what went wrong,
on which file, and what to do about it; the CLI prints them as one line.
"""

from __future__ import annotations

__all__ = [
    "GeodetectError",
    "RasterReadError",
    "GeoreferenceError",
    "BandError",
    "DetectorNotFoundError",
    "PluginError",
    "OutputError",
    "ConfigError",
    "MissingDependencyError",
    "VectorReadError",
]


class GeodetectError(Exception):
    """Root of every error geodetect raises on purpose."""


class RasterReadError(GeodetectError, OSError):
    """A scene could not be opened or read (missing, empty, truncated, not a raster)."""


class GeoreferenceError(GeodetectError, ValueError):
    """A scene cannot be placed on the map (no CRS, no geotransform, bad placement)."""


class BandError(GeodetectError, ValueError):
    """The bands a detector needs are not in the scene, or the band mapping is wrong."""


class DetectorNotFoundError(GeodetectError, LookupError):
    """No detector is registered under the requested name."""

    def __str__(self) -> str:  # LookupError subclasses would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class PluginError(GeodetectError, RuntimeError):
    """A detector plugin is broken: bad spec, failed import, or wrong results from predict."""


class OutputError(GeodetectError, OSError):
    """An output file could not be written."""


class ConfigError(GeodetectError, ValueError):
    """An argument or option has a value geodetect cannot use."""


class MissingDependencyError(GeodetectError, ImportError):
    """An optional dependency is needed for this feature and is not installed."""


class VectorReadError(GeodetectError, OSError):
    """A vector file (detections, regions) could not be read."""
