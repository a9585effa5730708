"""geodetect against the peers a user would pick instead (issue 18), the same network on both sides.

Usage (in the peers' venv, made by bench/peers/install.sh; `make bench-peers` does both):
    bench/peers/.venv/bin/python bench/peers/run.py [--quick] [--peers torchgeo geoai deepforest rastervision]
        [--threads 2] [--size PEER=PIXELS ...]
    bench/peers/.venv/bin/python bench/peers/run.py --rss-only [--sides peer geodetect] [--peers torchgeo rastervision]
        [--size PEER=PIXELS ...] --workdir DIR --json FILE

For each peer, its documented large-scene entry point runs the peer's own network with fixed-seed
random weights (speed and seams are compared, not accuracy), and the same network, exported with
torch.onnx.export and described by a STAC MLM document, runs through gd.detect. Same scene, tile
size (512), overlap (64), batch size (8) and thread count (torch.set_num_threads = onnxruntime
intra-op threads = OMP_NUM_THREADS).

- torchgeo: RasterDataset + GridGeoSampler(size=512, stride=448) + DataLoader(stack_samples), each
  chip's argmax written into a scene-sized array at the chip's bounds (TorchGeo leaves stitching to
  the user; this is the plain write its examples do), georeferenced from the dataset's bounds.
  Network: torchgeo.models.FCN(3, 2, num_filters=8).
- geoai: geoai.train.semantic_inference_on_geotiff (what geoai.semantic_segmentation calls after
  building its smp model), window 512, overlap 64. Network: a segmentation_models_pytorch U-Net
  (resnet18 encoder, depth 3, decoder 32/16/8: a full-depth one costs 1.6 s a tile here).
- deepforest: deepforest.main.deepforest(model=...).predict_tile(path, patch_size=512, patch_overlap=64/512,
  iou_threshold=0.15, dataloader_strategy="window"), then deepforest.utilities.image_to_geo_coordinates
  (predict_tile gives pixel boxes, no CRS). Network: torchvision's RetinaNet-ResNet50-FPN, 1 class, built
  with no weights (DeepForest's own constructor would download COCO/ImageNet weights), no resize inside
  (min_size = max_size = 512), DeepForest's score_thresh 0.1 and nms_thresh 0.05; its last two
  convolutions fitted so that it boxes the seam scene's squares (calibrate_boxes). geodetect runs the
  whole model (decoding and per-tile NMS included) exported for one tile, padded to (1, 300, 6): the
  MLM boxes layout. Its 36 Mpx scene took 222 s (geodetect 112 s) on 2 cores (session 13).
- rastervision: no model bundle: a SemanticSegmentationLearner(config, model=net, training=False), a
  Scene (RasterioSource + SemanticSegmentationLabelStore), predict_scene_ss (what the pytorch backend's
  predict_scene runs) with chip 512, stride 448, crop_sz "auto" (half the overlap dropped at chip edges),
  label_store.save (a georeferenced labels.tif). Network: the TorchGeo row's FCN (RV takes any nn.Module;
  its default DeepLabV3-ResNet50 would cost seconds a tile).

Figures, each side in its own fresh process:
- throughput: Mpx/s of the entry point on a 36 Mpx (6000^2, --quick 2048^2) deflate RGB scene;
- peak RSS (VmHWM) of that process;
- seams (masks; boxes: see box_seam_figures): a 2304^2 scene (512 + 4 x 448: every tiler's grid lands on the same seams) of plain
  background with 48 px bright squares centred on tile seams, on tile corners and inside tiles.
  The reference is the same network run on the whole scene at once (no tiles): whatever the
  random network makes of the squares, a seam-exact tiler must give the same mask. Reported: pixels
  that differ from the reference, and reference objects (connected components) that come out
  split into several pieces (or duplicated), or missing;
- CRS: each side's output georeferenced by the side itself (geodetect: polygons in the scene's CRS;
  peers: their mask with the transform they give it), compared with the reference objects'
  bounds in the scene's CRS: max error in pixels, and whether it is within half a pixel.

--rss-only (issue 18's "peak RSS at 900 Mpx"): the big scene only, 30000^2 (900 Mpx) unless --size, no
seam scene and no seam figures. Each side (--sides) runs in its own process as above; the parent also
reads the child's VmHWM from /proc every second, so a side that is stopped (--timeout), killed (the
kernel's OOM killer: SIGKILL) or stopped because the machine's MemAvailable fell under
--min-available-mb keeps the peak it had reached, and the row says which (that guard stops the side it
watches, whatever process took the memory: for clean figures run one side at a time). Recorded per side: seconds,
peak RSS, the output's size on disk, the load average before and after; geodetect's side also the git
commit (and whether geodetect/ had uncommitted changes) and the geodetect package it imported. Peers
whose exported ONNX networks are byte-identical (torchgeo and rastervision: the same FCN, same seed, same
calibration) share one geodetect run (the second row says "same_onnx_as"). Rows are merged into --json
when it already holds an --rss-only run, so sides can be run one at a time. The big outputs are deleted
after each side unless --keep-outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TILE, OVERLAP, BATCH = 512, 64, 8
STRIDE = TILE - OVERLAP
SEAM_SIZE = TILE + 4 * STRIDE  # 2304
SQUARE = 48
BG, FG = 60, 200
# DeepForest: its config's defaults (score_thresh 0.1, nms_thresh 0.05 inside a window, predict_tile's
# iou_threshold 0.15 across windows); K: detections per tile in the exported model's padded output
DF_SCORE, DF_NMS, DF_MOSAIC_IOU, DF_K = 0.1, 0.05, 0.15, 300
BOX_PEERS = ("deepforest",)
#: geodetect-raster: gd.segment, the class map as a GeoTIFF (the output a mask peer's side writes), no polygons
SIDES = ("peer", "geodetect", "geodetect-raster")


# ----------------------------------------------------------------------------- networks

def build_net(peer: str, seed: int):
    import torch

    torch.manual_seed(seed)
    if peer == "torchgeo":
        from torchgeo.models import FCN

        return FCN(3, 2, num_filters=8).eval()
    if peer == "rastervision":
        # Raster Vision's own default (DeepLabV3-ResNet50) costs seconds a tile here; its Learner takes any
        # nn.Module, so it gets the small FCN of the TorchGeo row (receptive field 11 px: seams can be exact).
        from torchgeo.models import FCN

        return FCN(3, 2, num_filters=8).eval()
    if peer == "geoai":
        import segmentation_models_pytorch as smp

        return smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=2, encoder_depth=3,
                        decoder_channels=(32, 16, 8)).eval()
    if peer == "deepforest":
        # DeepForest's RetinaNetHub is torchvision's RetinaNet-ResNet50-FPN (1 class), but its constructor asks
        # torchvision for COCO (or ImageNet) weights: no network here, so the same torchvision model is built
        # with no weights at all and handed to deepforest.main.deepforest(model=...). min_size = max_size =
        # the tile: the model does not resize (RetinaNet's default upsamples each 512 tile to 800 px, 2.4x the
        # work on both sides alike).
        from torchvision.models.detection import retinanet_resnet50_fpn

        return retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=1, score_thresh=DF_SCORE,
                                      nms_thresh=DF_NMS, min_size=TILE, max_size=TILE).eval()
    raise SystemExit(f"unknown peer {peer!r}")


def calibrate(net, peer: str = "", seam_img=None, objs=None) -> dict:
    """Make the random network's two classes split background from the bright squares.

    With PyTorch's default initialisation the logits barely depend on the input (biases dominate),
    so every pixel gets the same class. The last convolution is rewritten as the difference of its two
    class rows, shifted and scaled so that the network's own features give logit +2 in the middle of a
    bright square and -2 on plain background (class 0 row set to zero): argmax of the result is a
    deterministic function of the network's features, and there are objects to stitch.
    Box detectors (RetinaNet): see calibrate_boxes.
    """
    import torch

    if peer in BOX_PEERS:
        return calibrate_boxes(net, seam_img, objs)

    img = np.full((1, 3, 256, 256), BG, np.float32)
    img[:, :, 104:152, 104:152] = FG
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        y = net(torch.from_numpy(img / 255.0))[0]
        d = (y[1] - y[0]).numpy()
        d_fg, d_bg = float(d[128, 128]), float(d[128, 40])
        if d_fg == d_bg:
            raise SystemExit("the network gives the same logits on background and squares; change the seed")
        c, k = (d_fg + d_bg) / 2, 4.0 / (d_fg - d_bg)
        w, b = last.weight.data.clone(), last.bias.data.clone()
        last.weight.data[1] = k * (w[1] - w[0])
        last.bias.data[1] = k * (b[1] - b[0] - c)
        last.weight.data[0] = 0
        last.bias.data[0] = 0
    return {"logit_diff_square": d_fg, "logit_diff_background": d_bg}


def _square_boxes(objs, x0: int, y0: int):
    """The placed squares seen by the tile at (x0, y0): pixel boxes clipped to it, and the fraction visible."""
    h = SQUARE // 2
    out = []
    for _, cy, cx in objs:
        a, b = max(cx - h - x0, 0), min(cx + h - x0, TILE)
        c, d = max(cy - h - y0, 0), min(cy + h - y0, TILE)
        if a < b and c < d:
            out.append((a, c, b, d, (b - a) * (d - c) / SQUARE**2))
    return out


def calibrate_boxes(net, seam_img, objs) -> dict:
    """Make the random RetinaNet find the bright squares: its two last convolutions fitted in closed form.

    A random RetinaNet scores every anchor about sigmoid(-4.6) (torchvision's prior), under any score
    threshold. The backbone, FPN and the heads' conv towers keep their fixed-seed random weights; only
    the heads' last convolutions (cls_logits, bbox_reg) are refitted, by weighted ridge regression on
    the towers' features of five tiles of the seam scene: anchors with IoU >= 0.5 with a square (at least
    half of it in the tile) -> logit +6, anchors with IoU < 0.4 -> -6 (cls_logits, 3x3 taps); box deltas of
    the positive anchors (bbox_reg, centre tap). A deterministic function of the network's own features,
    as for the FCNs: the network then boxes whole and half squares, and little else.
    """
    import torch
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.ops import box_iou

    head = net.head
    A = head.classification_head.num_anchors
    cls, reg = head.classification_head.cls_logits, head.regression_head.bbox_reg
    feats_c, feats_r, pos, neg, anchors, matched = [], [], [], [], [], []
    for x0, y0 in ((0, 0), (STRIDE, 0), (2 * STRIDE, STRIDE), (4 * STRIDE, 4 * STRIDE), (3 * STRIDE, 2 * STRIDE)):
        img = torch.from_numpy(seam_img[:, y0:y0 + TILE, x0:x0 + TILE].astype(np.float32) / 255.0)
        boxes = _square_boxes(objs, x0, y0)
        with torch.no_grad():
            images, _ = net.transform([img])
            fm = list(net.backbone(images.tensors).values())
            anc = net.anchor_generator(images, fm)[0]
            feats_c.append(torch.cat([torch.nn.functional.unfold(head.classification_head.conv(f), 3, padding=1)[0].T
                                      for f in fm]))
            feats_r.append(torch.cat([head.regression_head.conv(f)[0].permute(1, 2, 0).reshape(-1, f.shape[1])
                                      for f in fm]))
        b = torch.tensor([bb[:4] for bb in boxes], dtype=torch.float32)
        half = torch.tensor([bb[4] >= 0.5 for bb in boxes])
        best, idx = box_iou(anc, b).max(1)
        pos.append(((best >= 0.5) & half[idx]).view(-1, A))
        neg.append((best < 0.4).view(-1, A))
        anchors.append(anc.view(-1, A, 4))
        matched.append(b[idx].view(-1, A, 4))
    xc, xr = torch.cat(feats_c).double(), torch.cat(feats_r).double()
    pos, neg, anchors, matched = torch.cat(pos), torch.cat(neg), torch.cat(anchors), torch.cat(matched)

    def ridge(x, y, w, lam):
        x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
        g = x1.T @ (x1 * w[:, None])
        g += lam * torch.trace(g) / len(g) * torch.eye(len(g), dtype=x.dtype)
        return torch.linalg.solve(g, (x1 * w[:, None]).T @ y)

    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
    with torch.no_grad():
        cls.weight.zero_()
        reg.weight.zero_()
        reg.bias.zero_()
        for a in range(A):
            p, n = pos[:, a], neg[:, a]
            if not p.any():
                cls.bias[a] = -10.0
                continue
            sel = p | n
            y = torch.where(p, 6.0, -6.0).double()[sel]
            w = torch.where(p, float(n.sum()) / float(p.sum()), 1.0).double()[sel]  # classes weighted equally
            sol = ridge(xc[sel], y, w, 1e-3)
            cls.weight[a] = sol[:-1].float().view(cls.weight.shape[1:])
            cls.bias[a] = float(sol[-1])
            t = coder.encode_single(matched[p, a], anchors[p, a]).double()
            solr = ridge(xr[p], t, torch.ones(int(p.sum()), dtype=torch.float64), 1e-2)
            reg.weight[4 * a:4 * a + 4, :, 1, 1] = solr[:-1].T.float()
            reg.bias[4 * a:4 * a + 4] = solr[-1].float()
        logit = xc @ cls.weight.reshape(A, -1).T.double() + cls.bias.double()
    return {"positive_anchors": int(pos.sum()), "negative_anchors": int(neg.sum()),
            "min_logit_positive": float(logit[pos].min()), "max_logit_negative": float(logit[neg].max()),
            "negatives_over_score_threshold": int((torch.sigmoid(logit[neg]) >= DF_SCORE).sum())}


class _Prob1:  # made a torch Module in export_onnx (torch is imported lazily)
    pass


def export_onnx(net, path: Path, peer: str = "") -> None:
    """softmax(logits)[:, 1:2]: the probability of class 1, one channel (argmax of two classes == p1 > 0.5).

    Box detectors: the whole torchvision RetinaNet in eval mode (normalisation, backbone, heads, anchor
    decoding, score threshold, top-k per level, NMS: exactly what DeepForest runs on each window),
    traced for one tile of TILE x TILE (batch 1: torchvision's detection models take a list of
    images; geodetect runs a fixed-batch model one tile at a time), its detections padded to
    (1, DF_K, 6) [col_min, row_min, col_max, row_max, score, class] with score 0: geodetect's MLM
    boxes layout.
    """
    import torch

    if peer in BOX_PEERS:
        class Boxes6(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, x):
                out = self.inner([x[0]])[0]
                d = torch.cat([out["boxes"], out["scores"][:, None], out["labels"][:, None].to(torch.float32)], 1)
                return torch.cat([d, torch.zeros(DF_K, 6)])[:DF_K][None]

        import warnings

        with warnings.catch_warnings():  # tracing torchvision's detection code: a screenful of TracerWarnings
            warnings.simplefilter("ignore")
            torch.onnx.export(Boxes6(net).eval(), torch.rand(1, 3, TILE, TILE), str(path), dynamo=False,
                              opset_version=17, input_names=["tiles"], output_names=["result"])
        return

    class Prob1(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return torch.softmax(self.inner(x), 1)[:, 1:2]

    torch.onnx.export(Prob1(net).eval(), torch.rand(1, 3, TILE, TILE), str(path), dynamo=False, opset_version=17,
                      input_names=["tiles"], output_names=["result"],
                      dynamic_axes={"tiles": {0: "n"}, "result": {0: "n"}})


def write_model_mlm(peer: str, onnx_path: Path, doc: Path) -> Path:
    from geodetect.mlm import write_mlm
    from geodetect.plugins import DetectorSpec, Task

    if peer in BOX_PEERS:  # geodetect's own cross-tile dedupe, at its defaults (nms_iou 0.5 on IoU or IoMin)
        spec = DetectorSpec(name=f"peer-{peer}", version="0.0.0", task=Task.BOXES, classes=("tree",), bands=(1, 2, 3),
                            tile_size=TILE, overlap=OVERLAP, scaling=(0.0, 255.0),
                            description=f"{peer}'s network, fixed-seed random weights, calibrated (benchmark)")
        return write_mlm(doc, spec=spec, onnx_file=onnx_path, input_shape=[1, 3, TILE, TILE],
                         input_dim_order=["batch", "channel", "height", "width"], result_shape=[1, DF_K, 6],
                         result_dim_order=["batch", "detection", "attribute"], tasks=["object-detection"],
                         value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 255}], score_threshold=DF_SCORE)
    spec = DetectorSpec(name=f"peer-{peer}", version="0.0.0", task=Task.SEGMENTATION, classes=("object",),
                        bands=(1, 2, 3), tile_size=TILE, overlap=OVERLAP, scaling=(0.0, 255.0), threshold=0.5,
                        min_polygon_px=1, description=f"{peer}'s network, fixed-seed random weights (benchmark)")
    return write_mlm(doc, spec=spec, onnx_file=onnx_path, input_shape=[-1, 3, TILE, TILE],
                     input_dim_order=["batch", "channel", "height", "width"], result_shape=[-1, 1, TILE, TILE],
                     result_dim_order=["batch", "class", "height", "width"], tasks=["semantic-segmentation"],
                     value_scaling=[{"type": "min-max", "minimum": 0, "maximum": 255}])


# ----------------------------------------------------------------------------- scenes

def _transform():
    from rasterio.transform import from_origin

    return from_origin(400000.0, 5000000.0, 0.5, 0.5)


def seam_scene(path: Path) -> tuple[str, list]:
    """Plain background, 48 px squares centred on seams (x or y = k * 448), corners (both) and tile insides."""
    import rasterio

    img, objs = seam_array()
    with rasterio.open(path, "w", driver="GTiff", width=SEAM_SIZE, height=SEAM_SIZE, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=_transform(), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as dst:
        dst.write(img)
    return str(path), objs


def seam_array() -> tuple[np.ndarray, list]:
    img = np.full((3, SEAM_SIZE, SEAM_SIZE), BG, np.uint8)
    objs = []
    h = SQUARE // 2
    for i in range(1, 5):
        for j in range(1, 5):
            for kind, (cy, cx) in (("corner", (i * STRIDE, j * STRIDE)), ("seam", (i * STRIDE, j * STRIDE - 224)),
                                   ("seam", (i * STRIDE - 224, j * STRIDE)), ("inside", (i * STRIDE - 224, j * STRIDE - 224))):
                img[:, cy - h:cy + h, cx - h:cx + h] = FG
                objs.append((kind, cy, cx))
    return img, objs


def big_scene(path: Path, size: int) -> str:
    import importlib.util

    spec = importlib.util.spec_from_file_location("geodetect_bench_run", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod._dense_scene(path, size)  # smooth field + noise, deflate, 512 px blocks, EPSG:32633, 0.1 m


# ----------------------------------------------------------------------------- the sides (one per process)

def _vmhwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_torchgeo(net, scene: str, out_tif: str) -> dict:
    import rasterio
    import torch
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    class Scene(RasterDataset):
        filename_glob = Path(scene).name
        is_image = True

    ds = Scene(paths=[scene])
    sampler = GridGeoSampler(ds, size=TILE, stride=STRIDE)
    loader = DataLoader(ds, sampler=sampler, batch_size=BATCH, collate_fn=stack_samples, num_workers=0)
    minx, miny, maxx, maxy = ds.index.total_bounds
    rx, ry = ds.res
    width, height = round((maxx - minx) / rx), round((maxy - miny) / ry)
    out = np.zeros((height, width), np.uint8)
    chips = 0
    with torch.no_grad():
        for batch in loader:
            pred = net(batch["image"].float() / 255.0).argmax(1).numpy().astype(np.uint8)
            for k, bounds in enumerate(batch["bounds"]):
                xs, ys = bounds[0], bounds[1]
                col, row = round((xs.start - minx) / rx), round((maxy - ys.stop) / ry)
                r0, c0 = max(row, 0), max(col, 0)
                r1, c1 = min(row + TILE, height), min(col + TILE, width)
                out[r0:r1, c0:c1] = pred[k, r0 - row:r1 - row, c0 - col:c1 - col]
                chips += 1
    from rasterio.transform import from_origin

    with rasterio.open(out_tif, "w", driver="GTiff", width=width, height=height, count=1, dtype="uint8",
                       crs=ds.crs, transform=from_origin(minx, maxy, rx, ry), compress="deflate") as dst:
        dst.write(out, 1)
    return {"tiles": chips}


def run_geoai(net, scene: str, out_tif: str) -> dict:
    import torch
    from geoai.train import semantic_inference_on_geotiff

    semantic_inference_on_geotiff(net, scene, out_tif, window_size=TILE, overlap=OVERLAP, batch_size=BATCH,
                                  num_channels=3, num_classes=2, device=torch.device("cpu"), quiet=True)
    return {}


def run_deepforest(net, scene: str, out_gpkg: str, workdir: Path, threads: int) -> dict:
    """DeepForest's predict_tile on the scene's path, windows read one at a time ("window": its out-of-memory
    strategy for large rasters), then its own image_to_geo_coordinates for the boxes in the scene's CRS."""
    import torch
    from deepforest import main as df_main
    from deepforest import utilities

    model = df_main.deepforest(model=net, config_args={
        "model": {"name": None}, "num_classes": 1, "label_dict": {"tree": 0}, "workers": 0, "batch_size": BATCH,
        "accelerator": "cpu", "devices": 1, "score_thresh": DF_SCORE, "nms_thresh": DF_NMS,
        "log_root": str(workdir / "deepforest-logs")})
    model.set_labels({"tree": 0})  # done by create_model() when deepforest builds the model itself
    torch.set_num_threads(threads)
    res = model.predict_tile(path=scene, patch_size=TILE, patch_overlap=OVERLAP / TILE, iou_threshold=DF_MOSAIC_IOU,
                             dataloader_strategy="window")
    info = {"boxes": 0 if res is None else len(res)}
    if res is None:
        import geopandas as gpd

        gpd.GeoDataFrame({"geometry": []}, geometry="geometry", crs=None).to_file(out_gpkg, driver="GPKG")
        return info
    b = res.geometry.bounds
    info["returned"] = {"crs": None if res.crs is None else str(res.crs),
                        "first_box_bounds": [round(float(v), 3) for v in b.iloc[0]],
                        "coordinates_integer": bool(np.all(np.mod(b.to_numpy(), 1) == 0))}
    geo = utilities.image_to_geo_coordinates(res)  # DeepForest's own conversion (root_dir from the results)
    info["geo_crs"] = None if geo.crs is None else str(geo.crs)
    geo[["score", "geometry"]].to_file(out_gpkg, driver="GPKG")
    return info


def run_rastervision(net, scene: str, out_tif: str, workdir: Path) -> dict:
    """Raster Vision's predict_scene path without a model bundle: a SemanticSegmentationLearner built
    from a config (training=False) around the torch network, a Scene (RasterioSource + its
    SemanticSegmentationLabelStore), then predict_scene_ss (what PyTorchSemanticSegmentation.predict_scene
    runs) with chip 512, stride 448, crop_sz "auto" (RV drops half the overlap at chip edges), and
    label_store.save: labels.tif, georeferenced by RV's CRS transformer."""
    import shutil

    from rastervision.core.data import ClassConfig, RasterioSource, Scene, SemanticSegmentationLabelStore
    from rastervision.core.rv_pipeline import SemanticSegmentationPredictOptions
    from rastervision.pytorch_learner import (SemanticSegmentationGeoDataConfig, SemanticSegmentationLearner,
                                              SemanticSegmentationLearnerConfig)
    from rastervision.pytorch_learner.utils.prediction import predict_scene_ss

    cc = ClassConfig(names=["background", "object"], null_class="background")
    cfg = SemanticSegmentationLearnerConfig(data=SemanticSegmentationGeoDataConfig(class_config=cc, img_sz=TILE,
                                                                                  num_workers=0))
    learner = SemanticSegmentationLearner(cfg, model=net, training=False, tmp_dir=str(workdir / "rv-tmp"))
    rs = RasterioSource(scene, allow_streaming=False)
    out_dir = Path(out_tif + ".d")
    store = SemanticSegmentationLabelStore(str(out_dir), crs_transformer=rs.crs_transformer, class_config=cc,
                                           bbox=rs.bbox, tmp_dir=str(workdir / "rv-tmp"))
    sc = Scene(id="scene", raster_source=rs, label_store=store)
    opts = SemanticSegmentationPredictOptions(chip_sz=TILE, stride=STRIDE, crop_sz="auto", batch_sz=BATCH)
    labels = predict_scene_ss(learner, sc, opts)
    store.save(labels)
    shutil.move(str(out_dir / "labels.tif"), out_tif)
    return {"crop_sz": opts.crop_sz}


def worker(args) -> None:
    wd = Path(args.workdir)
    cfg = json.loads((wd / f"{args.peer}.json").read_text())
    t0 = time.perf_counter()
    info: dict = {}
    if args.side == "peer":  # torch is imported on this side only: it is not part of geodetect's footprint
        import torch

        torch.set_num_threads(args.threads)
        net = build_net(args.peer, cfg["seed"])
        net.load_state_dict(torch.load(wd / f"{args.peer}.pt", map_location="cpu"))
        t0 = time.perf_counter()
        if args.peer == "deepforest":
            info = run_deepforest(net, args.scene, args.out, wd, args.threads)
        elif args.peer == "rastervision":
            info = run_rastervision(net, args.scene, args.out, wd)
        else:
            info = (run_torchgeo if args.peer == "torchgeo" else run_geoai)(net, args.scene, args.out)
    else:
        import geodetect as gd
        from geodetect.mlm import detector_class

        import rasterio

        with rasterio.open(args.scene) as ds:
            crs = ds.crs.to_string()
        cls = detector_class(wd / f"{args.peer}-mlm.json")
        t0 = time.perf_counter()
        if args.side == "geodetect-raster":  # the output TorchGeo's side writes: a class raster, no polygons
            res = gd.segment(args.scene, cls, args.out, progress=False, batch_size=BATCH)
            print(json.dumps({"seconds": time.perf_counter() - t0, "vmhwm_mb": _vmhwm_mb(), "pixels": res["pixels"],
                              "geodetect_path": str(Path(gd.__file__).parent)}))
            return
        dets = gd.detect(args.scene, cls, crs_out=crs, progress=False, batch_size=BATCH)
        info = {"polygons": len(dets), "geodetect_path": str(Path(gd.__file__).parent)}
        gd.write(dets[["score", "geometry"] if "score" in dets.columns else ["geometry"]], args.out)  # geodetect's writer
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "vmhwm_mb": _vmhwm_mb(), **info}))


def run_side(peer, side, scene, out, workdir, threads, timeout=3600) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               GEODETECT_ORT_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, __file__, "--worker", "--peer", peer, "--side", side, "--scene", scene, "--out", out,
           "--workdir", str(workdir), "--threads", str(threads)]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"not finished in {timeout} s (stopped)", "wall_s": time.perf_counter() - t}
    if p.returncode != 0:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:300], "wall_s": time.perf_counter() - t}
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["wall_s"] = time.perf_counter() - t
    return res


def _proc_vmhwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _mem_available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def run_side_watched(peer, side, scene, out, workdir, threads, timeout, min_available_mb) -> dict:
    """run_side for --rss-only: the same worker, watched from here every second (VmHWM from /proc), so that
    a side stopped for time or memory, or killed by the kernel, still reports the peak it had reached."""
    import signal

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               GEODETECT_ORT_THREADS=str(threads), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, __file__, "--worker", "--peer", peer, "--side", side, "--scene", scene, "--out", out,
           "--workdir", str(workdir), "--threads", str(threads)]
    log, log_out = Path(out + ".stderr"), Path(out + ".stdout")
    t = time.perf_counter()
    peak, stopped, min_avail = None, None, float("inf")
    with open(log, "w") as err, open(log_out, "w") as so:  # files, not pipes: a chatty side cannot block
        p = subprocess.Popen(cmd, env=env, stdout=so, stderr=err, text=True)
        while p.poll() is None:
            try:
                p.wait(1.0)
            except subprocess.TimeoutExpired:
                pass
            v = _proc_vmhwm_mb(p.pid)
            peak = v if v is not None else peak
            avail = _mem_available_mb()
            min_avail = min(min_avail, avail)
            if p.poll() is not None:
                break
            if time.perf_counter() - t > timeout:
                stopped = f"not finished in {timeout / 60:g} min (stopped)"
            elif avail < min_available_mb:
                stopped = (f"stopped: the machine's available memory fell to {avail:.0f} MB "
                           f"(< {min_available_mb} MB) at this side's peak RSS {peak or 0:.0f} MB")
            if stopped:
                p.kill()
                p.wait()
                break
    stdout = log_out.read_text(errors="replace")
    wall = time.perf_counter() - t
    res: dict = {"wall_s": wall, "vmhwm_mb_watched": peak, "min_mem_available_mb": min_avail}
    tail = (log.read_text(errors="replace").strip().splitlines() or ["?"])[-1][:300]
    if stopped:
        res["error"] = stopped
    elif p.returncode != 0:
        sig = -p.returncode if p.returncode < 0 else None
        name = signal.Signals(sig).name if sig else None
        res["error"] = (f"killed by {name}" + (" (the kernel's OOM killer?)" if name == "SIGKILL" else "")
                        if sig else f"exit {p.returncode}: {tail}")
        res["stderr_tail"] = tail
    else:
        res.update(json.loads(stdout.strip().splitlines()[-1]))
    log.unlink(missing_ok=True)
    log_out.unlink(missing_ok=True)
    return res


# ----------------------------------------------------------------------------- seam + CRS check

def reference_mask(net, scene: str) -> np.ndarray:
    import rasterio
    import torch

    with rasterio.open(scene) as ds:
        img = ds.read().astype(np.float32) / 255.0
    with torch.no_grad():
        return net(torch.from_numpy(img[None])).argmax(1)[0].numpy().astype(np.uint8)


def _polygons_of_side(side: str, out: str):
    """The side's objects as shapely polygons in the scene's CRS, georeferenced by the side itself."""
    import geopandas as gpd
    import rasterio
    import shapely
    from rasterio.features import shapes

    if side == "geodetect" or out.endswith(".gpkg"):
        return list(gpd.read_file(out).geometry)
    with rasterio.open(out) as ds:
        arr = ds.read(1)
        tr = ds.transform
    return [shapely.geometry.shape(g) for g, v in shapes(arr, mask=arr == 1, transform=tr) if v == 1]


def seam_figures(ref: np.ndarray, polys: list, objs: list) -> dict:
    import shapely
    from rasterio.features import rasterize, shapes
    from scipy import ndimage

    tr = _transform()
    res = tr.a
    ref_polys = [shapely.geometry.shape(g) for g, v in shapes(ref, mask=ref == 1, transform=tr) if v == 1]
    got = rasterize([(p, 1) for p in polys], out_shape=ref.shape, transform=tr, fill=0, dtype="uint8") if polys \
        else np.zeros_like(ref)
    mismatch = int((got != ref).sum())
    tree = shapely.STRtree(polys) if polys else None
    ref_tree = shapely.STRtree(ref_polys)
    # extra: output objects that touch no reference object (e.g. made by a tile's edge)
    extra = sum(1 for p in polys if len(ref_tree.query(p, predicate="intersects")) == 0)
    # the known objects: reference components that hold the centre of a placed square
    centres = [shapely.Point(*(tr * (cx + 0.5, cy + 0.5))) for _, cy, cx in objs]
    kind_of = {}
    for rp_i, rp in enumerate(ref_polys):
        for (kind, _, _), c in zip(objs, centres):
            if rp.contains(c):
                kind_of.setdefault(rp_i, kind)
    known = [(ref_polys[i], k) for i, k in kind_of.items()]
    split = missing = 0
    errs = []  # placement: bounds of the objects inside tiles (whole in every tile that sees them)
    for rp, kind in known:
        hits = [] if tree is None else [polys[i] for i in tree.query(rp, predicate="intersects")
                                        if polys[i].intersection(rp).area > 0.25 * res * res]
        if not hits:
            missing += 1
        elif len(hits) > 1:
            split += 1
        elif kind == "inside":
            a, b = np.array(rp.bounds), np.array(hits[0].bounds)
            errs.append(float(np.abs(a - b).max() / res))
    # squares placed: how many the reference shows as one object of their own
    lab, _ = ndimage.label(ref)
    kinds = {}
    for kind, cy, cx in objs:
        kinds.setdefault(kind, 0)
        kinds[kind] += int(lab[cy, cx] > 0)
    max_err = max(errs) if errs else None
    return {"ref_objects": len(ref_polys), "squares_in_reference": kinds, "known_objects": len(known),
            "objects_out": len(polys), "extra_objects": extra,
            "mismatch_px": mismatch, "split_or_duplicated": split, "missing": missing,
            "crs_max_err_px": max_err, "crs_within_half_px": (max_err is not None and max_err <= 0.5)}


def reference_boxes(net, seam_img: np.ndarray, objs: list) -> dict:
    """The network's own box for each square inside a tile, from a plain torch run on that one tile.

    A square inside a tile (kind "inside") is seen by that tile only, so both sides' boxes for it come
    from the same forward pass: its box in pixels + the tile's offset, through the scene's transform, is
    where a correct host puts it. Keyed by (cy, cx); the highest-scoring box whose centre is in the square.
    """
    import torch

    out = {}
    h = SQUARE // 2
    for _, cy, cx in (o for o in objs if o[0] == "inside"):
        x0, y0 = (cx // STRIDE) * STRIDE, (cy // STRIDE) * STRIDE
        img = torch.from_numpy(seam_img[:, y0:y0 + TILE, x0:x0 + TILE].astype(np.float32) / 255.0)
        with torch.no_grad():
            det = net([img])[0]
        best = None
        for b, sc in zip(det["boxes"].numpy().astype(np.float64), det["scores"].numpy()):
            mx, my = (b[0] + b[2]) / 2 + x0, (b[1] + b[3]) / 2 + y0
            if abs(mx - cx) < h and abs(my - cy) < h and (best is None or sc > best[1]):
                best = (b + [x0, y0, x0, y0], float(sc))
        if best is not None:
            out[(cy, cx)] = best[0]
    return out


def box_seam_figures(polys: list, objs: list, ref: dict) -> dict:
    """Boxes against the 64 placed squares: each square should get exactly one box, whole.

    A box belongs to the square its centre falls in. Per square: none (missing), two or more
    (duplicated: typically the whole box from one tile and the cut one from the next), or one that
    covers under half of it by IoU (cut: only the part a tile saw). Boxes whose centre is in no square
    are extra. CRS: the side's box of each inside square against the reference (same network, same
    tile, pixel box through the scene's transform), max bounds difference in pixels.
    """
    tr = _transform()
    res = tr.a
    inv = ~tr
    h = SQUARE // 2
    px = []
    for p in polys:
        x0, y0, x1, y1 = p.bounds
        c0, r0 = inv * (x0, y1)
        c1, r1 = inv * (x1, y0)
        px.append((min(c0, c1), min(r0, r1), max(c0, c1), max(r0, r1)))
    px = np.array(px, np.float64).reshape(-1, 4)
    cx_, cy_ = (px[:, 0] + px[:, 2]) / 2, (px[:, 1] + px[:, 3]) / 2
    owner = np.full(len(px), -1)
    dup = cut = missing = 0
    per_kind: dict = {}
    errs = []
    for k, (kind, cy, cx) in enumerate(objs):
        hit = np.flatnonzero((np.abs(cx_ - cx) < h) & (np.abs(cy_ - cy) < h))
        owner[hit] = k
        d = per_kind.setdefault(kind, {"placed": 0, "one_whole_box": 0})
        d["placed"] += 1
        if len(hit) == 0:
            missing += 1
            continue
        if len(hit) > 1:
            dup += 1
            continue
        b = px[hit[0]]
        iw = max(0.0, min(b[2], cx + h) - max(b[0], cx - h))
        ih = max(0.0, min(b[3], cy + h) - max(b[1], cy - h))
        inter = iw * ih
        iou = inter / ((b[2] - b[0]) * (b[3] - b[1]) + SQUARE**2 - inter)
        if iou < 0.5:
            cut += 1
            continue
        d["one_whole_box"] += 1
        if kind == "inside" and (cy, cx) in ref:
            r = ref[(cy, cx)]
            x0, y1 = tr * (r[0], r[1])
            x1, y0 = tr * (r[2], r[3])
            q = polys[hit[0]].bounds
            errs.append(float(np.abs(np.array(q) - np.array([x0, y0, x1, y1])).max() / res))
    max_err = max(errs) if errs else None
    return {"known_objects": len(objs), "objects_out": len(polys), "squares": per_kind,
            "extra_objects": int((owner < 0).sum()), "mismatch_px": None, "duplicated": dup, "cut": cut,
            "split_or_duplicated": dup + cut, "missing": missing, "crs_checked": len(errs),
            "crs_max_err_px": max_err, "crs_within_half_px": (max_err is not None and max_err <= 0.5)}


# ----------------------------------------------------------------------------- main

def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("geodetect", "torch", "torchvision", "onnxruntime", "torchgeo", "segmentation-models-pytorch",
                "geoai-py", "deepforest", "pytorch-lightning", "rastervision", "rasterio", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2048^2 throughput scene instead of 6000^2")
    ap.add_argument("--peers", nargs="+", default=["torchgeo", "geoai", "deepforest", "rastervision"], choices=["torchgeo", "geoai", "deepforest", "rastervision"],
                    help="default: torchgeo geoai (deepforest: a RetinaNet-ResNet50 takes seconds a tile here)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", nargs="+", metavar="PEER=PIXELS", help="another scene side for a peer (e.g. geoai=2048)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a side may run before it is stopped")
    ap.add_argument("--json", default=None, help="default bench/peers/results.json (--rss-only: results_rss.json)")
    ap.add_argument("--workdir", default=None, help="scenes and models (default: a temporary folder)")
    ap.add_argument("--rss-only", action="store_true", help="peak RSS (and seconds) on the big scene only, "
                    "30000^2 = 900 Mpx unless --size; no seam scene or figures; rows merged into --json "
                    "(see the module docstring)")
    ap.add_argument("--sides", nargs="+", default=["peer", "geodetect", "geodetect-raster"],
                    choices=["peer", "geodetect", "geodetect-raster"],
                    help="--rss-only: the sides to run (default all three; geodetect-raster: gd.segment, a class raster as a mask peer writes)")
    ap.add_argument("--min-available-mb", type=int, default=1024, help="--rss-only: stop a side when the "
                    "machine's MemAvailable falls under this (recorded as such, with the peak reached; it stops the side this "
                    "run watches, whoever used the memory: run one side at a time)")
    ap.add_argument("--keep-outputs", action="store_true", help="--rss-only: keep the big outputs")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.rss_only:
        args.json = args.json or str(HERE / "results_rss.json")
        return rss_only(args)
    args.json = args.json or str(HERE / "results.json")

    import torch

    torch.set_num_threads(args.threads)
    wd = Path(args.workdir or tempfile.mkdtemp(prefix="geodetect-peers-"))
    wd.mkdir(parents=True, exist_ok=True)
    size = 2048 if args.quick else 6000
    sizes = {peer: size for peer in args.peers}
    for item in args.size or []:
        peer, _, n = item.partition("=")
        if peer not in sizes or not n.isdigit():
            raise SystemExit(f"--size {item!r}: write PEER=PIXELS for one of {', '.join(sizes)}")
        sizes[peer] = int(n)
    seam, objs = seam_scene(wd / "seams.tif")
    mpx = size * size / 1e6  # the default scene; each peer's row has its own scene_mpx
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                           "load_at_start": os.getloadavg()},
               "versions": _versions(), "threads": args.threads, "tile": TILE, "overlap": OVERLAP, "batch": BATCH,
               "scene_mpx": mpx, "seam_scene": f"{SEAM_SIZE}x{SEAM_SIZE}", "peers": {}}
    for peer in args.peers:
        try:
            big = wd / f"scene{sizes[peer]}.tif"
            if not big.exists():
                big_scene(big, sizes[peer])
            results["peers"][peer] = run_peer(peer, wd, big, seam, objs, sizes[peer] ** 2 / 1e6, args.threads,
                                              args.timeout)
        except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the others' figures
            results["peers"][peer] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
        Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    results["machine"]["load_at_end"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(results, indent=1, default=str) + "\n")
    print_table(results)


def _git(*a: str) -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _prepare_net(peer: str, wd: Path, seed: int = 0):
    """The peer's network (fixed seed, calibrated) saved for the peer side, exported for geodetect's."""
    import hashlib

    import torch

    net = build_net(peer, seed)
    cal = calibrate(net, peer, seam_array()[0] if peer in BOX_PEERS else None, seam_array()[1])
    torch.save(net.state_dict(), wd / f"{peer}.pt")
    export_onnx(net, wd / f"{peer}.onnx", peer)
    write_model_mlm(peer, wd / f"{peer}.onnx", wd / f"{peer}-mlm.json")
    (wd / f"{peer}.json").write_text(json.dumps({"seed": seed}))
    return net, cal, hashlib.sha256((wd / f"{peer}.onnx").read_bytes()).hexdigest()


def rss_only(args) -> None:
    """--rss-only: each side on the big scene, seconds and peak RSS; rows merged into --json."""
    import torch

    torch.set_num_threads(args.threads)
    wd = Path(args.workdir or tempfile.mkdtemp(prefix="geodetect-peers-rss-"))
    wd.mkdir(parents=True, exist_ok=True)
    sizes = {peer: 30000 for peer in args.peers}
    for item in args.size or []:
        peer, _, n = item.partition("=")
        if peer not in sizes or not n.isdigit():
            raise SystemExit(f"--size {item!r}: write PEER=PIXELS for one of {', '.join(sizes)}")
        sizes[peer] = int(n)
    path = Path(args.json)
    results = json.loads(path.read_text()) if path.exists() else {}
    if results and results.get("mode") != "rss-only":
        raise SystemExit(f"{path} holds a full run, not an --rss-only one: give another --json")
    results.setdefault("mode", "rss-only")
    results.setdefault("peers", {})
    results.setdefault("runs", []).append(
        {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "argv": sys.argv[1:],
         "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                     "mem_total_mb": round(_mem_total_mb()), "load_at_start": os.getloadavg()},
         "versions": _versions(), "threads": args.threads, "tile": TILE, "overlap": OVERLAP, "batch": BATCH})

    def save():
        path.write_text(json.dumps(results, indent=1, default=str) + "\n")

    for peer in args.peers:
        row = results["peers"].setdefault(peer, {})
        row.pop("error", None)
        try:
            n = sizes[peer]
            big = wd / f"scene{n}.tif"
            if not big.exists():
                t = time.perf_counter()
                big_scene(big, n)
                print(f"scene {big} made in {time.perf_counter() - t:.0f} s", flush=True)
            net, cal, onnx_sha = _prepare_net(peer, wd)
            row.update({"seed": 0, "network": type(net).__name__, "calibration": cal, "onnx_sha256": onnx_sha,
                        "scene": f"{n}x{n}", "scene_mpx": n * n / 1e6})
            for side in args.sides:
                if side == "geodetect":  # a byte-identical network on the same scene: one run serves both rows
                    twin = next((p for p, r in results["peers"].items() if p != peer
                                 and r.get("onnx_sha256") == onnx_sha and r.get("scene") == row["scene"]
                                 and "seconds" in r.get("geodetect", {}).get("big", {})), None)
                    if twin:
                        row["geodetect"] = {"same_onnx_as": twin, **{k: v for k, v in results["peers"][twin]
                                                                     ["geodetect"].items() if k != "same_onnx_as"}}
                        print(f"{peer:12s} geodetect: same ONNX as {twin}'s, its run stands for both", flush=True)
                        save()
                        continue
                if side == "geodetect-raster" and peer in BOX_PEERS:
                    continue  # boxes have no class raster
                ext = "gpkg" if side == "geodetect" or peer in BOX_PEERS else "tif"
                out = wd / f"{peer}-{side}-big.{ext}"
                fig: dict = {"load_before": os.getloadavg(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                if side != "peer":  # the worker imports geodetect as this process does (same PYTHONPATH)
                    import geodetect

                    src = Path(geodetect.__file__).parent
                    dirty = _git("status", "--porcelain", "--", "geodetect")
                    fig.update({"git_head": _git("rev-parse", "HEAD"), "geodetect_uncommitted": dirty.splitlines(),
                                "geodetect_path": str(src)})
                    if (src.parent / "GIT_COMMIT").exists():  # an exported tree (git archive) of one commit
                        fig["geodetect_commit"] = (src.parent / "GIT_COMMIT").read_text().strip()
                row[side] = fig
                save()
                res = run_side_watched(peer, side, str(big), str(out), wd, args.threads, args.timeout,
                                       args.min_available_mb)
                fig.update({"load_after": os.getloadavg(), "big": res})
                if "seconds" in res:
                    fig["mpx_per_s"] = row["scene_mpx"] / res["seconds"]
                    fig["peak_rss_mb"] = res["vmhwm_mb"]
                else:
                    fig["peak_rss_mb_reached"] = res.get("vmhwm_mb_watched")
                if out.exists():
                    fig["output_mb"] = out.stat().st_size / 2**20
                    if not args.keep_outputs:
                        out.unlink()
                save()
                print(f"{peer:12s} {side:9s} {json.dumps(fig, default=str)[:600]}", flush=True)
        except Exception as exc:  # noqa: BLE001 - one peer failing must not lose the others' figures
            row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        save()
    results["runs"][-1]["load_at_end"] = os.getloadavg()
    save()
    for peer, row in results["peers"].items():
        for side in SIDES:
            f = row.get(side)
            if f is None:
                continue
            b = f.get("big", {})
            rss = f.get("peak_rss_mb") or f.get("peak_rss_mb_reached")
            print(f"{peer} | {side} | {row.get('scene')} | "
                  + (f"{b['seconds']:.0f} s" if "seconds" in b else b.get("error", "-"))
                  + f" | {'-' if rss is None else f'{rss:.0f}'} MB" + (f" | same ONNX as {f['same_onnx_as']}"
                                                                       if "same_onnx_as" in f else ""))


def _mem_total_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_peer(peer, wd, big, seam, objs, mpx, threads, timeout) -> dict:
    import torch

    seed = 0
    boxes = peer in BOX_PEERS
    net = build_net(peer, seed)
    seam_img = seam_array()[0] if boxes else None
    cal = calibrate(net, peer, seam_img, objs)
    torch.save(net.state_dict(), wd / f"{peer}.pt")
    export_onnx(net, wd / f"{peer}.onnx", peer)
    write_model_mlm(peer, wd / f"{peer}.onnx", wd / f"{peer}-mlm.json")
    (wd / f"{peer}.json").write_text(json.dumps({"seed": seed}))
    ref = reference_boxes(net, seam_img, objs) if boxes else reference_mask(net, seam)
    row = {"seed": seed, "network": type(net).__name__, "calibration": cal, "scene_mpx": mpx}
    for side in ("peer", "geodetect") if boxes else SIDES:
        ext = "gpkg" if side == "geodetect" or boxes else "tif"
        load = os.getloadavg()[0]
        big_res = run_side(peer, side, str(big), str(wd / f"{peer}-{side}-big.{ext}"), wd, threads, timeout)
        seam_out = wd / f"{peer}-{side}-seams.{ext}"
        seam_res = run_side(peer, side, seam, str(seam_out), wd, threads, timeout)
        fig = {"load_1min_before": load, "big": big_res, "seam_run": seam_res}
        if "seconds" in big_res:
            fig["mpx_per_s"] = mpx / big_res["seconds"]
            fig["peak_rss_mb"] = big_res["vmhwm_mb"]
        if "seconds" in seam_res:
            polys = _polygons_of_side(side, str(seam_out))
            fig["seams"] = box_seam_figures(polys, objs, ref) if boxes else seam_figures(ref, polys, objs)
        row[side] = fig
        print(f"{peer:9s} {side:9s} {json.dumps(fig, default=str)[:400]}", flush=True)
    return row


def print_table(results: dict) -> None:
    hdr = ("peer", "side", "Mpx/s", "peak RSS MB", "px != ref", "known split/dup", "missing", "extra objects",
           "CRS max err px", "<= 0.5 px")
    mp = ", ".join(f"{r.get('scene_mpx', 0):.1f}" for r in results["peers"].values())
    print(f"\nscenes of {mp} Mpx, tile {results['tile']}, overlap {results['overlap']}, "
          f"{results['threads']} threads; seams on a {results['seam_scene']} scene")
    print(" | ".join(hdr))
    for peer, row in results["peers"].items():
        for side in SIDES:
            if side not in row:
                continue
            f = row[side]
            s = f.get("seams", {})
            if "error" in row:
                print(f"{peer} | error: {row['error']}")
                break
            cells = (peer, side if side != "peer" else peer,
                     f"{f['mpx_per_s']:.3f}" if "mpx_per_s" in f else f.get("big", {}).get("error", "-"),
                     f"{f['peak_rss_mb']:.0f}" if "peak_rss_mb" in f else "-",
                     "-" if s.get("mismatch_px") is None else s["mismatch_px"],
                     f"{s.get('split_or_duplicated', '-')}/{s.get('known_objects', '-')}",
                     s.get("missing", "-"), s.get("extra_objects", "-"),
                     "-" if s.get("crs_max_err_px") is None else f"{s['crs_max_err_px']:.3f}",
                     s.get("crs_within_half_px", "-"))
            print(" | ".join(str(c) for c in cells))


if __name__ == "__main__":
    main()
