"""geodetect: run detectors over georeferenced imagery, get spatial tables.

>>> import geodetect as gd
>>> sorted(gd.__all__)[:3]
['Detector', 'DetectorSpec', 'GeodetectError']
"""

from __future__ import annotations

from geodetect.analytics import aggregate, change, heatmap, sql
from geodetect.counts import counts
from geodetect.errors import GeodetectError
from geodetect.frames import read, write
from geodetect.pipeline import detect, segment
from geodetect.plugins import Detector, DetectorSpec, Task, list_detectors, register_detector, register_model
from geodetect.viz import quicklook, quicklook_counts, to_kepler

__version__ = "0.1.0"

__all__ = [
    "detect",
    "segment",
    "write",
    "aggregate",
    "heatmap",
    "change",
    "sql",
    "counts",
    "to_kepler",
    "quicklook",
    "quicklook_counts",
    "read",
    "register_detector",
    "register_model",
    "list_detectors",
    "Detector",
    "DetectorSpec",
    "Task",
    "GeodetectError",
    "__version__",
]


def __getattr__(name: str):
    """``gd.testing``, ``gd.simulate``, ``gd.spark``, ``gd.plugins``: submodules imported on first use."""
    if name in ("testing", "simulate", "spark", "plugins", "evaluate", "runs", "mlm", "stac", "export"):
        import importlib

        return importlib.import_module(f"geodetect.{name}")
    raise AttributeError(f"module 'geodetect' has no attribute {name!r}")
