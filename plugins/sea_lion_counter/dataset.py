"""Training and evaluation scenes for the sea-lion counter, from the simulator.

Seeds are split once, here, so that no evaluation scene is ever trained on:

* ``TRAIN_SEEDS``  100000 + k   training scenes
* ``VAL_SEEDS``    200000 + k   validation during training (early stopping, reports)
* ``EVAL_SEEDS``   900000 + k   evaluate.py, MODEL_CARD.md and the quality tests only

Patches are labelled the way the detector sees them: around each LoG proposal
of :func:`geodetect_plugins.sea_lion_counter.propose`, cut by
:func:`~geodetect_plugins.sea_lion_counter.cut_patches` from the scene as the
pipeline reads it (``open_scene`` at the detector's GSD). A proposal within
``max(3 px, 0.2 body lengths)`` of an animal is that animal; one farther than
``max(4.5 px, 0.3 body lengths)`` from every animal is ``not_sea_lion``; the
ones in between are left out. So the classifier learns that a blob on the
head, the rim or the shadow of an animal is not another animal; each animal
also gives one such off-centre ``not_sea_lion`` patch at 0.35-0.7 body
lengths from its centre, and patches centred on its true position with
+-1.5 px jitter (more of them for the rare bull and subadult classes).
Negatives, up to ``max_negatives`` per scene, hard ones first: proposals
within a body length of an animal (up to half), animal-coloured ones (chroma
red - blue > 0.1: the tan and reddish rocks that look most like sea lions;
up to a third), then a random share of the rest.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np

from geodetect_plugins.sea_lion_counter import CLASSES, cut_patches, propose
from geodetect_plugins.sea_lion_counter.model import NOT_SEA_LION

TRAIN_SEEDS = tuple(range(100_000, 100_200))
VAL_SEEDS = tuple(range(200_000, 200_050))
EVAL_SEEDS = tuple(range(900_000, 900_100))

POS_RADIUS = (3.0, 0.20)  # px, body lengths
NEG_RADIUS = (4.5, 0.30)

__all__ = ["TRAIN_SEEDS", "VAL_SEEDS", "EVAL_SEEDS", "scene_params", "Scene", "render", "label_proposals",
           "scene_patches"]


def scene_params(seed: int, *, size: int = 1024, n_range=(50, 300)) -> dict:
    """Keyword arguments of ``make_scene`` for scene ``seed``: its look varies with the seed."""
    rng = np.random.default_rng([seed, 17])
    texture = float(rng.choice([1.0, 1.0, 1.0, 1.0, 0.6, 1.3, 0.0]))
    gsd = 0.05 if rng.random() < 0.08 else 0.1  # some scenes resampled on read, as the pipeline does
    px = int(round(size * 0.1 / gsd))
    return dict(size=(px, px), gsd_m=gsd, n_objects=int(rng.integers(n_range[0], n_range[1] + 1)), seed=int(seed),
                texture=texture, surf=bool(rng.random() < 0.7),
                dtype=str(rng.choice(["uint8", "uint8", "uint8", "uint16"])))


@dataclass
class Scene:
    """A simulated scene as the detector reads it: image (H, W, 3) 0..1 at 0.1 m and the truth in its pixels."""

    seed: int
    image: np.ndarray
    xy: np.ndarray  # (K, 2) true centres, grid pixels [col, row]
    class_ids: np.ndarray  # (K,)
    length_px: np.ndarray  # (K,)
    params: dict


def render(seed: int, workdir=None, **overrides) -> Scene:
    """Simulate scene ``seed`` (``scene_params`` with ``overrides``) and read it back at 0.1 m."""
    from geodetect.io.raster import open_scene
    from geodetect.simulate import make_scene

    params = {**scene_params(seed), **overrides}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        sim = make_scene(os.path.join(tmp, f"rookery_{seed}.tif"), **params)
        with open_scene(sim.path, bands=(1, 2, 3), gsd_m=0.1) as sc:
            img, _ = sc.read(0, 0, sc.width, sc.height)
            fx, fy = sc.factor
    t = sim.truth
    xy = np.column_stack([t.px_col.to_numpy() * fx, t.px_row.to_numpy() * fy])
    ids = np.array([CLASSES.index(c) for c in t.class_name], np.int64)
    return Scene(seed, img, xy, ids, t.length_m.to_numpy() / 0.1, params)


def label_proposals(prop_xy: np.ndarray, xy: np.ndarray, class_ids: np.ndarray, length_px: np.ndarray, *,
                    pos_radius=POS_RADIUS, neg_radius=NEG_RADIUS) -> np.ndarray:
    """Label per proposal: an animal class, ``NOT_SEA_LION``, or -1 (left out).

    Radii are ``(px, body lengths)``: the larger of the two counts."""
    from scipy.spatial import cKDTree

    labels = np.full(len(prop_xy), NOT_SEA_LION, np.int64)
    if len(prop_xy) == 0 or len(xy) == 0:
        return labels
    tree = cKDTree(prop_xy)
    pos_r = np.maximum(pos_radius[0], pos_radius[1] * length_px)
    neg_r = np.maximum(neg_radius[0], neg_radius[1] * length_px)
    best = np.full(len(prop_xy), np.inf)
    for k in range(len(xy)):
        for j in tree.query_ball_point(xy[k], neg_r[k]):
            d = float(np.hypot(*(prop_xy[j] - xy[k])))
            if d <= pos_r[k] and d / length_px[k] < best[j]:
                best[j] = d / length_px[k]
                labels[j] = class_ids[k]
            elif labels[j] == NOT_SEA_LION:
                labels[j] = -1
    return labels


def scene_patches(scene: Scene, rng: np.random.Generator, *, max_negatives: int = 800, jitter: float = 1.5,
                  copies=(4, 4, 1, 2, 1), pos_radius=POS_RADIUS, neg_radius=NEG_RADIUS):
    """uint8 patches (N, 64, 64, 3) and labels (N,) from one scene (also a real photograph read at 0.1 m,
    :func:`geodetect_plugins.sea_lion_counter.real.grid_scene`)."""
    from scipy.spatial import cKDTree

    img = scene.image
    pxy, _, _, _ = propose(img, max_proposals=1 << 30)
    lab = label_proposals(pxy, scene.xy, scene.class_ids, scene.length_px, pos_radius=pos_radius,
                          neg_radius=neg_radius)
    pos = np.nonzero((lab >= 0) & (lab != NOT_SEA_LION))[0]
    neg = np.nonzero(lab == NOT_SEA_LION)[0]
    if len(neg) > max_negatives:
        # hard negatives first: blobs beside animals, then animal-coloured ones (tan rocks), then the rest
        from scipy import ndimage

        near = np.zeros(len(neg), bool)
        if len(scene.xy):
            d, k = cKDTree(scene.xy).query(pxy[neg])
            near = d <= scene.length_px[k]
        chroma = ndimage.uniform_filter(img[..., 0] - img[..., 2], 3)
        r = np.clip(pxy[neg, 1].astype(int), 0, img.shape[0] - 1)
        c = np.clip(pxy[neg, 0].astype(int), 0, img.shape[1] - 1)
        tan = ~near & (chroma[r, c] > 0.1)
        rest = ~near & ~tan
        chosen, room = [], max_negatives
        for group, cap in ((neg[near], max_negatives // 2), (neg[tan], max_negatives // 3), (neg[rest], max_negatives)):
            take = max(0, min(len(group), room, cap))
            chosen.append(np.sort(rng.choice(group, take, replace=False)) if take < len(group) else group)
            room -= take
        neg = np.concatenate(chosen)
    pts = [pxy[pos], pxy[neg]]
    labels = [lab[pos], lab[neg]]
    reps = np.asarray(copies)[scene.class_ids]
    centres = np.repeat(scene.xy, reps, axis=0)
    pts.append(centres + rng.uniform(-jitter, jitter, centres.shape))
    labels.append(np.repeat(scene.class_ids, reps))
    # off-centre views of each animal: not another animal
    if len(scene.xy):
        ang = rng.uniform(0, 2 * np.pi, len(scene.xy))
        lo = max(0.35, neg_radius[1] + 0.05)
        dist = np.maximum(rng.uniform(lo, lo + 0.35, len(scene.xy)) * scene.length_px, neg_radius[0])
        off = scene.xy + np.column_stack([np.cos(ang), np.sin(ang)]) * dist[:, None]
        check = label_proposals(off, scene.xy, scene.class_ids, scene.length_px, pos_radius=pos_radius,
                                neg_radius=neg_radius)
        off = off[check == NOT_SEA_LION]
        pts.append(off)
        labels.append(np.full(len(off), NOT_SEA_LION))
    xy = np.concatenate(pts)
    y = np.concatenate(labels)
    x = cut_patches(img, xy)
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), y
