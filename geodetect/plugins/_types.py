"""The plugin contract: specs, the Detector base class and pixel result types.

Everything here is public API (re-exported from :mod:`geodetect.plugins`).
Results are in the tile's own pixel coordinates, continuous, the centre of
pixel ``(col, row)`` being ``(col + 0.5, row + 0.5)`` as in rasterio.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, Union

import numpy as np

from geodetect.errors import PluginError

__all__ = [
    "Task",
    "DetectorSpec",
    "Detector",
    "Points",
    "Boxes",
    "Mask",
    "Labels",
    "Result",
]

_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_SCALINGS = ("dtype", "none")


class Task(str, enum.Enum):
    """What a detector produces."""

    POINTS = "points"
    BOXES = "boxes"
    SEGMENTATION = "segmentation"
    CLASSIFICATION = "classification"


@dataclass(frozen=True)
class DetectorSpec:
    """Declarative, frozen description of a detector.

    Parameters
    ----------
    name : lower-case, hyphenated; equals the entry-point name.
    version : the detector's version string.
    task : a :class:`Task`.
    classes : class names, non-empty and unique.
    bands : 1-based band indexes, or band names such as ``("red", "green", "blue")``.
    tile_size : tile edge in pixels.
    overlap : pixels shared by neighbouring tiles (``0 <= overlap < tile_size``).
    gsd_m : native ground sample distance in metres; ``None`` accepts any.
    gsd_range : ``(finest, coarsest)`` scene GSDs in metres the detector accepts (the host
        resamples them to ``gsd_m``); a scene outside it is refused with a message, since
        upsampling a coarse scene many times over makes a detector invent objects. ``None``
        accepts any GSD.
    scaling : how raw pixel values become float32: ``"dtype"`` maps the dtype's
        range to 0..1 (uint8 / 255, uint16 / 65535; floats unchanged), ``"none"``
        keeps raw values, ``(lo, hi)`` maps ``lo..hi`` linearly to 0..1.
    merge_radius_px : POINTS: two detections of one class from neighbouring
        tiles closer than this are the same object.
    nms_iou : BOXES: overlap (IoU, or intersection over the smaller box) above
        which two boxes from neighbouring tiles are the same object.
    merge_classes : POINTS and BOXES: when True, twins from neighbouring tiles are one
        object whatever classes the two tiles gave it (the higher score keeps its class);
        for detectors whose class is uncertain near a tile edge (sea lions: a cow in one
        tile, a subadult in the next). False (the default) merges only twins of one class.
    threshold : SEGMENTATION: probability above which a pixel belongs to a class.
    min_polygon_px : SEGMENTATION: polygons of fewer pixels than this (measured on the
        whole scene, after joining across tiles) are dropped, and counted in the scene's notes.
    description, licence, weights_sha256 : free text / hash for listing and checks.
    """

    name: str
    version: str
    task: Task
    classes: tuple[str, ...]
    bands: tuple[int | str, ...]
    tile_size: int = 256
    overlap: int = 32
    gsd_m: float | None = None
    gsd_range: tuple[float, float] | None = None
    scaling: str | tuple[float, float] = "dtype"
    merge_radius_px: float = 4.0
    nms_iou: float = 0.5
    threshold: float = 0.5
    min_polygon_px: int = 0
    description: str = ""
    licence: str = ""
    weights_sha256: str | None = None
    extra: dict = field(default_factory=dict, compare=False, hash=False)
    merge_classes: bool = False

    def __post_init__(self) -> None:
        def bad(msg: str) -> PluginError:
            return PluginError(f"detector spec {self.name!r}: {msg}")

        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise bad("name must be lower-case letters, digits and hyphens, e.g. 'sea-lion-counter'")
        if not isinstance(self.version, str) or not self.version:
            raise bad("version must be a non-empty string")
        try:
            object.__setattr__(self, "task", Task(self.task))
        except ValueError:
            raise bad(f"task must be one of {[t.name for t in Task]}, got {self.task!r}") from None
        classes = tuple(self.classes) if not isinstance(self.classes, str) else (self.classes,)
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise bad("classes must be a non-empty tuple of non-empty strings")
        if len(set(classes)) != len(classes):
            raise bad(f"classes must be unique, got {classes}")
        object.__setattr__(self, "classes", classes)
        bands = tuple(self.bands) if not isinstance(self.bands, (str, int)) else (self.bands,)
        if not bands:
            raise bad("bands must name at least one band")
        for b in bands:
            if isinstance(b, bool) or not isinstance(b, (int, str)):
                raise bad(f"bands must be 1-based ints or names, got {b!r}")
            if isinstance(b, int) and b < 1:
                raise bad(f"band indexes are 1-based, got {b}")
        if len(set(bands)) != len(bands):
            raise bad(f"bands must be unique, got {bands}")
        object.__setattr__(self, "bands", bands)
        for fname in ("tile_size", "overlap"):
            v = getattr(self, fname)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise bad(f"{fname} must be an int, got {v!r}")
        if not (self.tile_size > self.overlap >= 0):
            raise bad(f"need tile_size > overlap >= 0, got tile_size={self.tile_size}, overlap={self.overlap}")
        if self.gsd_m is not None and not (float(self.gsd_m) > 0):
            raise bad(f"gsd_m must be positive or None, got {self.gsd_m!r}")
        if self.gsd_range is not None:
            try:
                lo, hi = (float(v) for v in self.gsd_range)
            except (TypeError, ValueError):
                raise bad(f"gsd_range must be (finest, coarsest) in metres, got {self.gsd_range!r}") from None
            if not (0 < lo <= hi < float("inf")):
                raise bad(f"gsd_range needs 0 < finest <= coarsest, got {self.gsd_range!r}")
            object.__setattr__(self, "gsd_range", (lo, hi))
        validate_scaling(self.scaling, bad)
        if not (self.merge_radius_px >= 0):
            raise bad("merge_radius_px must be >= 0")
        if not (0 < self.nms_iou <= 1):
            raise bad("nms_iou must be in (0, 1]")
        if not (0 < self.threshold < 1):
            raise bad("threshold must be in (0, 1)")
        if isinstance(self.min_polygon_px, bool) or not isinstance(self.min_polygon_px, (int, np.integer)) \
                or self.min_polygon_px < 0:
            raise bad(f"min_polygon_px must be an int >= 0, got {self.min_polygon_px!r}")

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def validate_scaling(scaling, bad=None):
    """Check a scaling declaration; return it normalised."""
    bad = bad or (lambda m: PluginError(m))
    if isinstance(scaling, str):
        if scaling not in _SCALINGS:
            raise bad(f"scaling must be one of {_SCALINGS} or (lo, hi), got {scaling!r}")
        return scaling
    try:
        lo, hi = (float(v) for v in scaling)
    except (TypeError, ValueError):
        raise bad(f"scaling must be one of {_SCALINGS} or (lo, hi), got {scaling!r}") from None
    if not hi > lo:
        raise bad(f"scaling (lo, hi) needs hi > lo, got {scaling!r}")
    return (lo, hi)


def _as(arr, dtype, name: str, shape_tail: tuple | None, ndim: int):
    a = np.asarray(arr, dtype=dtype)
    if a.ndim != ndim or (shape_tail is not None and a.shape[1:] != shape_tail):
        want = ("K",) + shape_tail if shape_tail is not None else f"{ndim}-d"
        raise PluginError(f"{name} must have shape {want}, got {a.shape}")
    return a


@dataclass(frozen=True)
class Points:
    """Point detections: ``xy`` (K, 2) as [col, row]; ``class_ids`` (K,); ``scores`` (K,)."""

    xy: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "xy", _as(self.xy, np.float64, "Points.xy", (2,), 2) if len(self.xy) else np.zeros((0, 2)))
        _check_ids_scores(self, len(self.xy))

    @classmethod
    def empty(cls) -> "Points":
        return cls(np.zeros((0, 2)), np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Boxes:
    """Box detections: ``xyxy`` (K, 4) as [col_min, row_min, col_max, row_max]; ``class_ids``; ``scores``."""

    xyxy: np.ndarray
    class_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "xyxy", _as(self.xyxy, np.float64, "Boxes.xyxy", (4,), 2) if len(self.xyxy) else np.zeros((0, 4)))
        _check_ids_scores(self, len(self.xyxy))
        b = self.xyxy
        if len(b) and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
            raise PluginError("Boxes.xyxy must have col_max >= col_min and row_max >= row_min")

    @classmethod
    def empty(cls) -> "Boxes":
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0, np.float32))


@dataclass(frozen=True)
class Mask:
    """Per-pixel class probabilities ``probs`` (H, W, C) float32."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float32)
        if p.ndim == 2:
            p = p[..., None]
        if p.ndim != 3:
            raise PluginError(f"Mask.probs must have shape (H, W, C), got {p.shape}")
        object.__setattr__(self, "probs", p)


@dataclass(frozen=True)
class Labels:
    """Whole-tile class probabilities ``probs`` (C,) float32."""

    probs: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.probs, dtype=np.float32)
        if p.ndim != 1:
            raise PluginError(f"Labels.probs must have shape (C,), got {p.shape}")
        object.__setattr__(self, "probs", p)


Result = Union[Points, Boxes, Mask, Labels]
RESULT_TYPE = {Task.POINTS: Points, Task.BOXES: Boxes, Task.SEGMENTATION: Mask, Task.CLASSIFICATION: Labels}


def _check_ids_scores(r, k: int) -> None:
    ids = np.asarray(r.class_ids)
    scores = np.asarray(r.scores, dtype=np.float32)
    name = type(r).__name__
    if ids.shape != (k,) or scores.shape != (k,):
        raise PluginError(f"{name}: class_ids and scores must have shape ({k},), got {ids.shape} and {scores.shape}")
    if k and not np.issubdtype(ids.dtype, np.integer):
        if not np.all(np.equal(np.mod(ids, 1), 0)):
            raise PluginError(f"{name}.class_ids must be integers")
    object.__setattr__(r, "class_ids", ids.astype(np.int64))
    object.__setattr__(r, "scores", scores)


class Detector:
    """Base class of every detector plugin.

    Subclasses set the class attribute ``spec`` and implement :meth:`predict`;
    :meth:`load` runs once per process (once per Spark worker) before the first
    ``predict``. A detector works in pixel space only: the host reads, tiles,
    stitches and georeferences.

    Examples
    --------
    >>> import numpy as np
    >>> from geodetect.plugins import Detector, DetectorSpec, Task, Points
    >>> class BrightSpots(Detector):
    ...     spec = DetectorSpec(name="bright-spots", version="1.0.0", task=Task.POINTS,
    ...                         classes=("spot",), bands=(1,), tile_size=64, overlap=8)
    ...     def predict(self, tiles):
    ...         out = []
    ...         for t in tiles:
    ...             r, c = np.nonzero(t[..., 0] > 0.9)
    ...             out.append(Points(np.c_[c + 0.5, r + 0.5], np.zeros(len(r), int), np.ones(len(r))))
    ...         return out
    >>> BrightSpots().spec.task.name
    'POINTS'
    """

    spec: ClassVar[DetectorSpec]
    #: named groupings of the classes (e.g. ``{"three-class": {"forest": "undeveloped", ...}}``),
    #: usable as ``geodetect evaluate --grouping NAME``
    groupings: ClassVar[dict[str, dict[str, str]]] = {}

    def load(self) -> None:
        """Load weights or other state. Called once before the first predict."""

    def predict(self, tiles: np.ndarray) -> list[Result]:
        """Return one result per tile of ``tiles`` (float32, (N, H, W, C))."""
        raise NotImplementedError

    def input_channels(self) -> int | None:
        """Channels the loaded model expects (e.g. ``model.input_shape[-1]``); None if not applicable.

        The host checks it against ``len(spec.bands)`` after :meth:`load`.
        """
        return None

    def __getstate__(self):
        # a pickled detector (Spark) must load again in the process that unpickles it
        state = dict(self.__dict__)
        state.pop("_geodetect_loaded", None)
        return state

    def ensure_loaded(self) -> None:
        """Call :meth:`load` once for this instance and check the model's channels (the host calls this)."""
        if getattr(self, "_geodetect_loaded", False):
            return
        self.load()
        ch = self.input_channels()
        if ch is not None and int(ch) != self.spec.n_bands:
            raise PluginError(
                f"detector {self.spec.name!r}: the model takes {ch} input channel(s) but spec.bands "
                f"lists {self.spec.n_bands} ({', '.join(map(str, self.spec.bands))}); make them agree"
            )
        self._geodetect_loaded = True
