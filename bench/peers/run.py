"""geodetect against the peers a user would pick instead (issue 18), the same network on both sides.

Usage (in the peers' venv, made by bench/peers/install.sh; `make bench-peers` does both):
    bench/peers/.venv/bin/python bench/peers/run.py [--quick] [--peers torchgeo geoai] [--threads 2]

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

Figures, each side in its own fresh process:
- throughput: Mpx/s of the entry point on a 36 Mpx (6000^2, --quick 2048^2) deflate RGB scene;
- peak RSS (VmHWM) of that process;
- seams: a 2304^2 scene (512 + 4 x 448: every tiler's grid lands on the same seams) of plain
  background with 48 px bright squares centred on tile seams, on tile corners and inside tiles.
  The reference is the same network run on the whole scene at once (no tiles): whatever the
  random network makes of the squares, a seam-exact tiler must give the same mask. Reported: pixels
  that differ from the reference, and reference objects (connected components) that come out
  split into several pieces (or duplicated), or missing;
- CRS: each side's output georeferenced by the side itself (geodetect: polygons in the scene's CRS;
  peers: their mask with the transform they give it), compared with the reference objects'
  bounds in the scene's CRS: max error in pixels, and whether it is within half a pixel.
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


# ----------------------------------------------------------------------------- networks

def build_net(peer: str, seed: int):
    import torch

    torch.manual_seed(seed)
    if peer == "torchgeo":
        from torchgeo.models import FCN

        return FCN(3, 2, num_filters=8).eval()
    if peer == "geoai":
        import segmentation_models_pytorch as smp

        return smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=2, encoder_depth=3,
                        decoder_channels=(32, 16, 8)).eval()
    raise SystemExit(f"unknown peer {peer!r}")


def calibrate(net) -> dict:
    """Make the random network's two classes split background from the bright squares.

    With PyTorch's default initialisation the logits barely depend on the input (biases dominate),
    so every pixel gets the same class. The last convolution is rewritten as the difference of its two
    class rows, shifted and scaled so that the network's own features give logit +2 in the middle of a
    bright square and -2 on plain background (class 0 row set to zero): argmax of the result is a
    deterministic function of the network's features, and there are objects to stitch.
    """
    import torch

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


class _Prob1:  # made a torch Module in export_onnx (torch is imported lazily)
    pass


def export_onnx(net, path: Path) -> None:
    """softmax(logits)[:, 1:2]: the probability of class 1, one channel (argmax of two classes == p1 > 0.5)."""
    import torch

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

    img = np.full((3, SEAM_SIZE, SEAM_SIZE), BG, np.uint8)
    objs = []
    h = SQUARE // 2
    for i in range(1, 5):
        for j in range(1, 5):
            for kind, (cy, cx) in (("corner", (i * STRIDE, j * STRIDE)), ("seam", (i * STRIDE, j * STRIDE - 224)),
                                   ("seam", (i * STRIDE - 224, j * STRIDE)), ("inside", (i * STRIDE - 224, j * STRIDE - 224))):
                img[:, cy - h:cy + h, cx - h:cx + h] = FG
                objs.append((kind, cy, cx))
    with rasterio.open(path, "w", driver="GTiff", width=SEAM_SIZE, height=SEAM_SIZE, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=_transform(), tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate") as dst:
        dst.write(img)
    return str(path), objs


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
        info = (run_torchgeo if args.peer == "torchgeo" else run_geoai)(net, args.scene, args.out)
    else:
        import geodetect as gd
        from geodetect.mlm import detector_class

        import rasterio

        with rasterio.open(args.scene) as ds:
            crs = ds.crs.to_string()
        cls = detector_class(wd / f"{args.peer}-mlm.json")
        t0 = time.perf_counter()
        dets = gd.detect(args.scene, cls, crs_out=crs, progress=False, batch_size=BATCH)
        info = {"polygons": len(dets)}
        dets[["geometry"]].to_file(args.out, driver="GPKG")
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

    if side == "geodetect":
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


# ----------------------------------------------------------------------------- main

def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("geodetect", "torch", "torchvision", "onnxruntime", "torchgeo", "segmentation-models-pytorch",
                "geoai-py", "deepforest", "rastervision", "rasterio", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2048^2 throughput scene instead of 6000^2")
    ap.add_argument("--peers", nargs="+", default=["torchgeo", "geoai"], choices=["torchgeo", "geoai"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", nargs="+", metavar="PEER=PIXELS", help="another scene side for a peer (e.g. geoai=2048)")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds a side may run before it is stopped")
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("--workdir", default=None, help="scenes and models (default: a temporary folder)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--peer", help=argparse.SUPPRESS)
    ap.add_argument("--side", help=argparse.SUPPRESS)
    ap.add_argument("--scene", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)

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
    mpx = size * size / 1e6
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


def run_peer(peer, wd, big, seam, objs, mpx, threads, timeout) -> dict:
    import torch

    seed = 0
    net = build_net(peer, seed)
    cal = calibrate(net)
    torch.save(net.state_dict(), wd / f"{peer}.pt")
    export_onnx(net, wd / f"{peer}.onnx")
    write_model_mlm(peer, wd / f"{peer}.onnx", wd / f"{peer}-mlm.json")
    (wd / f"{peer}.json").write_text(json.dumps({"seed": seed}))
    ref = reference_mask(net, seam)
    row = {"seed": seed, "network": type(net).__name__, "calibration": cal, "scene_mpx": mpx}
    for side in ("peer", "geodetect"):
        ext = "gpkg" if side == "geodetect" else "tif"
        load = os.getloadavg()[0]
        big_res = run_side(peer, side, str(big), str(wd / f"{peer}-{side}-big.{ext}"), wd, threads, timeout)
        seam_out = wd / f"{peer}-{side}-seams.{ext}"
        seam_res = run_side(peer, side, seam, str(seam_out), wd, threads, timeout)
        fig = {"load_1min_before": load, "big": big_res, "seam_run": seam_res}
        if "seconds" in big_res:
            fig["mpx_per_s"] = mpx / big_res["seconds"]
            fig["peak_rss_mb"] = big_res["vmhwm_mb"]
        if "seconds" in seam_res:
            fig["seams"] = seam_figures(ref, _polygons_of_side("geodetect" if side == "geodetect" else "peer",
                                                               str(seam_out)), objs)
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
        for side in ("peer", "geodetect"):
            f = row.get(side, {})
            s = f.get("seams", {})
            if "error" in row:
                print(f"{peer} | error: {row['error']}")
                break
            cells = (peer, side if side == "geodetect" else peer,
                     f"{f['mpx_per_s']:.3f}" if "mpx_per_s" in f else f.get("big", {}).get("error", "-"),
                     f"{f['peak_rss_mb']:.0f}" if "peak_rss_mb" in f else "-",
                     s.get("mismatch_px", "-"), f"{s.get('split_or_duplicated', '-')}/{s.get('known_objects', '-')}",
                     s.get("missing", "-"), s.get("extra_objects", "-"),
                     "-" if s.get("crs_max_err_px") is None else f"{s['crs_max_err_px']:.3f}",
                     s.get("crs_within_half_px", "-"))
            print(" | ".join(str(c) for c in cells))


if __name__ == "__main__":
    main()
