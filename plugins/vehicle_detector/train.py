"""Fine-tune the vehicle detector on the real KIT AIS strips (plus simulated scenes); write the weights.

    python plugins/vehicle_detector/train.py [--data ../shared/data/vehicles-kit-ais]
    python plugins/vehicle_detector/train.py --smoke      # a few steps on tiny data, seconds

What it does (every step seeded; TensorFlow op determinism on, so the command
writes the same file, byte for byte, every time):

* starts from ``sim_pretrained.keras`` (the 0.1.0 weights, trained on
  simulated 0.3 m scenes only; its sha256 is checked);
* real data: the TRAIN frames of the fixed KIT AIS split (``kit_ais.py``), only
  their training band of columns, placed at the GSD measured from their cars and
  resampled to the working GSD (0.15 m) times 0.8, 0.9, 1.0, 1.1 and 1.25 (scale
  augmentation); minibuses count as cars, cyclists are ignored (there are none);
* simulated data (``geodetect.simulate``, kind "vehicles", seeds from 10000):
  scenes drawn at 0.15 m and (every other one) at 0.3 m (upsampled: what a coarser scene looks
  like after the host resamples it), for trucks, which KIT AIS does not have,
  and more buses;
* crops of 128 px (19 m): 60 % real, 40 % simulated; half of the real crops anywhere
  in the band (trees, roofs, road markings: the hard negatives), the rest near a
  vehicle; flips/transposes, brightness, contrast, colour gains, noise, and one
  crop in six made grey (a panchromatic band repeated).

The score threshold is chosen afterwards on the validation frames by
``evaluate.py`` (through ``geodetect.detect``), never on the test frames.
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
    import kit_ais as K  # type: ignore[no-redef]
    import model as M  # type: ignore[no-redef]
else:
    from . import kit_ais as K
    from . import model as M

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "vehicle_detector.keras"
INIT = HERE / "sim_pretrained.keras"
INIT_SHA256 = "216ec8d9664e6da0760e567a8c669078b35b72a142cc3f4b14e61c01cff53fb1"
CLASSES = ("car", "truck", "bus")
#: the detector's working GSD (spec.gsd_m)
WORK_GSD = 0.15
#: pixel-size multipliers of the scale augmentation (real frames get all of them, simulated scenes one each)
SCALES = (0.8, 0.9, 1.0, 1.1, 1.25)
SIM_SEED0 = 10_000
SIM_EXTENT_M = 150.0


def resample(img: np.ndarray, boxes: np.ndarray, factor: float):
    """Resize an image by ``factor`` (bilinear, antialiased when shrinking) and its boxes with it."""
    from PIL import Image

    h, w = img.shape[:2]
    nw, nh = max(1, int(round(w * factor))), max(1, int(round(h * factor)))
    if (nw, nh) == (w, h):
        return img, boxes
    out = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
    return out, boxes * np.array([nw / w, nh / h, nw / w, nh / h])


def real_items(parts):
    """(image, boxes, class ids, group) at each scale of every real part."""
    out = []
    for p in parts:
        for s in SCALES:
            img, b = resample(p.image, p.boxes, p.gsd_m / (WORK_GSD * s))
            out.append((img, b, p.class_ids, "real"))
    return out


def sim_items(n: int, workdir: str):
    """Simulated scenes: every other one drawn at 0.3 m, the rest at 0.15 m, each resampled to one scale."""
    import rasterio

    from geodetect.simulate import make_scene

    out = []
    for k in range(n):
        seed = SIM_SEED0 + k
        rng = np.random.default_rng(seed)
        gsd = 0.3 if k % 2 == 0 else 0.15
        size = int(round(SIM_EXTENT_M / gsd))
        area = (SIM_EXTENT_M / 307.2) ** 2  # vehicle density of the 0.1.0 training scenes (1024 px at 0.3 m)
        sim = make_scene(os.path.join(workdir, f"sim_{seed}.tif"), kind="vehicles", size=(size, size), gsd_m=gsd,
                         n_objects=int(rng.integers(60, 300) * area) + 4, seed=seed,
                         class_mix=(rng.uniform(0.3, 0.5), rng.uniform(0.3, 0.45), rng.uniform(0.15, 0.3)))
        with rasterio.open(sim.path) as ds:
            img = np.moveaxis(ds.read(), 0, -1)
        os.remove(sim.path)
        t = sim.truth
        boxes = t[["px_xmin", "px_ymin", "px_xmax", "px_ymax"]].to_numpy(np.float64).reshape(-1, 4)
        ids = np.array([CLASSES.index(c) for c in t.class_name], np.int64)
        img, boxes = resample(img, boxes, gsd / (WORK_GSD * SCALES[k % len(SCALES)]))
        out.append((img, boxes, ids, "sim"))
    return out


class CropSampler:
    """Random training crops with exact targets, cut from targets precomputed per image.

    Crops start on multiples of the stride, so targets are slices of the
    image's target maps. ``shares``: group -> (probability of the group,
    probability of a crop centred near a vehicle).
    """

    def __init__(self, items, crop: int, seed: int, shares: dict):
        self.crop, self.rng, self.shares = crop, np.random.default_rng(seed), shares
        self.groups = {g: [] for g in shares}
        for img, boxes, ids, group in items:
            h, w = img.shape[:2]
            ph, pw = max(0, crop - h), max(0, crop - w)
            if ph or pw:  # smaller than a crop: pad (black, like a nodata border)
                img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
                h, w = img.shape[:2]
            heat, box, mask = M.encode_targets(boxes, ids, h, w)
            centres = np.column_stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2])
            self.groups[group].append((img, heat, box, mask, centres))
        self.names = [g for g in shares if self.groups[g]]
        p = np.array([shares[g][0] for g in self.names])
        self.p = p / p.sum()

    def _one(self):
        rng, c, s = self.rng, self.crop, M.STRIDE
        g = self.names[rng.choice(len(self.names), p=self.p)]
        img, heat, box, mask, centres = self.groups[g][rng.integers(len(self.groups[g]))]
        h, w = img.shape[:2]
        if len(centres) and rng.random() < self.shares[g][1]:
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
        if x.shape[:2] != (c, c):  # the last stride cells of an image not a multiple of the stride
            pad = ((0, c - x.shape[0]), (0, c - x.shape[1]))
            x = np.pad(x, pad + ((0, 0),))
            ht = np.pad(ht, ((0, gc - ht.shape[0]), (0, gc - ht.shape[1]), (0, 0)))
            bt = np.pad(bt, ((0, gc - bt.shape[0]), (0, gc - bt.shape[1]), (0, 0)))
            mt = np.pad(mt, ((0, gc - mt.shape[0]), (0, gc - mt.shape[1])))
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
        x = (x - mean) * rng.uniform(0.75, 1.3) + mean * rng.uniform(0.75, 1.25)
        x = x * rng.uniform(0.88, 1.12, 3)
        if rng.random() < 1 / 6:  # panchromatic: one band repeated
            x = np.repeat(x @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=-1)
        x = x + rng.normal(0, rng.uniform(0, 0.015), x.shape)
        return np.clip(x, 0, 1).astype(np.float32), ht, bt, mt

    def batch(self, n: int):
        parts = [self._one() for _ in range(n)]
        return tuple(np.ascontiguousarray(np.stack(p)) for p in zip(*parts))


def predict_image(tf, run, img: np.ndarray):
    """Whole-image prediction (the network is fully convolutional): boxes, scores, class ids."""
    h, w = img.shape[:2]
    x = np.pad(img.astype(np.float32) / 255.0, ((0, -h % 16), (0, -w % 16), (0, 0)), mode="edge")[None]
    return tuple(t.numpy()[0] for t in run(tf.constant(x)))


def val_car_f1(tf, run, parts) -> dict:
    """Car F1 at IoU 0.5 per score threshold on validation parts at the working GSD (a training-time look only)."""
    from geodetect.metrics.boxes import box_metrics

    preds, truth = [], []
    for i, p in enumerate(parts):
        img, b = resample(p.image, p.boxes, p.gsd_m / WORK_GSD)
        preds.append((i, predict_image(tf, run, img)))
        truth.append((i, b, p.class_ids))
    out = {}
    for thr in (0.2, 0.3, 0.4, 0.5):
        pb = np.concatenate([q[0][q[1] >= thr] for _, q in preds]).reshape(-1, 4)
        pc = np.concatenate([q[2][q[1] >= thr] for _, q in preds])
        ps = np.concatenate([q[1][q[1] >= thr] for _, q in preds])
        pi = np.concatenate([np.full(int((q[1] >= thr).sum()), i) for i, q in preds])
        tb = np.concatenate([t[1] for t in truth]).reshape(-1, 4)
        tc = np.concatenate([t[2] for t in truth])
        ti = np.concatenate([np.full(len(t[1]), t[0]) for t in truth])
        m = box_metrics((pb, pc, ps, pi), (tb, tc, ti), CLASSES)
        out[thr] = float(m.loc["car", "f1"])
    return out


def train(out: Path, data, *, n_sim: int, steps: int, batch: int, crop: int, lr: float, threads: int,
          seed: int = 0, log_every: int = 50, init: Path | None = INIT, real_share: float = 0.6,
          parts_names=None) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from geodetect.plugins.weights import configure_tensorflow, load_keras_model, save_keras_reproducible, sha256_of

    tf = configure_tensorflow(threads, seed=seed)
    t0 = time.time()
    parts, gsd = K.load_parts(data, roles=("train", "val"), names=parts_names)
    train_parts = [p for p in parts if p.role == "train"]
    val_parts = [p for p in parts if p.role == "val"]
    items = real_items(train_parts)
    with tempfile.TemporaryDirectory(prefix="vehicle-train-") as wd:
        items += sim_items(n_sim, wd)
    n_real = np.bincount(np.concatenate([p.class_ids for p in train_parts]), minlength=3)
    n_sim_cls = np.bincount(np.concatenate([it[2] for it in items if it[3] == "sim"] + [np.zeros(0, np.int64)]),
                            minlength=3)
    print("measured GSD: " + ", ".join(f"{s} {g['gsd_m']} m" for s, g in gsd.items()))
    print(f"real: {len(train_parts)} training bands ({', '.join(f'{c} {k}' for c, k in zip(CLASSES, n_real))}) "
          f"x {len(SCALES)} scales; simulated: {n_sim} scenes ({', '.join(f'{c} {k}' for c, k in zip(CLASSES, n_sim_cls))}); "
          f"{time.time() - t0:.0f} s", flush=True)
    sampler = CropSampler(items, crop, seed, {"real": (real_share, 0.5), "sim": (1 - real_share, 0.7)})
    if init is not None:
        model = load_keras_model(init, INIT_SHA256, detector="vehicle-detector (initial weights)")
    else:
        model = M.build_model()
    warm = min(50, max(1, steps // 10))
    sched = tf.keras.optimizers.schedules.CosineDecay(0.0, steps - warm, alpha=0.02, warmup_target=lr,
                                                      warmup_steps=warm) if steps > warm else lr
    opt = tf.keras.optimizers.Adam(sched)

    @tf.function
    def step(x, h, b, m):
        with tf.GradientTape() as tape:
            y = model(x, training=True)
            loss, parts_ = M.loss_fn(tf, y, h, b, m)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss, parts_

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
    digest = sha256_of(out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "train_seconds": round(train_s, 1), "total_seconds": round(time.time() - t0, 1)}
    if val_parts:
        @tf.function
        def run(x):
            return M.decode(tf, model(x, training=False), 500)

        f1 = val_car_f1(tf, run, val_parts)
        print("validation bands, car F1 by score threshold (a look only; evaluate.py chooses the threshold): "
              + ", ".join(f"{t}: {v:.3f}" for t, v in f1.items()))
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']} parameters)")
    print(f"training {train_s / 60:.1f} min, total {result['total_seconds'] / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=K.DEFAULT_DATA, help="the KIT AIS folder (YOLO layout; "
                   "default ../shared/data/vehicles-kit-ais from the project root)")
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--sim-scenes", type=int, default=16, help="simulated scenes mixed in")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads")
    p.add_argument("--smoke", action="store_true", help="two steps on two frames and one small simulated scene, "
                   "written to a temporary file")
    a = p.parse_args(argv)
    if a.smoke:
        with tempfile.TemporaryDirectory(prefix="vehicle-smoke-") as d:
            out = a.out or Path(d) / "smoke.keras"
            train(out, a.data, n_sim=1, steps=2, batch=2, crop=128, lr=a.lr, threads=a.threads, log_every=1,
                  parts_names=("MOS74", "MOS87"))
        return 0
    train(a.out or WEIGHTS, a.data, n_sim=a.sim_scenes, steps=a.steps, batch=a.batch, crop=a.crop, lr=a.lr,
          threads=a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
