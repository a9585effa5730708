"""Detectors described by a STAC Machine Learning Model (MLM) document and run from an ONNX file.

A model shipped as an ``.onnx`` file with an MLM document (a STAC Item using the
``mlm`` extension, https://stac-extensions.github.io/mlm/) becomes a detector
with no Python written: :func:`detector_class` reads the document into a
:class:`~geodetect.plugins.DetectorSpec` and a class whose ``predict`` runs the
model with onnxruntime (:mod:`geodetect.onnx`). ``geodetect.register_model(path)``
registers it for this process, ``geodetect detectors add PATH`` for good.

What is read from the document
------------------------------
- ``mlm:name`` (lower-cased, ``_`` and spaces made ``-``): the detector's name; ``version``
  (or ``geodetect:version``): its version.
- ``mlm:input[0]``: ``bands`` (names such as ``red``, ``nir``, ``vv``: the host finds them in
  the scene by name, in STAC items by ``eo:bands`` common name); ``input.shape`` and
  ``input.dim_order`` (``batch, channel, height, width`` or ``batch, height, width, channel``;
  ``-1`` for a free size); ``input.data_type`` (float32 or float16); ``value_scaling``
  (``min-max``, ``z-score``, ``clip``, ``clip-min``, ``clip-max``, ``offset``, ``scale``; one
  for all bands or one per band). ``pre_processing_function`` must be null.
- ``mlm:output[0]``: ``tasks``, ``result.shape``/``result.dim_order`` (the layouts below),
  ``classification:classes`` (``value`` and ``name``: the class names in ``value`` order) and
  ``geodetect:activation`` (``none``, the default, ``sigmoid`` or ``softmax``, applied by the host).
- the asset with role ``mlm:model``: its ``href`` (a local path, relative to the document;
  weights are never fetched from the network) and ``file:checksum`` (multihash sha2-256,
  ``1220`` + hex): the file is verified before it is loaded and refused without a checksum.
- optional ``geodetect:`` properties for what MLM does not say: ``tile_size`` (when the input
  shape leaves it free), ``overlap`` (default tile/8), ``gsd_m`` (or the item's ``gsd``),
  ``gsd_range``, ``threshold`` (segmentation), ``score_threshold`` (points, boxes; default 0.5),
  ``merge_radius_px``, ``merge_classes`` (true: seam twins merge whatever their class), ``nms_iou``,
  ``min_polygon_px``, ``bands`` (1-based indexes instead of
  names), ``scaling`` (``dtype``, ``none`` or ``[lo, hi]``: the host's own scaling, used
  instead of ``value_scaling``).

Output layouts (others are refused with a message)
--------------------------------------------------
============================== ============================================ ==================
``mlm:output`` tasks            ``result.dim_order`` and shape               geodetect result
============================== ============================================ ==================
classification,                 ``batch, class`` (N, C)                      ``Labels`` (C,)
scene-classification
semantic-segmentation,          ``batch, class, height, width`` (N, C, H, W)  ``Mask`` (H, W, C)
segmentation                    or ``batch, height, width, class``
object-detection, detection     ``batch, detection, attribute`` (N, K, 6):    ``Boxes``
                                col_min, row_min, col_max, row_max, score,
                                class id
object-detection, detection,    ``batch, detection, attribute`` (N, K, 4):    ``Points``
keypoint-detection              col, row, score, class id
============================== ============================================ ==================

Coordinates are tile pixels (the centre of pixel (col, row) at (col + 0.5, row + 0.5)); rows
whose score is under ``score_threshold`` are padding (a model with a fixed K pads with score 0).
Probabilities are 0..1 per class (a one-class mask has C = 1).

Examples
--------
>>> from geodetect.mlm import mlm_checksum
>>> mlm_checksum(b"")[:8]
'1220e3b0'
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from geodetect.errors import ConfigError, PluginError

__all__ = ["MlmModel", "read_mlm", "detector_class", "write_mlm", "mlm_checksum", "saved_models", "add_saved_model",
           "remove_saved_model", "load_saved_models", "LAYOUTS", "MLM_SCHEMA"]

MLM_SCHEMA = "https://stac-extensions.github.io/mlm/v1.4.0/schema.json"
FILE_SCHEMA = "https://stac-extensions.github.io/file/v2.1.0/schema.json"

_CLASSIFICATION = {"classification", "scene-classification"}
_SEGMENTATION = {"semantic-segmentation", "segmentation"}
_DETECTION = {"object-detection", "detection"}
_KEYPOINTS = {"keypoint-detection"}
#: layout name -> (result type, accepted dim orders)
LAYOUTS = {
    "labels": ("Labels", (("batch", "class"),)),
    "mask": ("Mask", (("batch", "class", "height", "width"), ("batch", "height", "width", "class"))),
    "boxes": ("Boxes", (("batch", "detection", "attribute"),)),
    "points": ("Points", (("batch", "detection", "attribute"),)),
}
_CHANNELS_FIRST = ("batch", "channel", "height", "width")
_CHANNELS_LAST = ("batch", "height", "width", "channel")
_SCALING_TYPES = ("min-max", "z-score", "clip", "clip-min", "clip-max", "offset", "scale")


@dataclass(frozen=True)
class MlmModel:
    """An MLM document read and checked: everything needed to build and run its detector."""

    path: str  # the MLM document
    onnx_path: str
    sha256: str
    spec: object  # DetectorSpec
    input_name: str | None
    channels_first: bool
    input_hw: tuple[int | None, int | None]
    batch: int | None  # fixed batch size of the model, None when free
    input_dtype: str
    band_scaling: tuple = ()  # per band ((op, a, b), ...) applied in predict when the host's scaling is "none"
    output_name: str | None = None
    layout: str = "mask"
    mask_channels_first: bool = False
    activation: str = "none"
    score_threshold: float = 0.5
    extra: dict = field(default_factory=dict, compare=False)


def mlm_checksum(data: bytes) -> str:
    """The ``file:checksum`` of bytes: a sha2-256 multihash in hex (``1220`` + the digest)."""
    return "1220" + hashlib.sha256(data).hexdigest()


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())


def _bad(path, msg: str) -> PluginError:
    return PluginError(f"MLM model {path}: {msg}")


def _load_doc(path) -> tuple[dict, Path]:
    p = Path(os.fspath(path))
    if str(path).startswith(("http://", "https://")):
        raise PluginError(f"MLM model {path}: documents and weights are read from local files only (geodetect never "
                          "downloads weights); download the document and its .onnx and add the local copy")
    if not p.is_file():
        raise PluginError(f"MLM model {p}: no such file; give the path of the MLM JSON document")
    try:
        doc = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise _bad(p, f"not a JSON document ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("properties"), dict):
        raise _bad(p, "not a STAC Item (no 'properties'); an MLM document is a STAC Item with mlm:* properties")
    return doc, p


def _model_asset(doc: dict, p: Path) -> tuple[str, dict]:
    assets = doc.get("assets") or {}
    cands = [(k, a) for k, a in assets.items() if "mlm:model" in (a.get("roles") or [])]
    if not cands:
        cands = [(k, a) for k, a in assets.items() if str(a.get("href", "")).lower().endswith(".onnx")]
    if len(cands) != 1:
        raise _bad(p, f"needs exactly one asset with role 'mlm:model' (the .onnx file), found {len(cands)}")
    return cands[0]


def _onnx_of(doc: dict, p: Path) -> tuple[Path, str]:
    key, asset = _model_asset(doc, p)
    href = str(asset.get("href", ""))
    if re.match(r"^[a-z][a-z0-9+.-]*://", href) and not href.startswith("file://"):
        raise _bad(p, f"asset {key!r} points at {href}: weights are never fetched from the network; download the "
                      "file, put it beside the document and make href a relative path")
    art = str(asset.get("mlm:artifact_type") or doc["properties"].get("mlm:framework") or "onnx").lower()
    if "onnx" not in art and not href.lower().endswith(".onnx"):
        raise _bad(p, f"asset {key!r} is a {art!r} artifact; geodetect runs ONNX models only (export it to ONNX)")
    onnx_path = Path(href[len("file://"):] if href.startswith("file://") else href)
    if not onnx_path.is_absolute():
        onnx_path = (p.parent / onnx_path).resolve()
    checksum = str(asset.get("file:checksum") or "").lower()
    if not checksum:
        raise _bad(p, f"asset {key!r} has no file:checksum; refusing to load unverified weights (add the sha2-256 "
                      "multihash: '1220' + the file's sha256)")
    if not (checksum.startswith("1220") and len(checksum) == 68 and re.fullmatch(r"[0-9a-f]+", checksum)):
        raise _bad(p, f"asset {key!r}: file:checksum {checksum[:16]}... is not a sha2-256 multihash ('1220' + 64 hex "
                      "digits); other hash functions are not supported")
    return onnx_path, checksum[4:]


def _dims(obj: dict, what: str, p: Path) -> tuple[list, tuple]:
    shape = list(obj.get("shape") or [])
    order = tuple(str(d).lower() for d in (obj.get("dim_order") or []))
    if not shape or len(shape) != len(order):
        raise _bad(p, f"{what} needs 'shape' and 'dim_order' of the same length, got {shape} and {list(order)}")
    try:
        shape = [int(v) for v in shape]
    except (TypeError, ValueError):
        raise _bad(p, f"{what} shape must be integers (-1 for a free size), got {shape}") from None
    return shape, order


def _band_names(inp: dict) -> list:
    out = []
    for b in inp.get("bands") or []:
        name = b.get("name") if isinstance(b, dict) else b
        if name is not None:
            out.append(str(name).strip().lower())
    return out


def _value_scaling(vs, n: int, p: Path) -> list[tuple]:
    if not vs:
        return []
    if isinstance(vs, dict):
        vs = [vs]
    if len(vs) not in (1, n):
        raise _bad(p, f"value_scaling has {len(vs)} entries; give one for all bands or one per band ({n})")
    ops = []
    for v in vs:
        t = str(v.get("type", "")).lower()
        try:
            if t == "min-max":
                lo, hi = float(v["minimum"]), float(v["maximum"])
                if not hi > lo:
                    raise _bad(p, f"value_scaling min-max needs maximum > minimum, got {lo}..{hi}")
                ops.append(("affine", lo, 1.0 / (hi - lo)))
            elif t == "z-score":
                sd = float(v["stddev"])
                if not sd > 0:
                    raise _bad(p, f"value_scaling z-score needs stddev > 0, got {sd}")
                ops.append(("affine", float(v["mean"]), 1.0 / sd))
            elif t == "clip":
                ops.append(("clip", float(v["minimum"]), float(v["maximum"])))
            elif t == "clip-min":
                ops.append(("clip", float(v["minimum"]), float("inf")))
            elif t == "clip-max":
                ops.append(("clip", float("-inf"), float(v["maximum"])))
            elif t == "offset":
                ops.append(("affine", float(v["value"]), 1.0))  # data - value
            elif t == "scale":
                if not float(v["value"]) != 0:
                    raise _bad(p, "value_scaling scale needs a non-zero value")
                ops.append(("affine", 0.0, 1.0 / float(v["value"])))  # data / value
            else:
                raise _bad(p, f"value_scaling type {t!r} is not supported (supported: {', '.join(_SCALING_TYPES)})")
        except KeyError as exc:
            raise _bad(p, f"value_scaling {t!r} lacks {exc.args[0]!r}") from None
    return ops * n if len(ops) == 1 else ops


def _classes(out: dict, p: Path) -> tuple[str, ...]:
    cls = out.get("classification:classes") or []
    if not cls:
        raise _bad(p, "mlm:output[0] needs 'classification:classes' (value and name of each class)")
    try:
        rows = sorted(((int(c.get("value", i)), str(c["name"])) for i, c in enumerate(cls)), key=lambda r: r[0])
    except (KeyError, TypeError, ValueError):
        raise _bad(p, "each of classification:classes needs a 'name' and an integer 'value'") from None
    if [v for v, _ in rows] != list(range(len(rows))):
        raise _bad(p, f"classification:classes values must be 0..{len(rows) - 1} (the model's class ids), got "
                      f"{[v for v, _ in rows]}")
    return tuple(n for _, n in rows)


def read_mlm(path) -> MlmModel:
    """Read and check an MLM document; nothing heavy is imported and the ONNX file is not opened.

    Raises :class:`~geodetect.errors.PluginError` naming what is missing or not supported.
    """
    from geodetect.plugins._types import DetectorSpec, Task, validate_scaling

    doc, p = _load_doc(path)
    props = doc["properties"]
    g = {k.split(":", 1)[1]: v for k, v in props.items() if k.startswith("geodetect:")}
    onnx_path, sha = _onnx_of(doc, p)
    inputs, outputs = props.get("mlm:input") or [], props.get("mlm:output") or []
    if len(inputs) != 1:
        raise _bad(p, f"needs exactly one mlm:input (geodetect gives the model one tile batch), found {len(inputs)}")
    if len(outputs) < 1:
        raise _bad(p, "needs an mlm:output describing the model's result")
    inp, out = inputs[0], outputs[0]
    if inp.get("pre_processing_function"):
        raise _bad(p, "mlm:input pre_processing_function is not supported; express the scaling as value_scaling")
    shape, order = _dims(inp.get("input") or {}, "mlm:input input", p)
    if order == _CHANNELS_FIRST:
        channels_first = True
        n_ch, h, w = shape[1], shape[2], shape[3]
    elif order == _CHANNELS_LAST:
        channels_first = False
        h, w, n_ch = shape[1], shape[2], shape[3]
    else:
        raise _bad(p, f"input dim_order {list(order)} is not supported; use {list(_CHANNELS_FIRST)} or "
                      f"{list(_CHANNELS_LAST)}")
    dtype = str((inp.get("input") or {}).get("data_type") or "float32").lower()
    if dtype not in ("float32", "float16"):
        raise _bad(p, f"input data_type {dtype!r} is not supported (float32, float16)")
    names = _band_names(inp)
    bands = g.get("bands") or names or (list(range(1, n_ch + 1)) if n_ch > 0 else [])
    if not bands:
        raise _bad(p, "mlm:input names no bands and its channel count is free; list the bands")
    if n_ch > 0 and len(bands) != n_ch:
        raise _bad(p, f"mlm:input lists {len(bands)} band(s) ({', '.join(map(str, bands))}) but its shape has {n_ch} "
                      "channel(s); make them agree")
    hw = (h if h > 0 else None, w if w > 0 else None)
    tile = g.get("tile_size")
    if hw[0] is not None or hw[1] is not None:
        if hw[0] != hw[1]:
            raise _bad(p, f"input height and width must be equal (square tiles), got {hw}")
        if tile is not None and int(tile) != hw[0]:
            raise _bad(p, f"geodetect:tile_size {tile} differs from the input shape's {hw[0]}")
        tile = hw[0]
    if tile is None:
        raise _bad(p, "the input shape leaves the tile size free: set geodetect:tile_size")
    tile = int(tile)
    # the result
    tasks = {str(t).lower() for t in (out.get("tasks") or props.get("mlm:tasks") or [])}
    rshape, rorder = _dims(out.get("result") or {}, "mlm:output result", p)
    classes = _classes(out, p)
    want = str(g.get("result", "")).lower()
    if tasks & _CLASSIFICATION and want in ("", "labels"):
        layout, task = "labels", Task.CLASSIFICATION
    elif tasks & _SEGMENTATION and want in ("", "mask"):
        layout, task = "mask", Task.SEGMENTATION
    elif tasks & (_DETECTION | _KEYPOINTS) and rshape and rshape[-1] == 6 and want in ("", "boxes"):
        layout, task = "boxes", Task.BOXES
    elif tasks & (_DETECTION | _KEYPOINTS) and rshape and rshape[-1] == 4 and want in ("", "points"):
        layout, task = "points", Task.POINTS
    else:
        raise _bad(p, f"output tasks {sorted(tasks)} with result shape {rshape} is not a layout geodetect reads; "
                      "supported: classification (N, C), segmentation (N, C, H, W) or (N, H, W, C), detection "
                      "(N, K, 6) boxes [col_min, row_min, col_max, row_max, score, class] or (N, K, 4) points "
                      "[col, row, score, class]")
    if rorder not in LAYOUTS[layout][1]:
        raise _bad(p, f"{layout} result dim_order {list(rorder)} is not supported; use one of "
                      f"{[list(o) for o in LAYOUTS[layout][1]]}")
    mask_cf = layout == "mask" and rorder[1] == "class"
    if layout in ("labels", "mask"):
        c = rshape[1] if (layout == "labels" or mask_cf) else rshape[3]
        if c > 0 and c != len(classes):
            raise _bad(p, f"the result has {c} class channel(s) but classification:classes lists {len(classes)}")
    activation = str(out.get("geodetect:activation") or g.get("activation") or "none").lower()
    if activation not in ("none", "sigmoid", "softmax"):
        raise _bad(p, f"geodetect:activation must be none, sigmoid or softmax, got {activation!r}")
    if out.get("post_processing_function"):
        raise _bad(p, "mlm:output post_processing_function is not supported; bake it into the ONNX graph, or set "
                      "geodetect:activation to sigmoid/softmax")
    # scaling: the host's own when declared, else MLM value_scaling (one min-max for all bands: the host does it)
    band_ops: list = []
    if "scaling" in g:
        sc = g["scaling"]
        scaling = validate_scaling(tuple(sc) if isinstance(sc, list) else sc, lambda m: _bad(p, f"geodetect:{m}"))
    else:
        ops = _value_scaling(inp.get("value_scaling"), len(bands), p)
        if ops and all(o == ops[0] for o in ops) and ops[0][0] == "affine" and ops[0][2] > 0:
            off, fac = ops[0][1], ops[0][2]
            scaling = (off, off + 1.0 / fac)
        else:
            scaling = "none"
            band_ops = ops
    name = _norm_name(props.get("mlm:name") or p.stem)
    gsd_range = g.get("gsd_range")
    kw = dict(
        name=name,
        version=str(g.get("version") or props.get("version") or "0"),
        task=task,
        classes=classes,
        bands=tuple(bands),
        tile_size=tile,
        overlap=int(g.get("overlap", tile // 8)),
        gsd_m=g.get("gsd_m", props.get("gsd")),
        gsd_range=tuple(gsd_range) if gsd_range else None,
        scaling=scaling,
        description=str(props.get("description") or props.get("mlm:architecture") or "ONNX model (STAC MLM)"),
        licence=str(props.get("license") or ""),
        weights_sha256=sha,
        extra={"mlm": str(p)},
    )
    for k in ("threshold", "nms_iou", "merge_radius_px"):
        if k in g:
            kw[k] = float(g[k])
    if "min_polygon_px" in g:
        kw["min_polygon_px"] = int(g["min_polygon_px"])
    if "merge_classes" in g:
        if not isinstance(g["merge_classes"], bool):
            raise _bad(p, f"geodetect:merge_classes must be true or false, got {g['merge_classes']!r}")
        kw["merge_classes"] = g["merge_classes"]
    try:
        spec = DetectorSpec(**kw)
    except (TypeError, ValueError) as exc:
        raise _bad(p, str(exc)) from None
    batch = shape[0] if shape[0] > 0 else None
    try:
        score_thr = float(g.get("score_threshold", 0.5))
    except (TypeError, ValueError):
        raise _bad(p, f"geodetect:score_threshold must be a number, got {g.get('score_threshold')!r}") from None
    return MlmModel(str(p), str(onnx_path), sha, spec, inp.get("name") or None, channels_first, hw, batch, dtype,
                    tuple(band_ops), out.get("name") or None, layout, mask_cf, activation, score_thr)


def detector_class(path):
    """A :class:`~geodetect.plugins.Detector` class for the MLM document at ``path`` (not yet loaded).

    Its module-level use makes an entry point of an MLM file: in a package,
    ``Trees = geodetect.mlm.detector_class(Path(__file__).with_name("trees.json"))``
    and ``[project.entry-points."geodetect.detectors"] trees = "mypkg:Trees"``.
    """
    from geodetect.onnx import OnnxDetector

    model = read_mlm(path)
    cls_name = "Mlm_" + re.sub(r"\W", "_", model.spec.name)
    return type(cls_name, (OnnxDetector,), {"spec": model.spec, "mlm": model, "__module__": "geodetect.onnx",
                                             "__doc__": f"ONNX detector from the MLM document {model.path}"})


def write_mlm(path, *, spec, onnx_file, input_shape, input_dim_order, result_shape, result_dim_order, tasks,
              value_scaling=None, activation: str = "none", score_threshold: float | None = None,
              framework: str = "ONNX", architecture: str = "", extra_properties: dict | None = None) -> Path:
    """Write the MLM document of an ONNX file for ``spec`` (a DetectorSpec); ``onnx_file`` is hashed now.

    The document is a STAC Item (no geometry: a model is not a place) whose asset ``model`` is the
    ONNX file, referred to by its name relative to the document.
    """
    path = Path(os.fspath(path))
    onnx_file = Path(os.fspath(onnx_file))
    data = onnx_file.read_bytes()
    named = all(isinstance(b, str) for b in spec.bands)
    bands = list(spec.bands) if named else []
    props = {
        "datetime": None,
        "start_datetime": "1970-01-01T00:00:00Z",
        "end_datetime": "1970-01-01T00:00:00Z",
        "description": spec.description,
        "mlm:name": spec.name,
        "mlm:architecture": architecture or spec.name,
        "mlm:tasks": list(tasks),
        "mlm:framework": framework,
        "mlm:accelerator": "amd64",
        "mlm:accelerator_constrained": False,
        "mlm:input": [{
            "name": "tiles",
            "bands": bands,
            "input": {"shape": list(input_shape), "dim_order": list(input_dim_order), "data_type": "float32"},
            "value_scaling": value_scaling,
            "resize_type": None,
            "pre_processing_function": None,
        }],
        "mlm:output": [{
            "name": "result",
            "tasks": list(tasks),
            "result": {"shape": list(result_shape), "dim_order": list(result_dim_order), "data_type": "float32"},
            "classification:classes": [{"value": i, "name": c} for i, c in enumerate(spec.classes)],
            "post_processing_function": None,
            "geodetect:activation": activation,
        }],
        "version": spec.version,
        "license": spec.licence or "other",
        "geodetect:tile_size": spec.tile_size,
        "geodetect:overlap": spec.overlap,
        "geodetect:threshold": spec.threshold,
        "geodetect:nms_iou": spec.nms_iou,
        "geodetect:merge_radius_px": spec.merge_radius_px,
        "geodetect:min_polygon_px": spec.min_polygon_px,
        "geodetect:merge_classes": spec.merge_classes,
        "geodetect:scaling": list(spec.scaling) if isinstance(spec.scaling, tuple) else spec.scaling,
    }
    if not named:
        props["geodetect:bands"] = list(spec.bands)
    if spec.gsd_m is not None:
        props["geodetect:gsd_m"] = spec.gsd_m
    if spec.gsd_range is not None:
        props["geodetect:gsd_range"] = list(spec.gsd_range)
    if score_threshold is not None:
        props["geodetect:score_threshold"] = float(score_threshold)
    props.update(extra_properties or {})
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [MLM_SCHEMA, FILE_SCHEMA],
        "id": spec.name,
        "geometry": None,
        "properties": props,
        "links": [],
        "assets": {
            "model": {
                "href": os.path.relpath(onnx_file.resolve(), path.resolve().parent),
                "type": "application/octet-stream; application=onnx",
                "title": f"{spec.name} {spec.version} (ONNX)",
                "roles": ["mlm:model", "mlm:weights"],
                "mlm:artifact_type": "onnx",
                "file:size": len(data),
                "file:checksum": mlm_checksum(data),
            }
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


# ---------------------------------------------------------------- models added with `geodetect detectors add`

def _config_file() -> Path:
    base = os.environ.get("GEODETECT_CONFIG_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config"),
                            "geodetect")
    return Path(base) / "models.json"


def saved_models() -> list[str]:
    """Paths of the MLM documents added with ``geodetect detectors add`` (the user's ``models.json``)."""
    f = _config_file()
    try:
        data = json.loads(f.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{f}: cannot be read ({exc}); fix or delete it") from None
    return [str(m) for m in data.get("models", [])]


def _write_saved(models: list[str]) -> Path:
    from geodetect._atomic import atomic_output

    f = _config_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(f, what="the model list") as tmp:
        Path(tmp).write_text(json.dumps({"models": models}, indent=1) + "\n")
    return f


def add_saved_model(path) -> tuple[object, Path]:
    """Check an MLM document (read, checksum, load and run on random tiles) and add it to the user's list.

    Returns (its DetectorSpec, the list file). A name already taken by another detector is refused.
    """
    from geodetect.plugins.registry import list_detectors
    from geodetect.testing import check_detector

    p = Path(os.fspath(path)).resolve()
    cls = detector_class(p)
    check_detector(cls)
    saved = saved_models()
    others = [r for r in list_detectors() if r.name == cls.spec.name and r.target != str(p)]
    if others:
        raise PluginError(f"detector name {cls.spec.name!r} is already taken by {others[0].target}; change mlm:name in {p}")
    if str(p) not in saved:
        saved.append(str(p))
    return cls.spec, _write_saved(saved)


def remove_saved_model(name_or_path: str) -> str:
    """Remove a model from the user's list by detector name or document path; returns the path removed."""
    saved = saved_models()
    for m in saved:
        try:
            name = read_mlm(m).spec.name
        except PluginError:
            name = None
        if name_or_path in (m, name) or os.path.abspath(name_or_path) == m:
            saved.remove(m)
            _write_saved(saved)
            _loaded.pop(m, None)
            return m
    raise ConfigError(f"{name_or_path!r} is not among the added models ({_config_file()}); see `geodetect detectors`")


_loaded: dict[str, object] = {}  # path -> class, or the error message


def load_saved_models(register) -> dict[str, str]:
    """Register (with ``register(cls, replace=True)``) the saved models not yet registered; {path: error} of the broken."""
    errors = {}
    try:
        models = saved_models()
    except ConfigError as exc:
        return {str(_config_file()): str(exc)}
    for m in models:
        got = _loaded.get(m)
        if got is None:
            try:
                got = detector_class(m)
                register(got, replace=True)
            except PluginError as exc:
                got = str(exc)
            _loaded[m] = got
        if isinstance(got, str):
            errors[m] = got
    return errors
