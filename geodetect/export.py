"""Export a Keras detector to an ONNX file and its STAC MLM document (``geodetect detectors export NAME --onnx``).

The Keras model and the detector's decoding that runs in TensorFlow are
traced into one graph (tf2onnx, as Keras' own ``model.export(format="onnx")``
does), with the tile size fixed to the spec's (Keras' UpSampling2D cannot be
traced with free spatial sizes) and a free batch size. The graph's output is
one of the layouts :mod:`geodetect.mlm` documents, so that the exported pair
runs through ``gd.register_model`` with no Python of the plugin:

- SEGMENTATION: the model's per-pixel probabilities, ``batch, height, width, class``;
- CLASSIFICATION: the model's class probabilities, ``batch, class``;
- BOXES: the detector's own decoding in the graph, ``batch, detection, attribute``
  (N, K, 6): col_min, row_min, col_max, row_max, score, class id.

Which detectors can be exported: those whose ``predict`` is the Keras model
(plus, for boxes, a TensorFlow decoding): ``water-segmenter``,
``building-segmenter``, ``land-use-classifier`` (its six classes) and
``vehicle-detector``. ``sea-lion-counter`` is refused (its proposals are a
classical stage in Python; only its patch classifier is a network), and so are
detectors that are not networks (``water-expert-*``).

Needs the ``onnx-export`` extra: ``pip install 'geodetect[tf,onnx-export]'`` (tf2onnx).
"""

from __future__ import annotations

import os
from pathlib import Path

from geodetect.errors import MissingDependencyError, PluginError

__all__ = ["export_onnx", "EXPORTABLE"]

#: built-in detectors known to export, and why the others do not
EXPORTABLE = ("water-segmenter", "building-segmenter", "land-use-classifier", "vehicle-detector")
_REFUSED = {
    "sea-lion-counter": "its proposals come from a classical LoG stage written in Python; only its patch "
                        "classifier is a network, which alone is not the detector",
    "water-expert-optical": "it is an expert method (NDWI + Otsu), not a network",
    "water-expert-sar": "it is an expert method (thresholded backscatter), not a network",
}


def _tf2onnx():
    try:
        import tf2onnx  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("exporting to ONNX needs tf2onnx: pip install 'geodetect[onnx-export]'") from exc
    try:  # tf2onnx 1.17 still uses numpy aliases removed in numpy 2; Keras ships the patch it uses itself
        from keras.src.export.tf2onnx_lib import patch_tf2onnx  # noqa: PLC0415

        patch_tf2onnx()
    except ImportError:
        pass
    return tf2onnx


def _vehicle_head(det, tf, y):
    from geodetect_plugins.vehicle_detector.model import decode

    boxes, scores, classes = decode(tf, y, int(det.max_detections))
    return tf.concat([boxes, scores[..., None], tf.cast(classes, tf.float32)[..., None]], axis=-1)


#: BOXES/POINTS detectors: the TensorFlow decoding that turns the model's output into the documented layout,
#: and the score threshold their predict applies
_HEADS = {"vehicle-detector": (_vehicle_head, "score_threshold")}


def export_onnx(detector, out_dir, *, opset: int = 17) -> tuple[Path, Path]:
    """Write ``<name>.onnx`` and ``<name>.json`` (its MLM document) into ``out_dir``; return both paths.

    ``detector`` is a registered name or a Detector instance holding a Keras model in ``_model``.
    """
    from geodetect.mlm import write_mlm
    from geodetect.plugins._types import Task
    from geodetect.plugins.registry import resolve_detector
    from geodetect.plugins.weights import import_tensorflow

    name = detector if isinstance(detector, str) else detector.spec.name
    if name in _REFUSED:
        raise PluginError(f"detector {name!r} cannot be exported to ONNX: {_REFUSED[name]}")
    det = resolve_detector(detector)
    spec = det.spec
    model = getattr(det, "_model", None)
    if model is None or not hasattr(model, "input_shape"):
        raise PluginError(f"detector {name!r} cannot be exported to ONNX: it holds no Keras model (only detectors whose "
                          f"predict is a Keras model export; built-in ones: {', '.join(EXPORTABLE)})")
    if getattr(det, "grouping", None):
        raise PluginError(f"detector {name!r}: export the six-class model (no grouping); grouping is applied in Python")
    tf = import_tensorflow()
    tf2onnx = _tf2onnx()
    size, c = spec.tile_size, spec.n_bands
    sig = (tf.TensorSpec([None, size, size, c], tf.float32, name="tiles"),)
    task = spec.task
    score_threshold = None
    if task is Task.SEGMENTATION:
        def fn(x):
            return model(x, training=False)
        tasks, rorder, rshape = ["semantic-segmentation"], ["batch", "height", "width", "class"], [-1, size, size, spec.n_classes]
    elif task is Task.CLASSIFICATION:
        def fn(x):
            return model(x, training=False)
        tasks, rorder, rshape = ["classification", "scene-classification"], ["batch", "class"], [-1, spec.n_classes]
    elif name in _HEADS:
        head, thr_attr = _HEADS[name]
        score_threshold = float(getattr(det, thr_attr))

        def fn(x):
            return head(det, tf, model(x, training=False))
        width = 6 if task is Task.BOXES else 4
        tasks, rorder, rshape = ["object-detection"], ["batch", "detection", "attribute"], [-1, -1, width]
    else:
        raise PluginError(f"detector {name!r} ({task.name}) cannot be exported to ONNX: geodetect does not know how to "
                          "put its decoding into the graph")
    out = Path(os.fspath(out_dir))
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{name}.onnx"
    func = tf.function(fn, input_signature=sig, autograph=False)
    try:
        # freeze every captured variable and tensor into constants first: tf2onnx's from_function leaves
        # captured tensors (Keras Normalization's mean and variance) as extra graph inputs
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        frozen = convert_variables_to_constants_v2(func.get_concrete_function())
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=[t.name for t in frozen.inputs],
            output_names=[t.name for t in frozen.outputs], opset=opset)
    except Exception as exc:  # noqa: BLE001 - tf2onnx's many errors
        raise PluginError(f"detector {name!r}: tf2onnx could not convert the model: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:300]}") from exc
    tmp = onnx_path.with_suffix(".onnx.part")
    tmp.write_bytes(proto.SerializeToString())
    os.replace(tmp, onnx_path)
    doc = write_mlm(
        out / f"{name}.json", spec=spec, onnx_file=onnx_path,
        input_shape=[-1, size, size, c], input_dim_order=["batch", "height", "width", "channel"],
        result_shape=rshape, result_dim_order=rorder, tasks=tasks,
        value_scaling=_value_scaling(spec.scaling), score_threshold=score_threshold,
        architecture=getattr(model, "name", name),
        extra_properties={"mlm:total_parameters": int(model.count_params()),
                          "mlm:pretrained": True, "mlm:pretrained_source": f"geodetect built-in detector {name}"},
    )
    return onnx_path, doc


def _value_scaling(scaling):
    """MLM value_scaling for tools other than geodetect (geodetect reads geodetect:scaling, which is exact)."""
    if scaling == "dtype":  # uint8 imagery, what the built-in detectors take
        return [{"type": "min-max", "minimum": 0, "maximum": 255}]
    if isinstance(scaling, tuple):
        return [{"type": "min-max", "minimum": scaling[0], "maximum": scaling[1]}]
    return None
