"""Detector registry: entry points of group ``geodetect.detectors`` plus notebook registrations.

Discovery lists entry points without importing them; a plugin's module is
imported on first use (or when a listing asks for details). A plugin that
fails to import or validate is reported as broken and never breaks the others.
"""

from __future__ import annotations

import importlib.metadata as md
import threading
from dataclasses import dataclass

from geodetect.errors import DetectorNotFoundError, PluginError
from geodetect.plugins._types import Detector, DetectorSpec

__all__ = [
    "GROUP",
    "DetectorInfo",
    "list_detectors",
    "get_detector",
    "resolve_detector",
    "register_detector",
    "register_model",
    "unregister_detector",
    "validate_detector_class",
]

GROUP = "geodetect.detectors"

_registered: dict[str, type[Detector]] = {}
_instances: dict[str, Detector] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class DetectorInfo:
    """One row of the detector listing."""

    name: str
    target: str  # "package.module:Class"
    package: str  # distribution that declares it ("(registered)" for register_detector)
    package_version: str
    spec: DetectorSpec | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _entry_points() -> list[md.EntryPoint]:
    # walk distributions ourselves: md.entry_points() keeps one entry point per
    # name, which would hide two packages claiming the same detector name
    out, seen = [], set()
    for dist in md.distributions():
        for ep in dist.entry_points:
            if ep.group != GROUP:
                continue
            key = (dist.metadata["Name"], ep.name, ep.value)
            if key not in seen:  # the same distribution visible twice on sys.path
                seen.add(key)
                out.append(ep)
    return out


def _dist_of(ep: md.EntryPoint) -> tuple[str, str]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown)", ""
    return dist.metadata["Name"], dist.version


def validate_detector_class(cls, expected_name: str | None = None) -> type[Detector]:
    """Check that ``cls`` honours the plugin contract; return it or raise PluginError."""
    label = expected_name or getattr(cls, "__name__", repr(cls))
    if not isinstance(cls, type) or not issubclass(cls, Detector):
        raise PluginError(f"detector {label!r}: {cls!r} is not a subclass of geodetect.plugins.Detector")
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, DetectorSpec):
        raise PluginError(f"detector {label!r}: class {cls.__name__} has no `spec = DetectorSpec(...)`")
    if expected_name is not None and spec.name != expected_name:
        raise PluginError(
            f"detector {label!r}: entry-point name {expected_name!r} differs from spec.name {spec.name!r}; make them equal"
        )
    if cls.predict is Detector.predict:
        raise PluginError(f"detector {label!r}: class {cls.__name__} does not implement predict()")
    return cls


def _load_entry_point(ep: md.EntryPoint) -> type[Detector]:
    pkg, _ = _dist_of(ep)
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken, not the host
        raise PluginError(
            f"detector {ep.name!r} from package {pkg!r} failed to import ({ep.value}): {type(exc).__name__}: {exc}"
        ) from exc
    try:
        return validate_detector_class(obj, ep.name)
    except PluginError as exc:
        raise PluginError(f"{exc} (package {pkg!r})") from None


def _by_name() -> dict[str, list[md.EntryPoint]]:
    out: dict[str, list[md.EntryPoint]] = {}
    for ep in _entry_points():
        out.setdefault(ep.name, []).append(ep)
    return out


def _conflict_message(name: str, eps: list[md.EntryPoint]) -> str:
    pkgs = " and ".join(f"{_dist_of(e)[0]} ({e.value})" for e in eps)
    return f"detector name {name!r} is claimed by more than one package: {pkgs}; uninstall one of them"


def list_detectors(load: bool = False) -> list[DetectorInfo]:
    """All known detectors, sorted by name.

    With ``load=False`` (the default) nothing is imported: ``spec`` is ``None``
    for entry points. With ``load=True`` each plugin is imported and validated;
    failures are reported in ``DetectorInfo.error``.
    """
    rows: list[DetectorInfo] = []
    broken_models = _saved_models()
    eps = _by_name()
    for name, group in eps.items():
        pkg, ver = _dist_of(group[0])
        if len(group) > 1:
            rows.append(DetectorInfo(name, group[0].value, pkg, ver, None, _conflict_message(name, group)))
            continue
        spec = error = None
        if load:
            try:
                spec = _load_entry_point(group[0]).spec
            except PluginError as exc:
                error = str(exc)
        rows.append(DetectorInfo(name, group[0].value, pkg, ver, spec, error))
    for name, cls in _registered.items():
        if name in eps:
            continue
        mlm = getattr(cls, "mlm", None)
        if mlm is not None:  # an ONNX model described by a STAC MLM document
            rows.append(DetectorInfo(name, mlm.path, "(MLM model)", "", cls.spec))
        else:
            rows.append(DetectorInfo(name, f"{cls.__module__}:{cls.__qualname__}", "(registered)", "", cls.spec))
    for path, err in broken_models.items():
        rows.append(DetectorInfo(path, path, "(MLM model)", "", None, err))
    return sorted(rows, key=lambda r: r.name)


def get_detector(name: str) -> type[Detector]:
    """The detector class registered under ``name`` (imports its plugin)."""
    if name not in _registered:
        _saved_models()
    if name in _registered:
        return _registered[name]
    group = _by_name().get(name)
    if not group:
        known = ", ".join(r.name for r in list_detectors()) or "none"
        raise DetectorNotFoundError(
            f"unknown detector {name!r}; known detectors: {known} (run `geodetect detectors`)"
        )
    if len(group) > 1:
        raise PluginError(_conflict_message(name, group))
    return _load_entry_point(group[0])


def register_detector(cls: type[Detector], *, replace: bool = False) -> type[Detector]:
    """Register a detector class at run time (notebooks, tests). Usable as a decorator."""
    validate_detector_class(cls)
    name = cls.spec.name
    with _lock:
        existing = _registered.get(name)
        if existing is None and name in _by_name():
            existing_desc = f"the entry point {_by_name()[name][0].value}"
        elif existing is not None and existing is not cls:
            existing_desc = f"{existing.__module__}.{existing.__qualname__}"
        else:
            existing_desc = None
        if existing_desc and not replace:
            raise PluginError(
                f"detector name {name!r} is already taken by {existing_desc}; "
                "choose another spec.name or pass replace=True"
            )
        _registered[name] = cls
        _instances.pop(name, None)
    return cls


def register_model(path, *, replace: bool = False) -> type[Detector]:
    """Register the detector described by a STAC MLM document and its ONNX file (no Python written).

    The document is read and checked now; the ONNX file is verified against its checksum and
    loaded by onnxruntime on first use. See :mod:`geodetect.mlm` for what the document must say.
    """
    from geodetect.mlm import detector_class

    return register_detector(detector_class(path), replace=replace)


def _saved_models() -> dict[str, str]:
    """Register the MLM models added with ``geodetect detectors add``; {path: error} of the broken ones."""
    from geodetect.mlm import load_saved_models

    return load_saved_models(register_detector)


def unregister_detector(name: str) -> None:
    """Remove a detector registered with :func:`register_detector`."""
    with _lock:
        _registered.pop(name, None)
        _instances.pop(name, None)


def resolve_detector(detector) -> Detector:
    """A loaded detector instance from a name, a class or an instance.

    Named detectors are instantiated and loaded once per process and reused.
    """
    if isinstance(detector, Detector):
        validate_detector_class(type(detector))
        inst = detector
    elif isinstance(detector, type):
        validate_detector_class(detector)
        inst = detector()
    elif isinstance(detector, str):
        with _lock:
            inst = _instances.get(detector)
        if inst is None:
            inst = get_detector(detector)()
            with _lock:
                inst = _instances.setdefault(detector, inst)
    else:
        raise PluginError(f"detector must be a name, a Detector class or an instance, got {detector!r}")
    try:
        inst.ensure_loaded()
    except PluginError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"detector {inst.spec.name!r} failed to load: {type(exc).__name__}: {exc}") from exc
    return inst
