"""sea-lion-counter: one point per Steller sea lion, in five classes.

Two stages, as in the sea-lion blog (seed 002):

1. **Proposals** (classical): scale-normalised Laplacian-of-Gaussian over
   scales matched to the animals' body widths, bright and dark blobs in
   separate maps (so an animal's shadow does not hide it), plus blobs of the
   chroma (red - blue: brown pelage on grey rock and surf), local maxima in
   scale-space with a low threshold (high recall: rock, surf and clutter get
   through too), sub-pixel refinement by a quadratic fit.
2. **Classification** (Keras CNN, dense since 4.0.0): each tile at the
   detector's 0.1 m goes once through the first stages of an
   ImageNet-pretrained EfficientNet-Lite0 (to the 80-channel stage, stride 16)
   and a light decoder back to stride 4, which gives per 4 x 4 px cell the
   probabilities of ``adult_males, subadult_males, adult_females, juveniles,
   pups`` and ``not_sea_lion``. Each proposal takes the lowest P(not_sea_lion)
   within one cell of it, and the class most probable over those cells. Accepted proposals closer than ~0.6
   body lengths are one animal: the one with the strongest blob response x
   CNN confidence is kept, at its LoG peak. The 3.0.0 patch classifier (a
   64x64 patch per proposal, ``sea_lion_cnn.keras``) still runs with
   ``SeaLionCounter(weights=PATCH_WEIGHTS, sha256=PATCH_WEIGHTS_SHA256,
   accept=0.7)``: the kind of classifier is read from the network's output.

Weights (``sea_lion_dense.keras``, sha256-checked, safe-mode load) were trained
on real NOAA survey photographs (the Kaggle competition's, dots painted out
where only the dotted copy exists) plus a few simulated rookeries
(``train.py``, ``real.py``; see MODEL_CARD.md).

The detector works at 0.1 m. A NOAA survey photograph (no georeferencing) is
placed at about 3.5 cm per pixel (:data:`PHOTO_GSD_M`; ``--crs EPSG:32633
--bounds 0 0 W*0.035 H*0.035``, or :func:`geodetect.train.placement.write_placed`),
so that the host resamples it to 0.1 m and the animals have the size the
network learnt. Scenes finer than 2.5 cm or coarser than 10 cm are refused.

``SeaLionCounter(cnn=False)`` runs the classical stage alone (v0.1: stricter
LoG threshold, class guessed from blob size and brightness), for comparison.
TensorFlow is imported only in :meth:`SeaLionCounter.load`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geodetect.plugins import Detector, DetectorSpec, Points, Task

__all__ = ["CLASSES", "SeaLionCounter", "log_blobs", "propose", "cut_patches", "WEIGHTS", "WEIGHTS_SHA256",
           "PATCH_WEIGHTS", "PATCH_WEIGHTS_SHA256", "PHOTO_GSD_M"]

CLASSES = ("adult_males", "subadult_males", "adult_females", "juveniles", "pups")
#: the committed weights of the dense classifier (4.0.0) and their sha256
WEIGHTS = Path(__file__).with_name("sea_lion_dense.keras")
WEIGHTS_SHA256 = "6e3b34563ba922b30d3b332ea3eae9621441322af8485fc5690f847b9d59c337"
#: 3.0.0's patch classifier (kept for comparison; run it with ``accept=0.7``)
PATCH_WEIGHTS = Path(__file__).with_name("sea_lion_cnn.keras")
PATCH_WEIGHTS_SHA256 = "954f65e8e09954e231111affe2d6cf2981ba1a5bd390b6391055f6fd4387a237"
#: LoG scales in pixels at 0.1 m: body half-widths of pups .. bulls divided by sqrt(2)
SIGMAS = (1.8, 2.6, 3.4, 4.6)
#: proposal stage of the two-stage detector: low threshold, bright and dark blobs apart. 0.04 (0.02 for the
#: simulated rookeries): on the real training and validation photographs every animal but 2 of 940 has a
#: proposal above it within 0.75 m, with half the proposals of 0.02
PROPOSAL_THRESHOLD = 0.04
#: the GSD a NOAA survey photograph is placed at (animal sizes give about 3.5 cm per pixel)
PHOTO_GSD_M = 0.035
PROPOSAL_NMS_RADIUS = 4
MAX_PROPOSALS_PER_TILE = 512
PATCH = 64
#: patches per step of the classifier inside the one compiled call of a batch of tiles (bounds its memory)
CHUNK = 128
#: a proposal is an animal when P(not_sea_lion) < 1 - ACCEPT. Chosen on the validation photograph (45):
#: the highest point F1 among the thresholds whose count error there is within 15 % (eval_real.json; 3.0.0's
#: patch classifier had 0.7)
ACCEPT = 0.93
#: a dense classifier (whole tiles in, class probabilities per cell out) scores a proposal by the cell within this
#: many cells of it with the lowest P(not_sea_lion); its class is the most probable over those cells
DENSE_WINDOW = 1
#: nominal body length in pixels at 0.1 m per class (simulate.SEA_LION_SIZES_M / 0.1)
_LENGTH_PX = np.array([30.0, 25.0, 22.0, 16.0, 10.0])


def log_blobs(gray: np.ndarray, sigmas, threshold: float, nms_radius: int, *, split_polarity: bool = False):
    """Scale-normalised |LoG| blobs of a 2-D image.

    Returns (xy (K, 2) continuous [col, row], response (K,), sigma (K,), polarity (K,))
    where polarity is +1 for blobs brighter than their surroundings.

    With ``split_polarity`` bright and dark blobs are found in separate maps, so
    a dark blob (a shadow, a tide pool) never suppresses a bright one next to
    it, nor the other way round.
    """
    from scipy import ndimage

    stack = np.stack([-(s * s) * ndimage.gaussian_laplace(gray, s, mode="nearest") for s in sigmas])
    if split_polarity:
        parts = [_peaks(np.maximum(stack, 0), sigmas, threshold, nms_radius, 1.0),
                 _peaks(np.maximum(-stack, 0), sigmas, threshold, nms_radius, -1.0)]
        return tuple(np.concatenate(a) for a in zip(*parts))
    return _peaks(np.abs(stack), sigmas, threshold, nms_radius, stack)


def _peaks(mag, sigmas, threshold, nms_radius, polarity):
    """Scale-space maxima of a response stack ``mag`` (S, H, W) >= 0, refined to sub-pixel."""
    from scipy import ndimage

    best = mag.argmax(axis=0)
    resp = np.take_along_axis(mag, best[None], axis=0)[0]
    peak = ndimage.maximum_filter(resp, size=2 * nms_radius + 1, mode="nearest")
    rows, cols = np.nonzero((resp == peak) & (resp > threshold))
    if len(rows) == 0:
        return np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0)
    h, w = resp.shape
    # sub-pixel: a 2-D quadratic (with the cross term, for tilted elongated bodies)
    # fitted to the 3x3 neighbourhood of the peak in its own scale's response
    k = best[rows, cols]
    rc = np.clip(rows, 1, h - 2)
    cc = np.clip(cols, 1, w - 2)

    def f(dr, dc):
        return mag[k, rc + dr, cc + dc]

    gx = (f(0, 1) - f(0, -1)) / 2
    gy = (f(1, 0) - f(-1, 0)) / 2
    hxx = f(0, 1) - 2 * f(0, 0) + f(0, -1)
    hyy = f(1, 0) - 2 * f(0, 0) + f(-1, 0)
    hxy = (f(1, 1) - f(1, -1) - f(-1, 1) + f(-1, -1)) / 4
    det = hxx * hyy - hxy * hxy
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(det > 0, -(hyy * gx - hxy * gy) / det, 0.0)
        dy = np.where(det > 0, -(hxx * gy - hxy * gx) / det, 0.0)
    dx = np.where(cc == cols, np.clip(np.nan_to_num(dx), -0.5, 0.5), 0.0)
    dy = np.where(rc == rows, np.clip(np.nan_to_num(dy), -0.5, 0.5), 0.0)
    xy = np.column_stack([cols + 0.5 + dx, rows + 0.5 + dy])
    sig = np.asarray(sigmas, float)[k]
    if isinstance(polarity, np.ndarray):  # the signed stack
        pol = np.sign(polarity[k, rows, cols])
    else:
        pol = np.full(len(rows), float(polarity))
    return xy, resp[rows, cols], sig, pol


def propose(rgb: np.ndarray, *, threshold: float = PROPOSAL_THRESHOLD, nms_radius: int = PROPOSAL_NMS_RADIUS,
            max_proposals: int = MAX_PROPOSALS_PER_TILE):
    """Blob proposals of an (H, W, 3) 0..1 image: (xy, response, sigma, polarity), strongest first.

    Blobs of the brightness (bright and dark apart) and, added where no
    brightness blob is within 2 px, blobs of the chroma ``red - blue`` that
    stand out above their surroundings: pelage is brown, rock, surf and
    shadows are grey, so a pale animal on white surf whose brightness blob is
    pulled towards its shadow still gets a proposal on its body.
    """
    from scipy.spatial import cKDTree

    gray = rgb[..., :3].mean(axis=2)
    xy, resp, sig, pol = log_blobs(gray, SIGMAS, threshold, nms_radius, split_polarity=True)
    if rgb.shape[-1] >= 3:
        chroma = rgb[..., 0] - rgb[..., 2]
        cxy, cresp, csig, cpol = log_blobs(chroma, SIGMAS, threshold, nms_radius, split_polarity=True)
        new = cpol > 0
        if len(xy) and new.any():
            new &= cKDTree(xy).query(cxy)[0] > 2.0
        xy, resp = np.concatenate([xy, cxy[new]]), np.concatenate([resp, cresp[new]])
        sig, pol = np.concatenate([sig, csig[new]]), np.concatenate([pol, cpol[new]])
    order = np.argsort(-resp, kind="stable")[:max_proposals]
    return xy[order], resp[order], sig[order], pol[order]


def cut_patches(img: np.ndarray, xy: np.ndarray, size: int = PATCH) -> np.ndarray:
    """(K, size, size, C) patches of ``img`` (H, W, C) whose centre pixel holds each point ``xy`` [col, row].

    Outside the image the edge pixels are repeated.
    """
    half = size // 2
    xy = np.asarray(xy, float).reshape(-1, 2)
    if len(xy) == 0:
        return np.zeros((0, size, size, img.shape[2]), img.dtype)
    padded = np.pad(img, ((half, half), (half, half), (0, 0)), mode="edge")
    c = np.clip(np.floor(xy[:, 0]).astype(np.int64), 0, img.shape[1] - 1)
    r = np.clip(np.floor(xy[:, 1]).astype(np.int64), 0, img.shape[0] - 1)
    off = np.arange(size)
    rows = (r[:, None] + off[None, :])[:, :, None]  # padded coordinates: r - half + half + off
    cols = (c[:, None] + off[None, :])[:, None, :]
    return padded[rows, cols]


def suppress(xy: np.ndarray, class_ids: np.ndarray, scores: np.ndarray, *, same: float = 0.6,
             other: float = 0.35) -> np.ndarray:
    """Keep-mask over accepted proposals: one animal can give several blobs (body, head, shadow, the
    dark flanks of a bright body). From the highest ``scores`` down, a proposal removes the lower ones
    closer than ``same`` x the body length of its class when they have its class, or ``other`` x
    that length when they do not (a pup lying against its mother stays)."""
    from scipy.spatial import cKDTree

    n = len(xy)
    keep = np.ones(n, bool)
    if n < 2:
        return keep
    tree = cKDTree(xy)
    length = _LENGTH_PX[class_ids]
    for i in np.argsort(-scores, kind="stable"):
        if not keep[i]:
            continue
        for j in tree.query_ball_point(xy[i], same * max(length[i], _LENGTH_PX.max())):
            if j == i or not keep[j]:
                continue
            r = same if class_ids[j] == class_ids[i] else other
            if np.hypot(*(xy[j] - xy[i])) <= r * max(length[i], length[j]):
                keep[j] = False
    return keep


class SeaLionCounter(Detector):
    """LoG blob proposals scored by a dense CNN (or 3.0.0's patch classifier), one point per animal.

    Parameters
    ----------
    cnn : False runs the classical stage alone (v0.1 behaviour), without TensorFlow.
    weights, sha256 : another ``.keras`` classifier (e.g. the seed baseline from
        ``train.py --baseline``) and its sha256; default the committed weights and their hash (another file
        without its sha256 is refused).
    accept : an animal is reported when P(not_sea_lion) < 1 - accept.
    tta : views of each tile whose dense maps are averaged (8: every flip and 90-degree rotation, the
        default since 4.1.0, chosen on the validation photograph; 4: the four flips; 1: the tile as is,
        about 8 times faster). Dense weights only.
    """

    spec = DetectorSpec(
        name="sea-lion-counter",
        version="4.1.0",
        task=Task.POINTS,
        classes=CLASSES,
        bands=(1, 2, 3),
        tile_size=256,
        overlap=64,
        gsd_m=0.1,
        gsd_range=(0.025, 0.1),
        merge_radius_px=8.0,
        merge_classes=True,  # two tiles may call one animal a cow and a subadult: it is still one animal
        description="Steller sea lions as points in five classes: LoG blob proposals scored by a dense CNN "
        "(ImageNet EfficientNet-Lite0 stages and a light decoder, run once per tile) "
        "(trained on real NOAA survey photographs placed at 3.5 cm, plus simulated rookeries)",
        licence="Apache-2.0",
        weights_sha256=WEIGHTS_SHA256,
    )

    # classical stage (cnn=False): the v0.1 settings
    sigmas = SIGMAS
    threshold = 0.045
    nms_radius = 10

    #: views averaged per tile by the dense classifier (see ``tta``)
    tta = 8

    def __init__(self, *, cnn: bool = True, weights=None, sha256: str | None = None, accept: float = ACCEPT,
                 tta: int | None = None):
        self.cnn = bool(cnn)
        if tta is not None:
            from geodetect.plugins.weights import tta_views

            self.tta = tta_views(tta, detector="sea-lion-counter")
        self._tta_given = tta is not None
        self.weights = Path(weights) if weights is not None else WEIGHTS
        self.sha256 = sha256 if sha256 is not None else self.spec.weights_sha256
        self.accept = float(accept)
        self._model = self._infer = None
        self._dense = 0  # the tile size of a dense classifier, 0 for a patch classifier

    def load(self) -> None:
        if not self.cnn:
            return
        from geodetect.plugins.weights import import_tensorflow, load_keras_model

        tf = import_tensorflow()
        model = load_keras_model(self.weights, self.sha256, detector=self.spec.name)
        shape = tuple(model.input_shape)
        dense = len(model.output_shape) == 4 and shape[1] == shape[2] and shape[1] % model.output_shape[1] == 0
        if (shape[1:3] != (PATCH, PATCH) and not dense) or model.output_shape[-1] != len(CLASSES) + 1:
            from geodetect.errors import PluginError

            raise PluginError(
                f"detector {self.spec.name!r}: {self.weights.name} takes {shape} and gives {model.output_shape}; "
                f"expected ({PATCH}, {PATCH}, 3) patches or square tiles (dense) and {len(CLASSES) + 1} classes"
            )
        self._model = model
        n_out = len(CLASSES) + 1
        if dense:  # the whole tile goes through the network once (or once per view, averaged: tta)
            from geodetect.plugins.weights import tta_model

            self._dense = int(shape[1])
            if self.tta > 1:
                model = self._model = tta_model(model, self.tta)
            self._infer = tf.function(lambda x: model(x, training=False),
                                      input_signature=[tf.TensorSpec([None, shape[1], shape[2], shape[3]], tf.float32)])
            return

        if self._tta_given and self.tta > 1:
            from geodetect.errors import PluginError

            raise PluginError(f"sea-lion-counter: tta={self.tta} needs dense weights; {self.weights.name} is a patch "
                              "classifier (use tta=1, or leave tta out)")

        def run(x):
            # one compiled call per batch of tiles, the patches run CHUNK at a time inside it: the upsampled
            # EfficientNet stages hold about 3 MB of activations per patch, so thousands at once would take GBs
            n = tf.shape(x)[0]
            x = tf.pad(x, [[0, (-n) % CHUNK], [0, 0], [0, 0], [0, 0]])
            chunks = tf.reshape(x, [-1, CHUNK, PATCH, PATCH, shape[3]])
            y = tf.map_fn(lambda b: model(b, training=False), chunks, parallel_iterations=1,
                          fn_output_signature=tf.TensorSpec([CHUNK, n_out], tf.float32))
            return tf.reshape(y, [-1, n_out])[:n]

        self._infer = tf.function(run, input_signature=[tf.TensorSpec([None, PATCH, PATCH, shape[3]], tf.float32)])

    def input_channels(self) -> int | None:
        return 3

    def predict(self, tiles: np.ndarray) -> list[Points]:
        if not self.cnn:
            return self._predict_classical(tiles)
        props = [propose(t) for t in tiles]
        n = [len(p[0]) for p in props]
        if sum(n) == 0:
            return [Points.empty() for _ in tiles]
        if self._dense:
            probs = self._dense_probs(tiles, [p[0] for p in props])
        else:
            patches = [cut_patches(t, p[0]) for t, p in zip(tiles, props)]
            probs = self._infer(np.ascontiguousarray(np.concatenate(patches), dtype=np.float32)).numpy()
        out = []
        for (xy, resp, _, _), pr in zip(props, np.split(probs, np.cumsum(n)[:-1])):
            p_animal = 1.0 - pr[:, len(CLASSES)]
            ok = p_animal > self.accept
            if not ok.any():
                out.append(Points.empty())
                continue
            xy, pr, score, resp = xy[ok], pr[ok], p_animal[ok], resp[ok]
            ids = pr[:, : len(CLASSES)].argmax(axis=1)
            # of several accepted blobs on one animal the strongest (its body) speaks for it
            keep = suppress(xy, ids, resp * score)
            out.append(Points(xy[keep], ids[keep], np.clip(score[keep], 0, 1)))
        return out

    def _dense_probs(self, tiles: np.ndarray, xys) -> np.ndarray:
        """Class probabilities of every proposal from the dense map of its tile: P(not_sea_lion) of the cell within
        :data:`DENSE_WINDOW` cells of it where it is lowest, the animal classes in proportion to their mean over
        those cells."""
        size = self._dense
        h, w = tiles.shape[1:3]
        if h > size or w > size:
            from geodetect.errors import PluginError

            raise PluginError(f"detector {self.spec.name!r}: {self.weights.name} takes tiles of at most {size} px, "
                              f"got {h} x {w}; run with --tile-size {size}")
        x = np.ascontiguousarray(tiles[..., :3], dtype=np.float32)
        if (h, w) != (size, size):
            x = np.pad(x, ((0, 0), (0, size - h), (0, size - w), (0, 0)), mode="edge")
        maps = self._infer(x).numpy()
        stride = size // maps.shape[1]
        d = np.arange(-DENSE_WINDOW, DENSE_WINDOW + 1)
        out = []
        for m, xy in zip(maps, xys):
            if len(xy) == 0:
                out.append(np.zeros((0, m.shape[-1]), m.dtype))
                continue
            r = np.floor(xy[:, 1] / stride).astype(np.int64)[:, None, None] + d[None, :, None]
            c = np.floor(xy[:, 0] / stride).astype(np.int64)[:, None, None] + d[None, None, :]
            r = np.clip(r, 0, m.shape[0] - 1)
            c = np.broadcast_to(np.clip(c, 0, m.shape[1] - 1), (len(xy),) + (len(d),) * 2).reshape(len(xy), -1)
            r = np.broadcast_to(r, c.shape[:1] + (len(d),) * 2).reshape(len(xy), -1)
            best = m[r, c, len(CLASSES)].argmin(axis=1)
            k = np.arange(len(xy))
            p_not = m[r[k, best], c[k, best], len(CLASSES)][:, None]
            # the class from the whole window: the best cell's class differs more often between two overlapping
            # tiles (the host merges such seam twins anyway, spec.merge_classes; the window was chosen before that)
            cls = m[r, c, : len(CLASSES)].mean(axis=1)
            out.append(np.concatenate([cls / np.maximum(cls.sum(axis=1, keepdims=True), 1e-12) * (1 - p_not), p_not],
                                      axis=1))
        return np.concatenate(out)

    def _predict_classical(self, tiles: np.ndarray) -> list[Points]:
        from scipy import ndimage

        out = []
        for tile in tiles:
            gray = tile[..., :3].mean(axis=2)
            xy, resp, sig, pol = log_blobs(gray, self.sigmas, self.threshold, self.nms_radius)
            if len(xy) == 0:
                out.append(Points.empty())
                continue
            smooth = ndimage.gaussian_filter(gray, 1.0)
            r = np.clip(xy[:, 1].astype(int), 0, gray.shape[0] - 1)
            c = np.clip(xy[:, 0].astype(int), 0, gray.shape[1] - 1)
            centre = smooth[r, c]
            out.append(Points(xy, self.classify(sig, pol, centre), np.clip(resp / (4 * self.threshold), 0, 1)))
        return out

    @staticmethod
    def classify(sigma: np.ndarray, polarity: np.ndarray, brightness: np.ndarray) -> np.ndarray:
        """First-guess class from blob scale (body width) and centre brightness (0..1) (classical stage).

        Calibrated on the plain (``texture=0``) simulated pelage colours (pups
        nearly black, cows the palest, bulls darker than subadult males).
        """
        big = sigma >= 4.5
        ids = np.select(
            [brightness < 0.32, brightness >= 0.575, big & (brightness < 0.512), big, sigma >= 3.4],
            [4, 2, 0, 1, 2],
            default=3,
        )
        return ids.astype(np.int64)
