"""Two small networks written in PyTorch, exported with ``torch.onnx``, with their STAC MLM documents and torch's
own outputs on fixed tiles: the files tests/test_onnx.py runs without torch.

    python -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch onnx onnxruntime numpy
    /tmp/torchenv/bin/python scripts/export_torch_example.py          # writes tests/data/torch_example/
    /tmp/torchenv/bin/python scripts/export_torch_example.py --out DIR

geodetect itself need not be installed where torch is: the MLM documents are written by
``geodetect.mlm.write_mlm`` imported from this checkout (it needs numpy only).

What is written (all small):

- ``segmenter.onnx`` + ``segmenter.json``: a fully convolutional two-class segmenter
  (conv 3x3 -> batch norm -> ReLU -> dilated conv 3x3 -> ReLU -> conv 1x1 -> softmax over classes),
  input (N, 3, 64, 64) red, green, blue z-scored per band with ImageNet's mean and std (MLM
  ``value_scaling``, applied by geodetect), output (N, 2, 64, 64) probabilities. Its weights
  (N(0, 0.3)) and batch-norm statistics are drawn after ``torch.manual_seed(0)``: it is untrained and
  finds nothing real; it is here to show that what torch computes is what geodetect runs.
- ``spots.onnx`` + ``spots.json``: a point detector of bright spots with its peak decoding in the graph:
  band mean (1x1 conv) -> Gaussian blur (7x7 conv, sigma 1.5) -> sigmoid(20 (v - 0.45)) heatmap -> peaks
  (equal to their 3x3 max-pool) -> the 16 best (TopK) as (col + 0.5, row + 0.5, score, class 0) rows,
  the (N, 16, 4) points layout of geodetect's MLM reader. Input 0..255 scaled to 0..1 (MLM min-max).
  Its weights are set by this script (a matched filter, not trained).
- ``reference.npz``: the fixed input tiles (uint8 values, made from ``numpy.random.default_rng(17)``)
  and torch's outputs on them (scaled as above): ``seg_tiles``, ``seg_probs`` (N, 2, 64, 64),
  ``spot_tiles``, ``spot_centres`` (the planted spots, NaN-padded), ``spot_points`` (N, 16, 4).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "torch_example"
TILE = 64
K = 16  # points per tile in the spots model's output
SEED = 0  # torch.manual_seed of the segmenter's weights
#: the segmenter's input scaling, per band, as torchvision's ImageNet models take it (mean and std x 255); the MLM
#: document says it (value_scaling z-score per band) and geodetect applies it, so it is not in the graph
SEG_MEAN = (123.675, 116.28, 103.53)
SEG_STD = (58.395, 57.12, 57.375)
TILE_SEED = 17  # numpy seed of the reference tiles


def reference_tiles(seed: int = TILE_SEED) -> dict[str, np.ndarray]:
    """uint8 (N, 64, 64, 3) tiles: smooth blobs and noise for the segmenter, bright round spots on a dim
    textured ground for the spot detector (spot centres on pixel centres, away from the tile's edges)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:TILE, 0:TILE] + 0.5
    seg = []
    for _ in range(2):
        img = np.zeros((TILE, TILE, 3))
        for _ in range(6):  # soft blobs of random colours
            cx, cy, r = rng.uniform(0, TILE), rng.uniform(0, TILE), rng.uniform(5, 18)
            img += rng.uniform(40, 200, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img += rng.normal(0, 8, img.shape)
        seg.append(np.clip(img, 0, 255).round().astype(np.uint8))
    spots, centres = [], np.full((2, 6, 2), np.nan)
    for i in range(2):
        img = 35 + rng.normal(0, 6, (TILE, TILE, 3)) + 10 * np.sin(xx / 9.0)[..., None]
        for k in range(int(rng.integers(3, 7))):
            while True:  # at least 10 px from the others: two spots closer than that blur into one peak
                cx, cy = rng.integers(6, TILE - 6, 2) + 0.5
                if np.all(np.hypot(centres[i, :k, 0] - cx, centres[i, :k, 1] - cy) >= 10):
                    break
            img += rng.uniform(150, 210) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))[..., None]
            centres[i, k] = cx, cy
        spots.append(np.clip(img, 0, 255).round().astype(np.uint8))
    return {"seg_tiles": np.stack(seg), "spot_tiles": np.stack(spots), "spot_centres": centres}


def build_models():
    """(segmenter, spots) as eval-mode torch modules."""
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    seg = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(8, 2, 1), nn.Softmax(dim=1),
    )
    bn = seg[1]
    with torch.no_grad():
        for conv in (seg[0], seg[3], seg[5]):  # N(0, 0.3) weights: torch's default init gives ~0.5 everywhere
            nn.init.normal_(conv.weight, std=0.3)
            nn.init.zeros_(conv.bias)
        # batch-norm statistics as a trained model would have them (else 0 and 1)
        bn.running_mean.copy_(torch.randn(8) * 0.1)
        bn.running_var.copy_(torch.rand(8) + 0.5)
        bn.weight.copy_(torch.rand(8) + 0.5)
        bn.bias.copy_(torch.randn(8) * 0.1)

    class Spots(nn.Module):
        """Bright spots: blurred band mean, sigmoid heatmap, 3x3 peaks, the K best as [col, row, score, class]."""

        def __init__(self):
            super().__init__()
            self.mean = nn.Conv2d(3, 1, 1, bias=False)
            self.blur = nn.Conv2d(1, 1, 7, padding=3, bias=False)
            r = torch.arange(7, dtype=torch.float32) - 3
            g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
            with torch.no_grad():
                self.mean.weight.fill_(1 / 3)
                self.blur.weight.copy_((g / g.sum())[None, None])

        def forward(self, x):
            heat = torch.sigmoid(20.0 * (self.blur(self.mean(x)) - 0.45))  # (N, 1, H, W)
            peaks = heat * (heat == nn.functional.max_pool2d(heat, 3, stride=1, padding=1)).to(heat.dtype)
            n, _, h, w = peaks.shape
            score, idx = torch.topk(peaks.reshape(n, h * w), K, dim=1)
            col = (idx % w).to(torch.float32) + 0.5
            row = torch.div(idx, w, rounding_mode="floor").to(torch.float32) + 0.5
            return torch.stack([col, row, score, torch.zeros_like(score)], dim=2)  # (N, K, 4)

    return seg.eval(), Spots().eval()


def _export(net, path: Path, out_shape_name: str) -> None:
    import torch

    x = torch.zeros(1, 3, TILE, TILE)
    kw = dict(input_names=["tiles"], output_names=[out_shape_name], opset_version=17,
              dynamic_axes={"tiles": {0: "n"}, out_shape_name: {0: "n"}})
    try:
        torch.onnx.export(net, (x,), str(path), dynamo=False, **kw)
    except TypeError:  # a torch older than 2.5 has no dynamo= argument
        torch.onnx.export(net, (x,), str(path), **kw)


def export(out: Path = OUT) -> dict[str, Path]:
    """Export both models, write their MLM documents and the reference outputs into ``out``."""
    import torch

    sys.path.insert(0, str(ROOT))
    from geodetect.mlm import write_mlm
    from geodetect.plugins._types import DetectorSpec, Task

    out.mkdir(parents=True, exist_ok=True)
    seg, spots = build_models()
    tiles = reference_tiles()
    seg_x = (torch.from_numpy(tiles["seg_tiles"].transpose(0, 3, 1, 2).astype(np.float32))
             - torch.tensor(SEG_MEAN)[:, None, None]) / torch.tensor(SEG_STD)[:, None, None]
    with torch.no_grad():
        ref = {
            "seg_probs": seg(seg_x).numpy(),
            "spot_points": spots(torch.from_numpy(tiles["spot_tiles"].transpose(0, 3, 1, 2) / np.float32(255))).numpy(),
        }
    scaling = [{"type": "min-max", "minimum": 0, "maximum": 255}]
    chw = ["batch", "channel", "height", "width"]
    untrained = ("untrained: weights drawn from torch.manual_seed(0); a test of the PyTorch -> ONNX -> geodetect path, "
                 "it finds nothing real")
    paths = {}
    _export(seg, out / "segmenter.onnx", "probs")
    spec = DetectorSpec(name="torch-example-segmenter", version="1.0.0", task=Task.SEGMENTATION, classes=("a", "b"),
                        bands=("red", "green", "blue"), tile_size=TILE, overlap=8, scaling="none",
                        description="Two-class segmenter written in PyTorch (scripts/export_torch_example.py), "
                                    + untrained, licence="Apache-2.0")
    paths["segmenter"] = write_mlm(out / "segmenter.json", spec=spec, onnx_file=out / "segmenter.onnx",
                                   input_shape=[-1, 3, TILE, TILE], input_dim_order=chw, result_shape=[-1, 2, TILE, TILE],
                                   result_dim_order=["batch", "class", "height", "width"],
                                   tasks=["semantic-segmentation"], framework="PyTorch",
                                   value_scaling=[{"type": "z-score", "mean": m, "stddev": sd}
                                                  for m, sd in zip(SEG_MEAN, SEG_STD)],
                                   architecture="conv-bn-relu, dilated conv-relu, 1x1 conv, softmax")
    doc = json.loads(paths["segmenter"].read_text())
    del doc["properties"]["geodetect:scaling"]  # so that geodetect reads MLM's per-band value_scaling instead
    paths["segmenter"].write_text(json.dumps(doc, indent=2) + "\n")
    _export(spots, out / "spots.onnx", "points")
    spec = DetectorSpec(name="torch-example-spots", version="1.0.0", task=Task.POINTS, classes=("spot",),
                        bands=("red", "green", "blue"), tile_size=TILE, overlap=16, scaling=(0.0, 255.0),
                        merge_radius_px=3.0,
                        description="Bright-spot point detector written in PyTorch (scripts/export_torch_example.py): "
                                    "a Gaussian matched filter with its peak decoding (max-pool, TopK) in the graph; "
                                    "its weights are set by the script, not trained", licence="Apache-2.0")
    paths["spots"] = write_mlm(out / "spots.json", spec=spec, onnx_file=out / "spots.onnx",
                               input_shape=[-1, 3, TILE, TILE], input_dim_order=chw, result_shape=[-1, K, 4],
                               result_dim_order=["batch", "detection", "attribute"], tasks=["keypoint-detection"],
                               value_scaling=scaling, score_threshold=0.5, framework="PyTorch",
                               architecture="band mean, 7x7 Gaussian, sigmoid heatmap, 3x3 peaks, top-16")
    paths["reference"] = out / "reference.npz"
    np.savez_compressed(paths["reference"], **tiles, **ref)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"output folder (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args(argv)
    for name, path in export(args.out).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
