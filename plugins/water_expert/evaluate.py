"""Evaluate the two water experts; write the numbers their README and geodetect's README quote.

Both run through ``geodetect.evaluate.evaluate`` (scenes in, polygons out, both sides rasterised on
the scene grid) on unseen simulated water scenes, seeds 1..N (the water segmenter trains on seeds
from 10000 up):

* ``water-expert-sar`` on simulated Sentinel-1-like VV backscatter (gamma speckle, 4.4 looks): no
  real SAR pixels with water labels exist on these machines, so this is the only number there is,
  and it says nothing about real Sentinel-1 swaths;
* ``water-expert-optical`` on the simulated green/red/NIR scenes. Its real-imagery check is the
  water segmenter's evaluation (it is the teacher there) and the Dubai masks report
  (``plugins/water_segmenter``), where it cannot run for lack of a NIR band.

    python plugins/water_expert/evaluate.py [--scenes 6] [--json plugins/water_expert/eval.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = range(1, 101)


def write_folder(folder: str, n: int, *, sar: bool, size: int = 512) -> list[str]:
    """``n`` simulated water scenes with ``<stem>_truth.geojson`` beside each."""
    from geodetect.simulate import make_scene

    os.makedirs(folder, exist_ok=True)
    paths = []
    for seed in SEEDS[:n]:
        sim = make_scene(os.path.join(folder, f"water_{seed}.tif"), kind="water", size=(size, size), seed=seed,
                         sar=sar, coast=True)
        sim.truth.to_file(os.path.join(folder, f"water_{seed}_truth.geojson"), driver="GeoJSON")
        paths.append(sim.path)
    return paths


def run(n: int, workdir: str) -> dict:
    from geodetect.evaluate import evaluate

    out = {"scenes": n, "seeds": [SEEDS[0], SEEDS[n - 1]], "size_px": 512, "data": "simulated"}
    for name, sar in (("water-expert-sar", True), ("water-expert-optical", False)):
        folder = os.path.join(workdir, "sar" if sar else "optical")
        write_folder(folder, n, sar=sar)
        t = time.perf_counter()
        ev = evaluate(name, folder)
        out[name] = {k: (float(v) if isinstance(v, float) else v) for k, v in ev.summary.items()}
        out[name]["seconds"] = round(time.perf_counter() - t, 2)
        print(f"SIMULATED {'SAR' if sar else 'optical'} seeds {SEEDS[0]}..{SEEDS[n - 1]}:\n{ev.to_text()}\n")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=6, help="simulated scenes per expert (default: %(default)s)")
    p.add_argument("--json", type=Path, default=HERE / "eval.json", help="write the numbers here (default: %(default)s)")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="water-expert-eval-") as wd:
        out = run(a.scenes, wd)
    a.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
