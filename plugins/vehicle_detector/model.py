"""The vehicle detector's network, training targets, loss and decoding (CenterNet-style).

A single-stage, anchor-free detector ("Objects as Points", Zhou et al. 2019):
a small residual conv backbone with a top-down path to stride 4, and three
heads on the stride-4 grid: a per-class centre heatmap (sigmoid, penalty-
reduced focal loss), the box width/height and the sub-cell offset of the
centre. Decoding keeps 3x3 local maxima of the heatmap (max over classes, so
one object gets one class), the top ``k`` of them, and reads size and offset
there. Only built-in Keras layers are used, so the ``.keras`` file loads in
safe mode.

TensorFlow is imported inside the functions; importing this module is light.
"""

from __future__ import annotations

import math

import numpy as np

STRIDE = 4
N_CLASSES = 3
#: output channels: heatmap logits (3), width/height in stride cells (2), centre offset in cells (2)
N_OUT = N_CLASSES + 4
WIDTHS = (24, 48, 96, 128)


def build_model(widths=WIDTHS, n_classes: int = N_CLASSES, channels: int = 3):
    """The Keras model: float32 tiles (N, H, W, channels) in 0..1 -> (N, H/4, W/4, n_classes + 4).

    H and W must be multiples of 16.
    """
    from geodetect.plugins.weights import import_tensorflow

    tf = import_tensorflow()
    L = tf.keras.layers

    def cbr(x, filters, k=3, s=1, name=None):
        x = L.Conv2D(filters, k, strides=s, padding="same", use_bias=False, name=name and name + "_conv")(x)
        x = L.BatchNormalization(name=name and name + "_bn")(x)
        return L.ReLU(name=name and name + "_relu")(x)

    def res(x, filters, name):
        y = cbr(x, filters, name=name + "a")
        y = L.Conv2D(filters, 3, padding="same", use_bias=False, name=name + "b_conv")(y)
        y = L.BatchNormalization(name=name + "b_bn")(y)
        return L.ReLU(name=name + "_out")(L.Add(name=name + "_add")([x, y]))

    w2, w4, w8, w16 = widths
    inp = L.Input((None, None, channels), name="tiles")
    x = L.Rescaling(2.0, offset=-1.0, name="scale")(inp)
    x = cbr(x, w2, s=2, name="stem")                 # /2
    x = cbr(x, w4, s=2, name="down4")                # /4
    c4 = res(x, w4, "res4")
    x = cbr(c4, w8, s=2, name="down8")               # /8
    x = res(x, w8, "res8a")
    c8 = res(x, w8, "res8b")
    x = cbr(c8, w16, s=2, name="down16")             # /16
    x = res(x, w16, "res16a")
    c16 = res(x, w16, "res16b")
    # top-down path back to stride 4
    p = L.UpSampling2D(2, interpolation="nearest", name="up8")(cbr(c16, w8, k=1, name="lat16"))
    p = cbr(L.Add(name="merge8")([p, c8]), w8, name="fuse8")
    p = L.UpSampling2D(2, interpolation="nearest", name="up4")(cbr(p, w4, k=1, name="lat8"))
    p = cbr(L.Add(name="merge4")([p, c4]), w4, name="fuse4")
    heat = cbr(p, w4, name="heat_h")
    heat = L.Conv2D(n_classes, 1, name="heat_logits",
                    bias_initializer=tf.keras.initializers.Constant(-math.log((1 - 0.01) / 0.01)))(heat)
    box = cbr(p, w4, name="box_h")
    box = L.Conv2D(4, 1, name="box_out")(box)
    out = L.Concatenate(name="out")([heat, box])
    return tf.keras.Model(inp, out, name="vehicle_centernet")


def gaussian_radius(h: np.ndarray, w: np.ndarray, min_overlap: float = 0.7) -> np.ndarray:
    """CenterNet's radius (in the same units as h, w) within which a shifted box keeps IoU >= min_overlap."""
    a1, b1 = 1.0, h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1**2 - 4 * a1 * c1)) / 2
    a2, b2 = 4.0, 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2**2 - 4 * a2 * c2)) / 2
    a3, b3 = 4 * min_overlap, -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return np.minimum(np.minimum(r1, r2), r3)


def encode_targets(boxes: np.ndarray, class_ids: np.ndarray, height: int, width: int, n_classes: int = N_CLASSES):
    """Training targets on the stride-4 grid of a ``height`` x ``width`` image.

    ``boxes`` (K, 4) [col_min, row_min, col_max, row_max] in pixels. Returns
    float32 arrays: heat (H/4, W/4, C), box (H/4, W/4, 4) [w, h, dx, dy] in
    cells, and mask (H/4, W/4) = 1 at object centres.
    """
    gh, gw = height // STRIDE, width // STRIDE
    heat = np.zeros((gh, gw, n_classes), np.float32)
    box = np.zeros((gh, gw, 4), np.float32)
    mask = np.zeros((gh, gw), np.float32)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) / STRIDE
    if len(boxes) == 0:
        return heat, box, mask
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    ix, iy = np.floor(cx).astype(int), np.floor(cy).astype(int)
    radius = np.maximum(0, gaussian_radius(bh, bw)).astype(int)
    order = np.argsort(-(bw * bh))  # small objects last: they win a shared cell
    for k in order:
        if not (0 <= ix[k] < gw and 0 <= iy[k] < gh):
            continue
        r = radius[k]
        sigma = (2 * r + 1) / 6.0
        x0, x1 = max(0, ix[k] - r), min(gw, ix[k] + r + 1)
        y0, y1 = max(0, iy[k] - r), min(gh, iy[k] + r + 1)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        g = np.exp(-((xx - ix[k]) ** 2 + (yy - iy[k]) ** 2) / (2 * sigma * sigma))
        c = int(class_ids[k])
        heat[y0:y1, x0:x1, c] = np.maximum(heat[y0:y1, x0:x1, c], g)
        box[iy[k], ix[k]] = (bw[k], bh[k], cx[k] - ix[k], cy[k] - iy[k])
        mask[iy[k], ix[k]] = 1.0
    return heat, box, mask


def loss_fn(tf, y_out, heat_t, box_t, mask_t, wh_weight: float = 0.1, off_weight: float = 1.0):
    """Penalty-reduced focal loss on the heatmap + L1 on size and offset at centres; returns (total, parts)."""
    logits = y_out[..., :N_CLASSES]
    p = tf.clip_by_value(tf.sigmoid(logits), 1e-4, 1 - 1e-4)
    pos = tf.cast(heat_t >= 1.0 - 1e-6, tf.float32)
    neg = 1.0 - pos
    pos_loss = -tf.math.log(p) * tf.square(1 - p) * pos
    neg_loss = -tf.math.log(1 - p) * tf.square(p) * tf.pow(1 - heat_t, 4.0) * neg
    n = tf.maximum(tf.reduce_sum(pos), 1.0)
    focal = (tf.reduce_sum(pos_loss) + tf.reduce_sum(neg_loss)) / n
    m = mask_t[..., None]
    nm = tf.maximum(tf.reduce_sum(mask_t), 1.0)
    wh = tf.reduce_sum(tf.abs(y_out[..., N_CLASSES:N_CLASSES + 2] - box_t[..., :2]) * m) / nm
    off = tf.reduce_sum(tf.abs(y_out[..., N_CLASSES + 2:] - box_t[..., 2:]) * m) / nm
    return focal + wh_weight * wh + off_weight * off, (focal, wh, off)


def decode(tf, y_out, k: int = 200):
    """Top-``k`` peaks of a batch of outputs -> boxes (N, k, 4) in input pixels, scores (N, k), classes (N, k)."""
    heat = tf.sigmoid(y_out[..., :N_CLASSES])
    best = tf.reduce_max(heat, axis=-1)                        # one class per location
    cls = tf.argmax(heat, axis=-1, output_type=tf.int32)
    peak = tf.nn.max_pool2d(best[..., None], 3, 1, "SAME")[..., 0]
    best = tf.where(tf.equal(best, peak), best, tf.zeros_like(best))
    shape = tf.shape(best)
    n, gh, gw = shape[0], shape[1], shape[2]
    flat = tf.reshape(best, (n, -1))
    k = tf.minimum(k, gh * gw)
    scores, idx = tf.math.top_k(flat, k=k)
    rows, cols = idx // gw, idx % gw
    box = tf.gather(tf.reshape(y_out[..., N_CLASSES:], (n, -1, 4)), idx, batch_dims=1)
    classes = tf.gather(tf.reshape(cls, (n, -1)), idx, batch_dims=1)
    cx = (tf.cast(cols, tf.float32) + box[..., 2]) * STRIDE
    cy = (tf.cast(rows, tf.float32) + box[..., 3]) * STRIDE
    bw = tf.maximum(box[..., 0], 0.0) * STRIDE
    bh = tf.maximum(box[..., 1], 0.0) * STRIDE
    boxes = tf.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=-1)
    return boxes, scores, classes
