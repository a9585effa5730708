"""Train the building segmenter (the thesis' modified U-Net) on simulated urban scenes; print the sha256.

Reproducible: fixed seeds everywhere (scenes, crops, augmentation, initial
weights; TensorFlow op determinism on; one thread by default). Training
scenes use simulator seeds from 10000 up, validation scenes seeds from 20000
up; the evaluation (``evaluate.py``) and the tests use seeds below 10000,
never seen here.

    nice -n 5 python plugins/building_segmenter/train.py           # about 15 min on one CPU thread
    python plugins/building_segmenter/train.py --smoke             # one step on a tiny scene, seconds

Only simulated scenes are used: no Inria imagery is available on this
machine (``geodetect.train.inria`` reads it where it is).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the model module sits beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import model as M  # type: ignore[no-redef]
else:
    from . import model as M

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "building_segmenter.keras"
TRAIN_SEED0 = 10_000
VAL_SEED0 = 20_000
#: (CRS, centre) of training scenes, cycled: the network never sees coordinates, only pixels
PLACES = [("EPSG:32618", (-77.03, 38.89)), ("EPSG:32631", (2.35, 48.86)), ("EPSG:32633", (16.37, 48.21))]


def make_scenes(seeds, size: int, workdir: str):
    """Simulate urban scenes; returns a list of (image uint8 (H, W, 3), building mask bool (H, W))."""
    import rasterio

    from geodetect.simulate import make_scene
    from geodetect.simulate.urban import footprint_mask

    out = []
    for k, s in enumerate(seeds):
        crs, centre = PLACES[k % len(PLACES)]
        sim = make_scene(os.path.join(workdir, f"urban_{s}.tif"), kind="urban", crs=crs, center=centre,
                         size=(size, size), seed=s)
        with rasterio.open(sim.path) as ds:
            img = np.moveaxis(ds.read(), 0, -1)
        out.append((img, footprint_mask(sim.truth, sim.transform, sim.crs, (sim.height, sim.width))))
        os.remove(sim.path)
    return out


class CropSampler:
    """Random 128 x 128 training crops with their masks: the 8 flips/rotations, exposure, colour and noise."""

    def __init__(self, scenes, crop: int, seed: int):
        self.scenes, self.crop, self.rng = scenes, crop, np.random.default_rng(seed)

    def _one(self):
        rng, c = self.rng, self.crop
        img, mask = self.scenes[rng.integers(len(self.scenes))]
        h, w = mask.shape
        y0, x0 = rng.integers(0, h - c + 1), rng.integers(0, w - c + 1)
        x = img[y0:y0 + c, x0:x0 + c].astype(np.float32) / 255.0
        y = mask[y0:y0 + c, x0:x0 + c].astype(np.float32)
        k = rng.integers(4)
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.25) + mean * rng.uniform(0.8, 1.2)
        x = x * rng.uniform(0.93, 1.07, 3) + rng.normal(0, rng.uniform(0, 0.015), x.shape)
        return np.clip(x, 0, 1).astype(np.float32), y[..., None]

    def batch(self, n: int):
        xs, ys = zip(*(self._one() for _ in range(n)))
        return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))


def pixel_scores(pred: np.ndarray, true: np.ndarray) -> dict:
    """IoU of the building class and pixel accuracy of two boolean masks."""
    inter = np.logical_and(pred, true).sum()
    union = np.logical_or(pred, true).sum()
    return {"iou": float(inter / union) if union else 1.0, "pixel_accuracy": float((pred == true).mean())}


def train(out: Path, *, n_scenes: int, scene_size: int, steps: int, batch: int, lr: float, n_val: int,
          threads: int, seed: int = 0, log_every: int = 100) -> dict:
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

    tf = configure_tensorflow(threads, seed=seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="building-train-") as wd:
        scenes = make_scenes(range(TRAIN_SEED0, TRAIN_SEED0 + n_scenes), scene_size, wd)
        val = make_scenes(range(VAL_SEED0, VAL_SEED0 + n_val), scene_size, wd) if n_val else []
    share = np.mean([m.mean() for _, m in scenes])
    print(f"simulated {n_scenes} training scenes of {scene_size} px (building pixels {share:.1%}) "
          f"in {time.time() - t0:.0f} s", flush=True)
    sampler = CropSampler(scenes, M.TILE, seed)
    model = M.build_model()
    warm = min(100, max(1, steps // 10))
    sched = (tf.keras.optimizers.schedules.CosineDecay(0.0, steps - warm, alpha=0.02, warmup_target=lr,
                                                       warmup_steps=warm) if steps > warm else lr)
    opt = tf.keras.optimizers.Adam(sched)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            p = model(x, training=True)
            pc = tf.clip_by_value(p, 1e-6, 1 - 1e-6)
            bce = -tf.reduce_mean(y * tf.math.log(pc) + (1 - y) * tf.math.log(1 - pc))
            inter = tf.reduce_sum(p * y)
            dice = 1 - (2 * inter + 1) / (tf.reduce_sum(p) + tf.reduce_sum(y) + 1)
            loss = bce + 0.5 * dice
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, bce, dice

    t1 = time.time()
    avg = None
    for i in range(steps):
        vals = np.array([float(v) for v in step(*sampler.batch(batch))])
        avg = vals if avg is None else 0.98 * avg + 0.02 * vals
        if (i + 1) % log_every == 0 or i == steps - 1:
            el = time.time() - t1
            print(f"step {i + 1}/{steps}  loss {avg[0]:.3f} (bce {avg[1]:.3f}, dice {avg[2]:.3f})  "
                  f"{el:.0f} s, {(i + 1) * batch / el:.1f} crops/s", flush=True)
    train_s = time.time() - t1
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_keras_reproducible(model, out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "train_seconds": round(train_s, 1)}
    if val:  # whole validation scenes at once (the network is fully convolutional)
        inter = union = agree = total = 0
        for img, mask in val:
            p = model(img[None].astype(np.float32) / 255.0, training=False).numpy()[0, ..., 0] >= 0.5
            inter += np.logical_and(p, mask).sum()
            union += np.logical_or(p, mask).sum()
            agree += (p == mask).sum()
            total += mask.size
        result["val_iou"], result["val_pixel_accuracy"] = inter / union, agree / total
        print(f"validation (seeds {VAL_SEED0}..{VAL_SEED0 + n_val - 1}, whole scenes, threshold 0.5): "
              f"IoU {result['val_iou']:.3f}, pixel accuracy {result['val_pixel_accuracy']:.3f}")
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']} parameters)")
    print(f"training {train_s / 60:.1f} min, total {(time.time() - t0) / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--scenes", type=int, default=40, help="training scenes")
    p.add_argument("--scene-size", type=int, default=512)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--val-scenes", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (default 1: shared machines)")
    p.add_argument("--smoke", action="store_true", help="one step on one tiny scene, written to a temporary file")
    a = p.parse_args(argv)
    if a.smoke:
        with tempfile.TemporaryDirectory(prefix="building-smoke-") as d:
            train(a.out or Path(d) / "smoke.keras", n_scenes=1, scene_size=128, steps=1, batch=2, lr=a.lr,
                  n_val=0, threads=a.threads, log_every=1)
        return 0
    train(a.out or WEIGHTS, n_scenes=a.scenes, scene_size=a.scene_size, steps=a.steps, batch=a.batch, lr=a.lr,
          n_val=a.val_scenes, threads=a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
