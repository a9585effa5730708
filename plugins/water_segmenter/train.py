"""Train the water segmenter to reproduce water-expert-optical; write the weights and print their sha256.

Targets are the expert's water polygons (``geodetect.detect`` with
``water-expert-optical``, rasterised on each scene's grid), as in the seed:
the domain-expert method labels the imagery, the network learns to replicate it.

Data: the real Landsat SF Bay scene, rows 0-1215 only (rows 1280-1916 are the
held-out evaluation part, see ``data.py``), and simulated water scenes
(``geodetect.simulate``, kind ``"water"``, seeds 10000 up; evaluation and
tests use seeds below 10000). Nodata pixels of the Landsat file carry no
loss. Reproducible: fixed seeds, TensorFlow op determinism.

    python plugins/water_segmenter/train.py            # about 15 min on 1 CPU thread of a shared machine
    python plugins/water_segmenter/train.py --smoke    # one step on a tiny simulated scene, seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the modules sit beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import data as D  # type: ignore[no-redef]
    import model as M  # type: ignore[no-redef]
else:
    from . import data as D
    from . import model as M

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "water_segmenter.keras"
SIM_SEED0 = 10_000


def real_item():
    """(image float32 (H, W, 3) green/red/nir 0..1, labels, weights) of the Landsat training rows."""
    import rasterio

    path = D.landsat_path()
    with tempfile.TemporaryDirectory(prefix="water-train-") as wd:
        crop = D.write_rows(path, os.path.join(wd, "landsat_train.tif"), D.TRAIN_ROWS)
        labels, valid = D.expert_labels(crop, bands=D.LANDSAT_BANDS)
        with rasterio.open(crop) as ds:
            raw = ds.read()
    b = D.LANDSAT_BANDS
    img = np.stack([raw[b["green"] - 1], raw[b["red"] - 1], raw[b["nir"] - 1]], -1).astype(np.float32) / 255.0
    return img, labels.astype(np.float32), valid.astype(np.float32)


def sim_items(seeds, size: int):
    import rasterio

    from geodetect.simulate import make_scene

    out = []
    with tempfile.TemporaryDirectory(prefix="water-sim-") as wd:
        for s in seeds:
            sim = make_scene(os.path.join(wd, f"w{s}.tif"), kind="water", size=(size, size), seed=s)
            labels, valid = D.expert_labels(sim.path)
            with rasterio.open(sim.path) as ds:
                names = [d.lower() for d in ds.descriptions]
                raw = ds.read()
            img = np.stack([raw[names.index(n)] for n in M.BANDS], -1).astype(np.float32) / 255.0
            out.append((img, labels.astype(np.float32), valid.astype(np.float32)))
    return out


class CropSampler:
    """Random crops with the 8 flips/rotations, a common gain, small per-band gains and noise."""

    def __init__(self, items, shares, crop: int, seed: int):
        self.items, self.crop, self.rng = items, crop, np.random.default_rng(seed)
        self.shares = np.asarray(shares, float) / np.sum(shares)

    def _one(self):
        rng, c = self.rng, self.crop
        img, lab, wgt = self.items[rng.choice(len(self.items), p=self.shares)]
        h, w = lab.shape
        for _ in range(20):  # prefer crops that are not all nodata
            y0, x0 = int(rng.integers(0, h - c + 1)), int(rng.integers(0, w - c + 1))
            if wgt[y0:y0 + c, x0:x0 + c].mean() > 0.3:
                break
        x, y, m = img[y0:y0 + c, x0:x0 + c], lab[y0:y0 + c, x0:x0 + c], wgt[y0:y0 + c, x0:x0 + c]
        k = int(rng.integers(4))
        x, y, m = np.rot90(x, k), np.rot90(y, k), np.rot90(m, k)
        if rng.random() < 0.5:
            x, y, m = x[:, ::-1], y[:, ::-1], m[:, ::-1]
        x = x * rng.uniform(0.75, 1.3) * rng.uniform(0.96, 1.04, 3) + rng.normal(0, rng.uniform(0, 0.01), x.shape)
        return np.clip(x, 0, 1).astype(np.float32), y[..., None].astype(np.float32), m[..., None].astype(np.float32)

    def batch(self, n: int):
        parts = [self._one() for _ in range(n)]
        return tuple(np.ascontiguousarray(np.stack(p)) for p in zip(*parts))


def train(out: Path, *, real: bool, n_sim: int, sim_size: int, real_share: float, steps: int, batch: int,
          crop: int, lr: float, threads: int, seed: int = 0, log_every: int = 100) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

    tf = configure_tensorflow(threads, seed=seed)
    t0 = time.time()
    items, shares = [], []
    if real:
        items.append(real_item())
        shares.append(real_share)
        print(f"Landsat rows {D.TRAIN_ROWS[0]}-{D.TRAIN_ROWS[1] - 1}: expert water share "
              f"{(items[0][1] * items[0][2]).sum() / items[0][2].sum():.3f} of valid pixels", flush=True)
    sims = sim_items(range(SIM_SEED0, SIM_SEED0 + n_sim), sim_size)
    items += sims
    shares += [(1 - real_share if real else 1.0) / max(1, len(sims))] * len(sims)
    print(f"{len(sims)} simulated scenes (seeds {SIM_SEED0}..{SIM_SEED0 + n_sim - 1}), labels ready in "
          f"{time.time() - t0:.0f} s", flush=True)
    sampler = CropSampler(items, shares, crop, seed)
    model = M.build_model()
    warm = min(100, max(1, steps // 10))
    sched = tf.keras.optimizers.schedules.CosineDecay(0.0, steps - warm, alpha=0.05, warmup_target=lr,
                                                      warmup_steps=warm) if steps > warm else lr
    opt = tf.keras.optimizers.Adam(sched)

    @tf.function
    def step(x, y, m):
        with tf.GradientTape() as tape:
            p = tf.clip_by_value(model(x, training=True), 1e-6, 1 - 1e-6)
            bce = -(y * tf.math.log(p) + (1 - y) * tf.math.log(1 - p))
            loss = tf.reduce_sum(bce * m) / tf.maximum(tf.reduce_sum(m), 1.0)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    t1 = time.time()
    avg = None
    for i in range(steps):
        loss = float(step(*sampler.batch(batch)))
        avg = loss if avg is None else 0.95 * avg + 0.05 * loss
        if (i + 1) % log_every == 0 or i == steps - 1:
            el = time.time() - t1
            print(f"step {i + 1}/{steps}  loss {avg:.4f}  {el:.0f} s, {(i + 1) * batch / el:.1f} crops/s", flush=True)
    train_s = time.time() - t1
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_keras_reproducible(model, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB, {model.count_params()} parameters)")
    print(f"training {train_s / 60:.1f} min, total {(time.time() - t0) / 60:.1f} min")
    print(f"sha256 {digest}")
    return {"weights": str(out), "sha256": digest, "params": model.count_params(), "train_seconds": train_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--sim-scenes", type=int, default=8)
    p.add_argument("--sim-size", type=int, default=768)
    p.add_argument("--real-share", type=float, default=0.6, help="share of crops cut from the real Landsat rows")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads")
    p.add_argument("--smoke", action="store_true",
                   help="one step on one tiny simulated scene (no Landsat), written to a temporary file")
    a = p.parse_args(argv)
    if a.smoke:
        with tempfile.TemporaryDirectory(prefix="water-smoke-") as d:
            train(a.out or Path(d) / "smoke.keras", real=False, n_sim=1, sim_size=128, real_share=0.0, steps=1,
                  batch=2, crop=64, lr=a.lr, threads=a.threads, log_every=1)
        return 0
    train(a.out or WEIGHTS, real=True, n_sim=a.sim_scenes, sim_size=a.sim_size, real_share=a.real_share,
          steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr, threads=a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
