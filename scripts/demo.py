"""The demo behind `make demo`: three simulated Steller sea-lion rookeries in the Aleutians.

1. simulate three georeferenced scenes (UTM 3N, UTM 60N, and one straddling the
   antimeridian with a nodata frame) with known animals;
2. run the sea-lion counter over them with ``gd.detect``;
3. write the detections (GeoParquet, GeoJSON), per-scene counts against the
   ground truth, and counts per borough from the real county polygons in
   ``sample_data/``.

Usage: python scripts/demo.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import geodetect as gd
from geodetect.simulate import make_scene

ROOT = Path(__file__).resolve().parent.parent
SCENES = [
    # name, CRS, centre (lon, lat), seed, nodata frame
    ("unimak-rookery", "EPSG:32603", (-165.9131, 54.1271), 11, 0),
    ("attu-rookery", "EPSG:32660", (173.0362, 52.8914), 12, 0),
    ("antimeridian-rookery", "EPSG:32601", (180.0, 51.80), 13, 200),
]


def main(out: str) -> int:
    out_dir = Path(out)
    scene_dir = out_dir / "scenes"
    scene_dir.mkdir(parents=True, exist_ok=True)
    truths, paths = [], []
    for name, crs, centre, seed, border in SCENES:
        sim = make_scene(scene_dir / f"{name}.tif", crs=crs, center=centre, size=(1536, 1536), n_objects=120,
                         seed=seed, nodata_border=border)
        paths.append(sim.path)
        truths.append(sim.truth.assign(scene_id=name))
        print(f"simulated {sim.path}: {sim.width}x{sim.height} px at {sim.gsd_m} m, {crs}, {len(sim.truth)} animals")

    dets = gd.detect(paths, detector="sea-lion-counter")
    for st in dets.attrs["geodetect"]:
        print(f"{st['scene_id']}: {st['detections']} detections, {st['tiles_run']}/{st['tiles_total']} tiles run, "
              f"{st['tiles_nodata']} nodata tiles skipped, {st['duplicates_removed']} seam duplicates merged")
    parquet = gd.write(dets, out_dir / "detections.parquet")
    geojson = gd.write(dets, out_dir / "detections.geojson")

    truth = pd.concat(truths, ignore_index=True)
    per_scene = pd.DataFrame({
        "detected": dets.groupby("scene_id").size(),
        "true": truth.groupby("scene_id").size(),
    }).fillna(0).astype(int)
    per_scene.to_csv(out_dir / "counts_by_scene.csv")

    counties = ROOT / "sample_data" / "counties_demo.geojson"
    by_region = gd.aggregate(dets, counties, by="fips")  # SedonaDB, embedded
    by_region = by_region[by_region["count"] > 0]
    by_region.to_csv(out_dir / "counts_by_borough.csv", index=False)
    unassigned = by_region.attrs["geodetect"]["unassigned"]
    hexes = gd.heatmap(dets, resolution=12)
    gd.write(hexes, out_dir / "heatmap_h3.geojson")

    # maps and pictures: a kepler.gl map (online assets; `geodetect map --offline` inlines them) and PNGs
    map_html = gd.to_kepler(dets, out_dir / "map.html", regions=counties, by="fips", heatmap=True, hexbins=12)
    pngs = [gd.quicklook(p, dets[dets.scene_id == Path(p).stem], out_dir / f"{Path(p).stem}.png") for p in paths]
    pngs.append(gd.quicklook_counts(by_region, out_dir / "counts_by_borough.png", by="fips"))

    print("\nanimals per scene (detected vs simulated):")
    print(per_scene.to_string())
    print("\nanimals per borough and class (SedonaDB join with the real county polygons):")
    print(by_region[["fips", "name", "class_name", "count", "density_per_km2"]].to_string(index=False))
    print(f"detections outside every county (at sea): {unassigned}")
    lon = dets.geometry.x
    print(f"\nlongitudes span {lon.min():.4f} .. {lon.max():.4f} (the antimeridian scene wraps to +/-180)")
    print("\nwrote:")
    for p in (parquet, geojson, out_dir / "counts_by_scene.csv", out_dir / "counts_by_borough.csv",
              out_dir / "heatmap_h3.geojson", map_html, *pngs):
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/demo"))
