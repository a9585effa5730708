"""Train the vehicle detector on simulated scenes; write the weights and print their sha256.

Reproducible: fixed seeds everywhere (scenes, crops, augmentation, initial
weights; TensorFlow op determinism on). Training scenes use simulator seeds
from 10000 up, the threshold-selection scenes seeds from 20000 up; the
evaluation (``evaluate.py``) and the tests use seeds below 10000, never seen
here.

    python plugins/vehicle_detector/train.py            # about 25 min on 2 CPU cores
    python plugins/vehicle_detector/train.py --smoke    # one step on a tiny scene, seconds

Only simulated scenes are used: no xView imagery is available on this machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from geodetect.plugins.weights import save_keras_reproducible

if __package__ in (None, ""):  # run as a script: the model module sits beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import model as M  # type: ignore[no-redef]
else:
    from . import model as M

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "vehicle_detector.keras"
CLASSES = ("car", "truck", "bus")
TRAIN_SEED0 = 10_000
VAL_SEED0 = 20_000


def scene_kwargs(seed: int, size: int) -> dict:
    """Simulator arguments of one training scene: vehicle count and class mix vary with the seed."""
    rng = np.random.default_rng(seed)
    area = (size / 1024) ** 2
    return dict(
        size=(size, size),
        n_objects=int(rng.integers(60, 300) * area) + 4,
        class_mix=(rng.uniform(0.45, 0.7), rng.uniform(0.15, 0.3), rng.uniform(0.12, 0.25)),
        seed=seed,
    )


def make_scenes(seeds, size: int, workdir: str):
    """Simulate scenes; returns a list of (image uint8 (H, W, 3), boxes (K, 4), class ids (K,))."""
    import rasterio

    from geodetect.simulate import make_scene

    out = []
    for s in seeds:
        sim = make_scene(os.path.join(workdir, f"train_{s}.tif"), kind="vehicles", **scene_kwargs(s, size))
        with rasterio.open(sim.path) as ds:
            img = np.moveaxis(ds.read(), 0, -1)
        t = sim.truth
        boxes = t[["px_xmin", "px_ymin", "px_xmax", "px_ymax"]].to_numpy(np.float64)
        ids = np.array([CLASSES.index(c) for c in t.class_name], np.int64)
        out.append((img, boxes, ids))
        os.remove(sim.path)
    return out


class CropSampler:
    """Random training crops with exact targets, cut from targets precomputed per scene.

    Crops start on multiples of the stride, so targets are slices of the
    scene's target maps. Augmentation: the 8 flips/rotations (sizes and
    offsets transformed with them), exposure, contrast and noise.
    """

    def __init__(self, scenes, crop: int, seed: int, object_share: float = 0.75):
        self.crop, self.rng, self.object_share = crop, np.random.default_rng(seed), object_share
        self.items = []
        for img, boxes, ids in scenes:
            h, w = img.shape[:2]
            heat, box, mask = M.encode_targets(boxes, ids, h, w)
            centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
            self.items.append((img, heat, box, mask, centres))

    def _one(self):
        rng, c, s = self.rng, self.crop, M.STRIDE
        img, heat, box, mask, centres = self.items[rng.integers(len(self.items))]
        h, w = img.shape[:2]
        if len(centres) and rng.random() < self.object_share:
            cx, cy = centres[rng.integers(len(centres))] + rng.uniform(-c / 2.5, c / 2.5, 2)
        else:
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        x0 = int(np.clip(cx - c / 2, 0, w - c)) // s * s
        y0 = int(np.clip(cy - c / 2, 0, h - c)) // s * s
        g0x, g0y, gc = x0 // s, y0 // s, c // s
        x = img[y0:y0 + c, x0:x0 + c].astype(np.float32) / 255.0
        ht = heat[g0y:g0y + gc, g0x:g0x + gc].copy()
        bt = box[g0y:g0y + gc, g0x:g0x + gc].copy()
        mt = mask[g0y:g0y + gc, g0x:g0x + gc].copy()
        if rng.random() < 0.5:  # transpose: swap axes, sizes and offsets
            x, ht, mt = x.transpose(1, 0, 2), ht.transpose(1, 0, 2), mt.T
            bt = bt.transpose(1, 0, 2)[..., [1, 0, 3, 2]]
        if rng.random() < 0.5:  # flip columns: offset dx -> 1 - dx
            x, ht, bt, mt = x[:, ::-1], ht[:, ::-1], bt[:, ::-1].copy(), mt[:, ::-1]
            bt[..., 2] = np.where(mt > 0, 1.0 - bt[..., 2], 0.0)
        if rng.random() < 0.5:  # flip rows: offset dy -> 1 - dy
            x, ht, bt, mt = x[::-1], ht[::-1], bt[::-1].copy(), mt[::-1]
            bt[..., 3] = np.where(mt > 0, 1.0 - bt[..., 3], 0.0)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.25) + mean * rng.uniform(0.8, 1.2)
        x = x * rng.uniform(0.94, 1.06, 3) + rng.normal(0, rng.uniform(0, 0.012), x.shape)
        return np.clip(x, 0, 1).astype(np.float32), ht, bt, mt

    def batch(self, n: int):
        parts = [self._one() for _ in range(n)]
        return tuple(np.ascontiguousarray(np.stack(p)) for p in zip(*parts))


def predict_scene(tf, run, img: np.ndarray):
    """Whole-scene prediction (the network is fully convolutional): boxes, scores, class ids."""
    h, w = img.shape[:2]
    ph, pw = -h % 16, -w % 16
    x = np.pad(img.astype(np.float32) / 255.0, ((0, ph), (0, pw), (0, 0)))[None]
    boxes, scores, classes = (t.numpy()[0] for t in run(tf.constant(x)))
    return boxes, scores, classes


def choose_threshold(tf, run, val_scenes) -> tuple[float, dict]:
    """Score threshold with the best macro F1 at IoU 0.5 on the validation scenes."""
    from geodetect.metrics.boxes import box_metrics

    preds = [predict_scene(tf, run, img) for img, _, _ in val_scenes]
    best = (0.3, -1.0, None)
    for thr in np.round(np.arange(0.15, 0.71, 0.05), 2):
        tables = []
        for (b, s, c), (_, tb, tc) in zip(preds, val_scenes):
            keep = s >= thr
            tables.append(((b[keep], c[keep], s[keep]), (tb, tc)))
        pb = np.concatenate([t[0][0] for t in tables])
        pc = np.concatenate([t[0][1] for t in tables])
        ps = np.concatenate([t[0][2] for t in tables])
        img_p = np.concatenate([np.full(len(t[0][0]), i) for i, t in enumerate(tables)])
        tb = np.concatenate([t[1][0] for t in tables])
        tc = np.concatenate([t[1][1] for t in tables])
        img_t = np.concatenate([np.full(len(t[1][0]), i) for i, t in enumerate(tables)])
        m = box_metrics((pb, pc, ps, img_p), (tb, tc, img_t), CLASSES)
        f1 = float(m.loc["macro", "f1"])
        if f1 > best[1]:
            best = (float(thr), f1, m)
    return best[0], {"macro_f1": best[1], "table": best[2]}




def train(out: Path, *, n_scenes: int, scene_size: int, steps: int, batch: int, crop: int, lr: float,
          n_val: int, threads: int, seed: int = 0, log_every: int = 50) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow

    tf = configure_tensorflow(threads, seed=seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="vehicle-train-") as wd:
        scenes = make_scenes(range(TRAIN_SEED0, TRAIN_SEED0 + n_scenes), scene_size, wd)
        val = make_scenes(range(VAL_SEED0, VAL_SEED0 + n_val), scene_size, wd) if n_val else []
    n_obj = sum(len(s[1]) for s in scenes)
    per_class = np.bincount(np.concatenate([s[2] for s in scenes]), minlength=3) if n_obj else np.zeros(3, int)
    print(f"simulated {n_scenes} training scenes ({n_obj} vehicles: "
          + ", ".join(f"{c} {k}" for c, k in zip(CLASSES, per_class)) + f") in {time.time() - t0:.0f} s", flush=True)
    sampler = CropSampler(scenes, crop, seed)
    model = M.build_model()
    warm = min(100, max(1, steps // 10))
    sched = tf.keras.optimizers.schedules.CosineDecay(0.0, steps - warm, alpha=0.02, warmup_target=lr,
                                                      warmup_steps=warm) if steps > warm else lr
    opt = tf.keras.optimizers.Adam(sched)

    @tf.function
    def step(x, h, b, m):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss, parts = M.loss_fn(tf, y, h, b, m)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, parts

    t1 = time.time()
    run_avg = None
    for i in range(steps):
        loss, (focal, wh, off) = step(*sampler.batch(batch))
        vals = np.array([float(loss), float(focal), float(wh), float(off)])
        run_avg = vals if run_avg is None else 0.95 * run_avg + 0.05 * vals
        if (i + 1) % log_every == 0 or i == steps - 1:
            el = time.time() - t1
            print(f"step {i + 1}/{steps}  loss {run_avg[0]:.3f} (focal {run_avg[1]:.3f}, wh {run_avg[2]:.3f}, "
                  f"offset {run_avg[3]:.3f})  {el:.0f} s, {(i + 1) * batch / el:.1f} crops/s", flush=True)
    train_s = time.time() - t1
    out.parent.mkdir(parents=True, exist_ok=True)
    save_keras_reproducible(model, out)
    from geodetect.plugins.weights import sha256_of

    digest = sha256_of(out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "train_seconds": round(train_s, 1), "total_seconds": round(time.time() - t0, 1)}
    if val:
        @tf.function
        def run(x):
            return M.decode(tf, model(x, training=False), 1000)

        thr, info = choose_threshold(tf, run, val)
        result["threshold"] = thr
        print(f"validation (seeds {VAL_SEED0}..{VAL_SEED0 + n_val - 1}): best score threshold {thr} "
              f"(macro F1 {info['macro_f1']:.3f})")
        print(info["table"].round(3).to_string())
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']} parameters)")
    print(f"training {train_s / 60:.1f} min, total {result['total_seconds'] / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--scenes", type=int, default=48, help="training scenes")
    p.add_argument("--scene-size", type=int, default=1024)
    p.add_argument("--steps", type=int, default=2200)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-scenes", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--smoke", action="store_true", help="one step on one tiny scene, written to a temporary file")
    a = p.parse_args(argv)
    if a.smoke:
        with tempfile.TemporaryDirectory(prefix="vehicle-smoke-") as d:
            out = a.out or Path(d) / "smoke.keras"
            train(out, n_scenes=1, scene_size=256, steps=1, batch=2, crop=128, lr=a.lr, n_val=0,
                  threads=a.threads, log_every=1)
        return 0
    train(a.out or WEIGHTS, n_scenes=a.scenes, scene_size=a.scene_size, steps=a.steps, batch=a.batch,
          crop=a.crop, lr=a.lr, n_val=a.val_scenes, threads=a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
