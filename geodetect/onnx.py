"""Running ONNX models as detectors: :class:`OnnxDetector`, built from an MLM document by :mod:`geodetect.mlm`.

onnxruntime is imported in :meth:`OnnxDetector.load`, never at import time. The
weights are verified against the document's checksum before the session is
made; the CUDA provider is used when onnxruntime has it, the CPU one otherwise.
``GEODETECT_ORT_THREADS=N`` caps onnxruntime's intra-op threads (Spark tasks set
it like ``GEODETECT_TF_THREADS``). onnxruntime's threads do not spin-wait between
calls: in ``gd.detect`` the tile reader thread decodes the next batch while the
model runs, and spinning threads took its core (bench/remote_bench.py, ONNX figure:
0.78 with spinning, 0.88 without, same loaded machine, alternated runs).
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from geodetect.errors import MissingDependencyError, PluginError
from geodetect.plugins._types import Boxes, Detector, Labels, Mask, Points

__all__ = ["OnnxDetector", "import_onnxruntime", "session_for"]


def import_onnxruntime():
    """``onnxruntime``, or an error naming the package to install."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("ONNX detectors need onnxruntime: pip install onnxruntime") from exc
    return ort


def session_for(path, *, threads: int | None = None):
    """An onnxruntime InferenceSession of ``path`` on the best provider available (CUDA, else CPU)."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    env = os.environ.get("GEODETECT_ORT_THREADS") or os.environ.get("GEODETECT_TF_THREADS")
    n = threads if threads is not None else (int(env) if env and env.isdigit() and int(env) > 0 else 0)
    if n:
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    avail = ort.get_available_providers()
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in avail] or avail
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class OnnxDetector(Detector):
    """A detector whose model is an ONNX file described by an MLM document (see :mod:`geodetect.mlm`).

    Subclasses are made by :func:`geodetect.mlm.detector_class`; they carry the class
    attributes ``spec`` and ``mlm`` (a :class:`geodetect.mlm.MlmModel`).
    """

    mlm: ClassVar[object]

    def __init__(self):
        self._session = None
        self._in = self._out = None

    def load(self) -> None:
        from geodetect.plugins.weights import verify_weights

        m = self.mlm
        verify_weights(m.onnx_path, m.sha256, detector=self.spec.name)
        try:
            sess = session_for(m.onnx_path)
        except MissingDependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own errors
            raise PluginError(f"detector {self.spec.name!r}: onnxruntime cannot load {m.onnx_path}: "
                              f"{' '.join(str(exc).split())[:300]}") from exc
        ins = sess.get_inputs()
        names = [i.name for i in ins]
        if len(ins) != 1 and m.input_name not in names:
            raise PluginError(f"detector {self.spec.name!r}: the model has inputs {names}; mlm:input name must be one")
        self._in = m.input_name if m.input_name in names else names[0]
        outs = [o.name for o in sess.get_outputs()]
        if m.output_name in outs:
            self._out = m.output_name
        elif len(outs) == 1 or m.output_name is None:
            self._out = outs[0]
        else:
            raise PluginError(f"detector {self.spec.name!r}: the model has outputs {outs}; mlm:output name "
                              f"{m.output_name!r} is none of them")
        shape = next(i.shape for i in ins if i.name == self._in)
        if len(shape) != 4:
            raise PluginError(f"detector {self.spec.name!r}: the model's input has shape {shape}; expected 4 dimensions")
        ch = shape[1] if m.channels_first else shape[3]
        self._channels = ch if isinstance(ch, int) else None
        self._session = sess

    def input_channels(self) -> int | None:
        return getattr(self, "_channels", None)

    def release_working_memory(self) -> None:
        """Give back the memory onnxruntime keeps for its batches (its arena grows to the largest batch and stays).

        The pipeline calls this after the last tile of a big segmentation scene, before the mask is polygonised:
        one run of one zero tile with arena shrinkage (about an eighth of a batch of work) frees the arena's
        unused chunks.
        """
        shape = getattr(self, "_last_input", None)
        if self._session is None or shape is None:
            return
        ort = import_onnxruntime()
        opts = ort.RunOptions()
        opts.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        shape, dtype = shape
        x = np.zeros((self.mlm.batch or 1,) + shape[1:], dtype)
        self._session.run([self._out], {self._in: x}, opts)

    def _run(self, x: np.ndarray) -> np.ndarray:
        m = self.mlm
        if m.input_dtype == "float16":
            x = x.astype(np.float16)
        self._last_input = (x.shape, x.dtype)
        if m.batch is None:
            return np.asarray(self._session.run([self._out], {self._in: x})[0])
        parts = []
        for i in range(0, len(x), m.batch):  # a model with a fixed batch: pad the last chunk
            chunk = x[i : i + m.batch]
            k = len(chunk)
            if k < m.batch:
                chunk = np.concatenate([chunk, np.zeros((m.batch - k,) + chunk.shape[1:], chunk.dtype)])
            parts.append(np.asarray(self._session.run([self._out], {self._in: chunk})[0])[:k])
        return np.concatenate(parts)

    def predict(self, tiles: np.ndarray) -> list:
        if self._session is None:
            self.ensure_loaded()
        m = self.mlm
        x = np.asarray(tiles, np.float32)
        n, h, w, c = x.shape
        want = m.input_hw
        if (want[0] is not None and h != want[0]) or (want[1] is not None and w != want[1]):
            raise PluginError(f"detector {self.spec.name!r}: the model takes {want[0]} x {want[1]} tiles, got {h} x {w}; "
                              "keep the detector's tile size (no --tile-size)")
        if m.band_scaling:
            x = x.copy()
            for k, (op, a, b) in enumerate(m.band_scaling):
                if op == "affine":
                    x[..., k] = (x[..., k] - np.float32(a)) * np.float32(b)
                else:
                    np.clip(x[..., k], a, b, out=x[..., k])
        if m.channels_first:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = self._run(x).astype(np.float32, copy=False)
        if len(y) != n:
            raise PluginError(f"detector {self.spec.name!r}: the model gave {len(y)} results for {n} tiles")
        return self._results(y, h, w)

    def _results(self, y: np.ndarray, h: int, w: int) -> list:
        m = self.mlm
        name = self.spec.name
        if m.layout == "labels":
            if y.ndim != 2:
                raise PluginError(f"detector {name!r}: classification output has shape {y.shape}; expected (N, C)")
            if m.activation == "softmax":
                y = _softmax(y, 1)
            elif m.activation == "sigmoid":
                y = 1 / (1 + np.exp(-y))
            return [Labels(r) for r in y]
        if m.layout == "mask":
            if y.ndim != 4:
                raise PluginError(f"detector {name!r}: segmentation output has shape {y.shape}; expected 4 dimensions")
            if m.mask_channels_first:
                y = y.transpose(0, 2, 3, 1)
            if y.shape[1:3] != (h, w):
                raise PluginError(f"detector {name!r}: the mask is {y.shape[1]} x {y.shape[2]} for {h} x {w} tiles; "
                                  "the model must give one value per input pixel")
            if m.activation == "softmax":
                y = _softmax(y, 3)
            elif m.activation == "sigmoid":
                y = 1 / (1 + np.exp(-y))
            return [Mask(p) for p in y]
        width = 6 if m.layout == "boxes" else 4
        if y.ndim != 3 or y.shape[2] != width:
            raise PluginError(f"detector {name!r}: {m.layout} output has shape {y.shape}; expected (N, K, {width})")
        out = []
        thr = np.float32(m.score_threshold)
        for r in y:
            score = r[:, width - 2]
            if m.activation == "sigmoid":
                score = 1 / (1 + np.exp(-score))
            keep = score >= thr
            r, score = r[keep], score[keep]
            cls = np.rint(r[:, width - 1]).astype(np.int64)
            if m.layout == "boxes":
                out.append(Boxes(r[:, :4].astype(np.float64), cls, score))
            else:
                out.append(Points(r[:, :2].astype(np.float64), cls, score))
        return out

    def __reduce__(self):
        # a detector class made at run time cannot be pickled by reference: rebuild it from its document
        return (_rebuild, (self.mlm.path,))


def _rebuild(path):
    from geodetect.mlm import detector_class

    return detector_class(path)()
