"""Model weights: files beside the plugin, checked against a sha256 before use.

Nothing is ever downloaded. Keras models are loaded in safe mode (no
arbitrary code from the file), and never from pickles.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from geodetect.errors import MissingDependencyError, PluginError

__all__ = ["sha256_of", "verify_weights", "load_keras_model", "import_tensorflow", "save_keras_reproducible",
           "configure_tensorflow", "compiled_keras_model", "tta_model", "tta_views"]


def sha256_of(path) -> str:
    """Hex sha256 of a file, read in 1 MB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_weights(path, sha256: str | None, *, detector: str = "?") -> Path:
    """Return ``path`` if it exists and its sha256 matches; otherwise a PluginError saying what to do."""
    p = Path(os.fspath(path))
    if not p.is_file():
        raise PluginError(
            f"detector {detector!r}: weights file {p} is missing; reinstall the plugin package "
            "(weights ship beside the plugin, geodetect never downloads them)"
        )
    if not sha256:
        raise PluginError(f"detector {detector!r}: no sha256 declared for {p.name}; refusing to load unverified weights")
    got = sha256_of(p)
    if got != sha256.lower():
        raise PluginError(
            f"detector {detector!r}: weights {p} have sha256 {got[:12]}..., expected {sha256[:12]}...; "
            "the file is corrupt or was replaced: reinstall the plugin"
        )
    return p


def _load_sqlite_users_first() -> None:
    """Load Python's sqlite3 and GDAL (pyogrio's, rasterio's) before TensorFlow.

    TensorFlow makes its symbols global and carries its own SQLite, built without the R-tree module.
    A SQLite user loaded after it binds to that copy: GDAL then writes GeoPackages with no spatial
    index, silently, and sqlite3 cannot open their R-tree ("no such module: rtree"). Libraries
    loaded first keep their own SQLite.
    """
    import importlib

    for name in ("sqlite3", "pyogrio", "rasterio"):
        try:
            importlib.import_module(name)
        except ImportError:  # not installed: nothing of it to protect
            pass


def import_tensorflow():
    """Import TensorFlow without its C++ start-up chatter on stderr, or say which extra to install.

    TensorFlow's native logging (oneDNN notices, absl's "log messages before
    InitializeLog") ignores TF_CPP_MIN_LOG_LEVEL at import time, so the
    process's stderr is pointed at /dev/null for the import only. Python
    exceptions are unaffected. ``GEODETECT_TF_THREADS=N`` caps TensorFlow's
    thread pools (Spark tasks set it to their ``spark.task.cpus``, so that
    several tasks on one machine do not oversubscribe its cores).
    """
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    _load_sqlite_users_first()
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:  # no real fd 2 (some notebooks): import with the chatter
        saved = None
    try:
        import tensorflow as tf  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError(
            "this detector needs TensorFlow: pip install 'geodetect[tf]' (tensorflow-cpu)"
        ) from exc
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
    threads = os.environ.get("GEODETECT_TF_THREADS")
    if threads and threads.isdigit() and int(threads) > 0:
        try:  # only possible before TensorFlow's runtime starts; later calls are ignored
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:
            pass
    return tf


def load_keras_model(path, sha256: str | None, *, detector: str = "?"):
    """Verify and load a ``.keras`` model in safe mode, without compiling it."""
    p = verify_weights(path, sha256, detector=detector)
    if p.suffix != ".keras":
        raise PluginError(f"detector {detector!r}: {p.name}: only .keras model files are loaded (no pickles, no HDF5)")
    tf = import_tensorflow()
    try:
        return tf.keras.models.load_model(p, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"detector {detector!r}: could not load {p.name}: {type(exc).__name__}: {exc}") from exc


def save_keras_reproducible(model, path) -> str:
    """Save a Keras model to ``path`` so that equal weights give an equal file; return its sha256.

    Keras stamps the save time into ``metadata.json`` and numbers shared objects
    in ``config.json`` by Python ``id()`` (different in every process); both are
    set to fixed values, zip timestamps are fixed and entries sorted. Nothing the
    loader uses changes. The file is written atomically.
    """
    import io
    import json
    import tempfile
    import zipfile

    path = Path(os.fspath(path))
    ids: dict[int, int] = {}

    def renumber(obj):
        if isinstance(obj, dict):
            return {k: (ids.setdefault(v, len(ids) + 1) if k == "shared_object_id" and isinstance(v, int)
                        else renumber(v)) for k, v in obj.items()}
        if isinstance(obj, list):
            return [renumber(v) for v in obj]
        return obj

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "model.keras"
        model.save(raw)
        with zipfile.ZipFile(raw) as z:
            items = [(i.filename, z.read(i.filename)) for i in z.infolist()]
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for name, data in sorted(items):
                if name == "metadata.json":
                    meta = json.loads(data)
                    meta["date_saved"] = "1980-01-01@00:00:00"
                    data = json.dumps(meta, sort_keys=True).encode()
                elif name == "config.json":
                    data = json.dumps(renumber(json.loads(data))).encode()
                info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        part = Path(tmp) / "out.keras"
        part.write_bytes(buf.getvalue())
        os.replace(part, path)
    return sha256_of(path)


def configure_tensorflow(threads: int = 1, *, seed: int | None = None):
    """TensorFlow for training and evaluation scripts: ``threads`` intra-op threads, one inter-op.

    With ``seed``, Python, NumPy and TensorFlow are seeded and TensorFlow's ops made
    deterministic, so that a training command gives the same weights (and, saved
    with :func:`save_keras_reproducible`, the same file) every time. Thread
    settings are ignored when TensorFlow has already started in this process.
    """
    tf = import_tensorflow()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
    if seed is not None:
        tf.keras.utils.set_random_seed(int(seed))
        tf.config.experimental.enable_op_determinism()
    return tf


def compiled_keras_model(path, sha256: str | None, *, detector: str = "?"):
    """``(model, run)``: a hash-checked Keras model and its inference as a compiled ``tf.function``."""
    tf = import_tensorflow()
    model = load_keras_model(path, sha256, detector=detector)

    @tf.function(reduce_retracing=True)
    def run(x):
        return model(x, training=False)

    return model, run


def tta_views(value, *, detector: str) -> int:
    """A detector's ``tta`` option checked: 1, 4 or 8 views (see :func:`tta_model`), else a ConfigError naming it."""
    from geodetect.errors import ConfigError

    if str(value) not in ("1", "4", "8"):
        raise ConfigError(f"{detector}: tta must be 1, 4 or 8 (views averaged per tile), got {value!r}")
    return int(value)


def tta_model(net, views: int):
    """A Keras model sharing ``net``'s weights: the mean of its outputs over ``views`` (4 or 8) views of a tile.

    4: the tile as is, flipped left-right, up-down and both; 8: the same four on the tile's transpose too
    (every flip and 90-degree rotation; a transposed view needs a square tile when ``net``'s input size is
    fixed). ``net`` maps a tile to a map on the same grid or a coarser one (a stride that divides the tile,
    as the sea-lion counter's 4 px cells): each view's output is flipped (and transposed) back before the
    mean, so it lines up with the tile's pixels. Being a Keras model, it is what a detector's ``predict``
    compiles and what ``geodetect detectors export --onnx`` traces (building-segmenter, sea-lion-counter).
    """
    keras = import_tensorflow().keras
    ops = keras.ops

    def four(x):
        return [net(x),
                ops.flip(net(ops.flip(x, 2)), 2),
                ops.flip(net(ops.flip(x, 1)), 1),
                ops.flip(ops.flip(net(ops.flip(ops.flip(x, 1), 2)), 2), 1)]

    inp = keras.Input(tuple(net.input_shape[1:]), name="tiles")
    outs = four(inp)
    if views == 8:
        outs += [ops.transpose(o, (0, 2, 1, 3)) for o in four(ops.transpose(inp, (0, 2, 1, 3)))]
    return keras.Model(inp, ops.mean(ops.stack(outs, axis=0), axis=0), name=f"{net.name}_tta{views}")
