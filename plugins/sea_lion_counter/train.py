"""Train the sea-lion counter's patch classifier on simulated rookeries.

    python -m geodetect_plugins.sea_lion_counter.train                # shipped weights -> sea_lion_cnn.keras
    python -m geodetect_plugins.sea_lion_counter.train --baseline     # the seed blog's CNN, for the model card
    python -m geodetect_plugins.sea_lion_counter.train --smoke --out /tmp/x.keras   # one step, seconds (CI)

Reproducible: fixed seeds for the scenes (``dataset.TRAIN_SEEDS``/``VAL_SEEDS``,
disjoint from the evaluation seeds), the patch sampling, the weights and the
augmentation, and TensorFlow's deterministic ops. The ``.keras`` file is a zip
whose entries carry timestamps, so two runs give the same weights but not the
same file hash: after retraining, put the printed sha256 into
``WEIGHTS_SHA256`` in ``__init__.py``.

Patches: see :mod:`geodetect_plugins.sea_lion_counter.dataset`. Two rounds
for the shipped network: 6 epochs on those patches, then 2 epochs more with
the training scenes' proposals the round-1 model still gets wrong or unsure
(P(true class) < 0.7: mostly tan rocks and bull/subadult mix-ups) added three
times over. The seed baseline is trained the blog's way: one round, Adam at
its default rate. Augmentation:
the 8 rotations/flips (aerial views have no "up"), brightness x0.85-1.15, a
colour cast of +-4 %, a little noise, and now and then a strip of repeated
edge pixels, as patches cut at a tile edge have. Threads: 2 intra-op, 1
inter-op by default (``--threads``).
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


def make_patches(seeds, base_seed: int, *, size: int | None = None, log=print, keep_scenes: bool = False):
    """Patches and labels of the scenes ``seeds`` (deterministic); with ``keep_scenes`` also the scenes."""
    from geodetect_plugins.sea_lion_counter.dataset import render, scene_patches

    xs, ys, scenes = [], [], []
    for k, s in enumerate(seeds):
        over = {"size": (size, size), "n_objects": 12} if size else {}
        sc = render(s, **over)
        x, y = scene_patches(sc, np.random.default_rng([base_seed, s]))
        xs.append(x)
        ys.append(y)
        if keep_scenes:
            scenes.append(sc)
        if log and (k % 8 == 0 or k == len(seeds) - 1):
            log(f"  scene {k + 1}/{len(seeds)} (seed {s}): {len(sc.xy)} animals, {len(y)} patches")
    return np.concatenate(xs), np.concatenate(ys), scenes


def mine_hard(model, scenes, *, below: float = 0.7, log=print):
    """Every labelled proposal of ``scenes`` the model gets wrong or unsure (P(true class) < ``below``)."""
    from geodetect_plugins.sea_lion_counter import cut_patches, propose
    from geodetect_plugins.sea_lion_counter.dataset import label_proposals

    xs, ys = [], []
    for sc in scenes:
        pxy, *_ = propose(sc.image, max_proposals=1 << 30)
        lab = label_proposals(pxy, sc.xy, sc.class_ids, sc.length_px)
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
        gain = tf.random.uniform([], 0.85, 1.15) * tf.random.uniform([3], 0.96, 1.04)
        x = x * gain + tf.random.normal(tf.shape(x), 0.0, 1.0) * tf.random.uniform([], 0.0, 0.012)
        return tf.clip_by_value(x, 0.0, 1.0), y

    return aug


def train(kind: str, out: Path, *, n_scenes: int, n_val: int, epochs: int, batch: int, seed: int, threads: int,
          mine: bool = True, mine_epochs: int = 2, smoke: bool = False, log=print) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised in this process
        pass
    import keras

    from geodetect.plugins.weights import sha256_of
    from geodetect_plugins.sea_lion_counter.dataset import TRAIN_SEEDS, VAL_SEEDS
    from geodetect_plugins.sea_lion_counter.model import PATCH_CLASSES, build

    t0 = time.time()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    log(f"[{kind}] simulating {n_scenes} training + {n_val} validation scenes")
    size = 256 if smoke else None
    xtr, ytr, scenes = make_patches(TRAIN_SEEDS[:n_scenes], seed, size=size, log=log, keep_scenes=mine)
    if n_val:
        xva, yva, _ = make_patches(VAL_SEEDS[:n_val], seed + 1, size=size, log=None)
    else:
        xva, yva = np.zeros((0, 64, 64, 3), np.uint8), np.zeros(0, np.int64)
    log(f"[{kind}] {len(ytr)} training patches {np.bincount(ytr, minlength=6).tolist()}, "
        f"{len(yva)} validation; data {time.time() - t0:.0f} s")
    model = build(kind)
    steps = 1 if smoke else int(np.ceil(len(ytr) / batch)) * epochs
    if kind == "baseline":
        opt = keras.optimizers.Adam(1e-3)  # as the blog: Adam, default rate
    else:
        opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.02))
    model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    def dataset(x, y):
        return (tf.data.Dataset.from_tensor_slices((x, y))
                .shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
                .map(_augment_fn(tf), num_parallel_calls=None, deterministic=True)
                .batch(batch)
                .prefetch(2))

    ds = dataset(xtr, ytr)
    val = tf.data.Dataset.from_tensor_slices((xva.astype(np.float32) / 255.0, yva)).batch(256)
    t1 = time.time()
    if smoke:
        model.fit(ds.take(1), epochs=1, verbose=0)
    else:
        model.fit(ds, epochs=epochs, validation_data=val, verbose=2)
    if mine and scenes:
        # round 2: what the model still gets wrong on its own training scenes (tan rocks, rims of
        # bodies, bulls vs subadults), three times over, on top of the round-1 patches
        log(f"[{kind}] hard-example mining on the {len(scenes)} training scenes")
        xh, yh = mine_hard(model, scenes, log=log)
        del scenes
        x2, y2 = np.concatenate([xtr] + [xh] * 3), np.concatenate([ytr] + [yh] * 3)
        steps2 = 1 if smoke else int(np.ceil(len(y2) / batch)) * mine_epochs
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(4e-4, steps2)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        if smoke:
            model.fit(dataset(x2, y2).take(1), epochs=1, verbose=0)
        else:
            model.fit(dataset(x2, y2), epochs=mine_epochs, validation_data=val, verbose=2)
    train_s = time.time() - t1
    # confusion on the validation patches
    pred = model.predict(val, verbose=0).argmax(1) if len(yva) else np.zeros(0, np.int64)
    conf = np.zeros((6, 6), np.int64)
    np.add.at(conf, (yva, pred), 1)
    acc = float((pred == yva).mean()) if len(yva) else float("nan")
    # save a fresh copy without optimizer state
    clean = build(kind)
    clean.set_weights(model.get_weights())
    out.parent.mkdir(parents=True, exist_ok=True)
    clean.save(out)
    sha = sha256_of(out)
    if len(yva):
        log(f"[{kind}] validation accuracy {acc:.4f}; confusion (rows true, cols predicted; "
            f"{', '.join(PATCH_CLASSES)}):")
        for name, row in zip(PATCH_CLASSES, conf):
            log(f"  {name:15s} " + " ".join(f"{v:6d}" for v in row))
    log(f"[{kind}] {clean.count_params()} parameters; wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    log(f"[{kind}] sha256 {sha}")
    log(f"[{kind}] training {train_s:.0f} s, total {time.time() - t0:.0f} s")
    return {"sha256": sha, "val_accuracy": acc, "confusion": conf, "seconds": time.time() - t0,
            "params": clean.count_params(), "bytes": out.stat().st_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="train.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--baseline", action="store_true", help="train the seed blog's CNN instead (not shipped)")
    p.add_argument("--smoke", action="store_true", help="one small scene, one step: checks the script runs")
    p.add_argument("--out", type=Path, help=f"output .keras (default {DEFAULT_OUT.name}, or build/ for --baseline)")
    p.add_argument("--scenes", type=int, default=32, help="training scenes (default 32)")
    p.add_argument("--val-scenes", type=int, default=4)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--mine-epochs", type=int, default=2,
                   help="epochs of the second round on mined hard examples (0: no mining; never for --baseline)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default 2)")
    a = p.parse_args(argv)
    kind = "baseline" if a.baseline else "compact"
    if a.smoke:
        out = a.out or Path(tempfile.mkdtemp(prefix="sealion-smoke-")) / f"{kind}.keras"
        if out.resolve() == DEFAULT_OUT:
            p.error("--smoke would overwrite the shipped weights; give another --out")
        train(kind, out, n_scenes=1, n_val=0, epochs=1, batch=16, seed=a.seed, threads=a.threads, smoke=True)
        return 0
    out = a.out or (BASELINE_OUT if a.baseline else DEFAULT_OUT)
    train(kind, out, n_scenes=a.scenes, n_val=a.val_scenes, epochs=a.epochs, batch=a.batch, seed=a.seed,
          threads=a.threads, mine=not a.baseline and a.mine_epochs > 0, mine_epochs=a.mine_epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
