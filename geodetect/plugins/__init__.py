"""Detector plugins: the contract (public API) and the registry."""

from geodetect.plugins._types import Boxes, Detector, DetectorSpec, Labels, Mask, Points, Result, Task
from geodetect.plugins.registry import (
    DetectorInfo,
    get_detector,
    list_detectors,
    register_detector,
    register_model,
    resolve_detector,
    unregister_detector,
)

__all__ = [
    "Task",
    "DetectorSpec",
    "Detector",
    "Points",
    "Boxes",
    "Mask",
    "Labels",
    "Result",
    "DetectorInfo",
    "list_detectors",
    "get_detector",
    "resolve_detector",
    "register_detector",
    "register_model",
    "unregister_detector",
]
