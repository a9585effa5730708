"""Train the tree-crowns detector from the data files in ``data/`` and write its weights.

    python examples/tree-crowns/train.py            # writes geodetect_tree_crowns/tree_crowns.keras
    python examples/tree-crowns/train.py --dev-fold 0   # development run: cross-validation fold 0 (or 1)

Training data (see MODEL_CARD.md): OSBS_029 left of the hold-out strip (columns
< 280, the boxes centred there) and the YELL crop with all its boxes. Nothing
at or right of column 280 of OSBS_029 is ever read here. Fixed seed, op
determinism and a normalised .keras archive make the file byte-reproducible on
the same TensorFlow build; the sha256 is printed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from geodetect.plugins.weights import save_keras_reproducible

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import treedata  # noqa: E402

SEED = 20250101
STRIDE = 4
CROP = 192
BATCH = 12
STEPS = 800
LR = 2e-3
BOX_WEIGHT = 5.0  # GIoU loss weight (TTFNet)
GAUSS_ALPHA = 0.54  # TTFNet: sigma = alpha * box side / 6
OSBS_SHARE = 0.5  # fraction of crops drawn from OSBS (the rest from YELL)
#: --dev-fold k: two-fold cross-validation inside the training side of OSBS_029 (columns 0..280):
#: the boxes centred in the fold's column range validate, the rest (and YELL) train
DEV_FOLDS = [(0.0, 140.0), (140.0, 280.0)]
SCALE_JITTER = (0.8, 1.25)
OUT = HERE / "geodetect_tree_crowns" / "tree_crowns.keras"


# ----------------------------------------------------------------------------- data


class Source:
    """One training image (uint8 RGB), its boxes (full extent, may leave the image) and an ignore mask."""

    def __init__(self, img, boxes, ignore=None):
        ignore = ignore if ignore is not None else np.zeros(img.shape[:2], bool)
        # images narrower than a crop: reflect-pad right/bottom, the padding ignored
        ph, pw = max(CROP - img.shape[0], 0), max(CROP - img.shape[1], 0)
        self.img = np.pad(img, ((0, ph), (0, pw), (0, 0)), mode="reflect")
        self.ignore = np.pad(ignore, ((0, ph), (0, pw)), constant_values=True)
        self.boxes = np.asarray(boxes, np.float64).reshape(-1, 4)


def load_sources(fold: int | None) -> list[Source]:
    """OSBS_029 left of the hold-out strip (minus the validation fold) and the YELL crop."""
    img, _, boxes = treedata.read_osbs()
    train_cols = (0, int(treedata.HOLDOUT_COL))
    c = treedata.centres(boxes)[:, 0]
    keep = c < treedata.HOLDOUT_COL
    if fold is not None:
        lo, hi = DEV_FOLDS[fold]
        keep &= ~((c >= lo) & (c < hi))
        train_cols = (int(hi), int(treedata.HOLDOUT_COL)) if lo == 0 else (0, int(lo))
    col0, col1 = train_cols
    train_img = img[:, col0:col1]
    tb = boxes[keep] - [col0, 0, col0, 0]
    # pixels of the boxes not trained on (held out, or validating) that reach into the
    # training columns: their heatmap is neither positive nor negative
    ignore = np.zeros(train_img.shape[:2], bool)
    for x0, y0, x1, y1 in boxes[~keep] - [col0, 0, col0, 0]:
        ignore[int(max(y0, 0)) : int(np.ceil(y1)), int(max(x0, 0)) : int(np.ceil(max(x1, 0)))] = True
    osbs = Source(train_img, tb, ignore)
    yimg, yboxes = treedata.read_voc(treedata.YELL)
    return [osbs, Source(yimg, yboxes)]


def sample(src: Source, rng: np.random.Generator):
    """A random augmented crop: float32 image (CROP, CROP, 3), boxes, ignore mask."""
    from scipy import ndimage

    h, w = src.img.shape[:2]
    scale = float(np.exp(rng.uniform(*np.log(SCALE_JITTER))))  # output px per source px
    side = min(int(round(CROP / scale)), h, w)
    scale = CROP / side
    y0 = int(rng.integers(0, h - side + 1))
    x0 = int(rng.integers(0, w - side + 1))
    img = src.img[y0 : y0 + side, x0 : x0 + side].astype(np.float32) / 255.0
    ign = src.ignore[y0 : y0 + side, x0 : x0 + side]
    if side != CROP:
        img = ndimage.zoom(img, (scale, scale, 1), order=1, grid_mode=True, mode="grid-constant")[:CROP, :CROP]
        ign = ndimage.zoom(ign.astype(np.uint8), scale, order=0, grid_mode=True, mode="grid-constant")[:CROP, :CROP] > 0
    b = (src.boxes - [x0, y0, x0, y0]) * scale
    b = b[(b[:, 2] > 0) & (b[:, 0] < CROP) & (b[:, 3] > 0) & (b[:, 1] < CROP)]
    # dihedral group: k quarter turns (counter-clockwise, as np.rot90) then an optional flip
    for _ in range(int(rng.integers(0, 4))):
        img, ign = np.rot90(img), np.rot90(ign)
        b = np.column_stack([b[:, 1], CROP - b[:, 2], b[:, 3], CROP - b[:, 0]])
    if rng.random() < 0.5:
        img, ign = img[:, ::-1], ign[:, ::-1]
        b = np.column_stack([CROP - b[:, 2], b[:, 1], CROP - b[:, 0], b[:, 3]])
    # photometric: saturation, brightness, contrast, per-channel gain
    gray = img.mean(axis=2, keepdims=True)
    img = gray + (img - gray) * rng.uniform(0.7, 1.3)
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.8, 1.2)
    img = img * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    return np.clip(img, 0, 1).astype(np.float32), b, ign


def targets(boxes: np.ndarray, ignore: np.ndarray):
    """Targets on the stride-4 grid (TTFNet-style).

    heat (g, g): a Gaussian per box (1 at the centre cell); hweight (g, g): 0 where the
    heatmap is ignored; box (g, g, 4): distances in pixels from each cell centre to the
    left, top, right and bottom edges of the box it regresses; bweight (g, g): the
    Gaussian of that box where it exceeds 0.1, each box's weights summing to 1, so that
    every box counts once in the GIoU loss whatever its size. Smaller boxes win shared cells.
    """
    g = CROP // STRIDE
    heat = np.zeros((g, g), np.float32)
    box = np.zeros((g, g, 4), np.float32)
    bweight = np.zeros((g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    px, py = STRIDE * (xx + 0.5), STRIDE * (yy + 0.5)  # cell centres in pixels
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for x0, y0, x1, y1 in boxes[np.argsort(-area, kind="stable")]:
        cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
        bw, bh = max((x1 - x0) / STRIDE, 0.5), max((y1 - y0) / STRIDE, 0.5)
        ci, cj = int(np.floor(cx)), int(np.floor(cy))
        sx, sy = max(GAUSS_ALPHA * bw / 6, 0.4), max(GAUSS_ALPHA * bh / 6, 0.4)
        gauss = np.exp(-((xx - ci) ** 2) / (2 * sx * sx) - ((yy - cj) ** 2) / (2 * sy * sy))
        np.maximum(heat, gauss, out=heat)
        if not (0 <= ci < g and 0 <= cj < g):
            continue  # centre outside the crop: heatmap tail only
        heat[cj, ci] = 1.0
        core = (gauss > 0.1) & (px > x0) & (px < x1) & (py > y0) & (py < y1)
        core[cj, ci] = True
        w = np.where(core, gauss, 0.0)
        box[core] = np.stack([px - x0, py - y0, x1 - px, y1 - py], axis=-1)[core]
        bweight[core] = (w / w.sum())[core]
    # a grid cell is ignored when most of its pixels are ignored (and it is no centre)
    ign = ignore.reshape(g, STRIDE, g, STRIDE).mean(axis=(1, 3)) > 0.5
    hweight = np.where(ign & (heat < 1.0), 0.0, 1.0).astype(np.float32)
    return heat, hweight, np.maximum(box, 0.5), bweight


def batches(sources, rng):
    p = np.array([OSBS_SHARE, 1 - OSBS_SHARE])
    while True:
        items = []
        for _ in range(BATCH):
            src = sources[int(rng.choice(len(sources), p=p))]
            img, b, ign = sample(src, rng)
            items.append((img, *targets(b, ign)))
        yield tuple(np.stack(v) for v in zip(*items))


# ----------------------------------------------------------------------------- model


def build_model(tf):
    """A small single-stage detector at stride 4 (CenterNet / TTFNet style), trained from scratch.

    Backbone: pairs of 3x3 conv + batch norm + ReLU down to stride 32 (16, 32, 64, 96,
    128 channels); a feature pyramid back up to stride 4 (96, 64, 48 channels); two heads
    of a 3x3 conv (48) and a 1x1 conv. Output (N, H/4, W/4, 5): the tree-centre logit,
    then log(d / 4) of the distances d from the cell centre to the box's left, top,
    right and bottom edges. Built-in Keras layers only, so the .keras file loads in
    safe mode. Tiles must be a multiple of 32 pixels (the plugin pads them).
    """
    L = tf.keras.layers
    n = [0]

    def conv(x, f, k=3, s=1, bias=False, name=None, bias_init="zeros"):
        n[0] += 1
        return L.Conv2D(f, k, s, padding="same", use_bias=bias, name=name, bias_initializer=bias_init,
                        kernel_initializer=tf.keras.initializers.HeNormal(seed=SEED + n[0]))(x)

    def cbr(x, f, s=1):
        return L.ReLU()(L.BatchNormalization(momentum=0.95)(conv(x, f, 3, s)))

    inp = tf.keras.Input((None, None, 3), name="rgb")
    x = L.Rescaling(2.0, offset=-1.0)(inp)  # 0..1 -> -1..1
    x = cbr(cbr(x, 16, 2), 16)  # /2
    c2 = cbr(cbr(x, 32, 2), 32)  # /4
    c3 = cbr(cbr(c2, 64, 2), 64)  # /8
    c4 = cbr(cbr(c3, 96, 2), 96)  # /16
    c5 = cbr(cbr(c4, 128, 2), 128)  # /32
    p4 = cbr(L.Add()([L.UpSampling2D()(conv(c5, 96, 1)), c4]), 96)
    p3 = cbr(L.Add()([L.UpSampling2D()(conv(p4, 64, 1)), conv(c3, 64, 1)]), 64)
    p2 = cbr(L.Add()([L.UpSampling2D()(conv(p3, 48, 1)), conv(c2, 48, 1)]), 48)
    heat = conv(cbr(p2, 48), 1, 1, bias=True, name="centre_logit", bias_init=tf.keras.initializers.Constant(-2.19))
    reg = conv(cbr(p2, 48), 4, 1, bias=True, name="edge_log_distances", bias_init=tf.keras.initializers.Constant(1.5))
    out = L.Concatenate(name="centre_and_edges")([heat, reg])
    return tf.keras.Model(inp, out, name="tree_crowns")


def losses(tf, out, heat, hweight, box, bweight):
    """Penalty-reduced focal loss on the centre heatmap (CenterNet) and GIoU on the edge distances."""
    p = tf.clip_by_value(tf.sigmoid(out[..., 0]), 1e-4, 1 - 1e-4)
    pos = tf.cast(tf.equal(heat, 1.0), tf.float32)
    n_pos = tf.maximum(tf.reduce_sum(pos), 1.0)
    pos_l = tf.math.log(p) * tf.pow(1 - p, 2.0) * pos
    neg_l = tf.math.log(1 - p) * tf.pow(p, 2.0) * tf.pow(1 - heat, 4.0) * (1 - pos)
    focal = -tf.reduce_sum((pos_l + neg_l) * hweight) / n_pos
    d = STRIDE * tf.exp(tf.clip_by_value(out[..., 1:], -4.0, 5.0))  # predicted l, t, r, b in pixels
    pl, pt, pr, pb = tf.unstack(d, axis=-1)
    gl, gt, gr, gb = tf.unstack(box, axis=-1)
    inter = (tf.minimum(pl, gl) + tf.minimum(pr, gr)) * (tf.minimum(pt, gt) + tf.minimum(pb, gb))
    union = (pl + pr) * (pt + pb) + (gl + gr) * (gt + gb) - inter
    enclose = (tf.maximum(pl, gl) + tf.maximum(pr, gr)) * (tf.maximum(pt, gt) + tf.maximum(pb, gb))
    giou = inter / union - (enclose - union) / enclose
    box_l = tf.reduce_sum((1 - giou) * bweight) / n_pos
    return focal, box_l


# ----------------------------------------------------------------------------- helpers




def predict_image(tf, run, img_u8: np.ndarray, threshold: float):
    """Boxes on a whole image (padded to a multiple of 32), decoded like the plugin does."""
    from geodetect_tree_crowns import decode_boxes, nms

    h, w = img_u8.shape[:2]
    ph, pw = -h % 32, -w % 32
    x = np.pad(img_u8.astype(np.float32) / 255.0, ((0, ph), (0, pw), (0, 0)), mode="edge")[None]
    scores, cells, regs = (t.numpy()[0] for t in run(x))
    keep = scores >= threshold
    xyxy = decode_boxes(cells[keep], regs[keep], w, h)
    s = scores[keep]
    k = nms(xyxy, s, 0.5) if len(s) else np.zeros(0, int)
    return xyxy[k], s[k]


def prefetch(gen, depth: int = 4):
    """Make batches in a thread (numpy releases the GIL little, TensorFlow a lot): same order, same bytes."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)

    def fill():
        for item in gen:
            q.put(item)

    threading.Thread(target=fill, daemon=True).start()
    while True:
        yield q.get()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dev-fold", type=int, choices=[0, 1], help="development run: cross-validate on one fold of the "
                    "training side of OSBS_029 (DEV_FOLDS); does not write the weights")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(2)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    sys.path.insert(0, str(HERE))

    t0 = time.time()
    sources = load_sources(args.dev_fold)
    print(f"training boxes: OSBS {len(sources[0].boxes)}, YELL {len(sources[1].boxes)}")
    rng = np.random.default_rng(SEED)
    model = build_model(tf)
    print(f"parameters: {model.count_params():,}")
    sched = tf.keras.optimizers.schedules.CosineDecay(LR * 0.1, args.steps, alpha=0.02, warmup_target=LR,
                                                      warmup_steps=min(200, args.steps // 10))
    opt = tf.keras.optimizers.Adam(sched)

    @tf.function(reduce_retracing=True)
    def step(x, heat, hweight, box, bweight):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            focal, box_l = losses(tf, out, heat, hweight, box, bweight)
            loss = focal + BOX_WEIGHT * box_l
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return focal, box_l

    gen = prefetch(batches(sources, rng))
    acc = np.zeros(2)
    for i in range(1, args.steps + 1):
        acc += [float(v) for v in step(*next(gen))]
        if i % 100 == 0:
            f, b = acc / 100
            print(f"step {i:5d}  focal {f:.3f}  giou {b:.3f}  {time.time() - t0:.0f}s", flush=True)
            acc[:] = 0
    print(f"trained {args.steps} steps in {time.time() - t0:.0f}s")

    if args.dev_fold is not None:
        from geodetect_tree_crowns import decode_peaks

        run = tf.function(lambda x: decode_peaks(tf, model(x, training=False), 200))
        img, _, boxes = treedata.read_osbs()
        val_img = img[:, : int(treedata.HOLDOUT_COL)]  # never the held-out strip
        val_boxes = boxes[treedata.centres(boxes)[:, 0] < treedata.HOLDOUT_COL]
        lo, hi = DEV_FOLDS[args.dev_fold]

        def region(b):
            c = treedata.centres(b)[:, 0]
            return (c >= lo) & (c < hi)
        for iou in (0.5, 0.3):
            for thr in (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5):
                pred, sc = predict_image(tf, run, val_img, thr)
                r = treedata.score_holdout(pred, sc, val_boxes, iou=iou, region=region)
                print(f"dev fold {args.dev_fold} (OSBS columns {lo:g}..{hi:g}), IoU {iou}, threshold {thr}: "
                      + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()))
        return 0

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_keras_reproducible(model, args.out)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    print(f"sha256 {digest}")
    print(f"total time {time.time() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
