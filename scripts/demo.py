"""The demo behind `make demo`: a real Landsat scene of San Francisco Bay, and three simulated
Steller sea-lion rookeries in the Aleutians.

Real first: the Landsat 7 scene of the SF Bay (30 m, NIR/red/green, shipped in the PyPI package
``localtileserver`` 1.0.0 that ``make`` installs) goes through the water-segmenter; the water
polygons are measured per real Bay Area county (SedonaDB join with the county polygons in
``sample_data/``), drawn in a quicklook and in the kepler.gl map.

Then the simulated rookeries:

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


def _without_nodata(src: Path, dst: Path) -> Path:
    import rasterio

    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as ds:
        profile = ds.profile | {"nodata": None}
        data = ds.read()
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def real_water(out_dir: Path, counties: Path) -> list[Path]:
    """Water in the real Landsat SF Bay scene, per real county: returns the files written."""
    from geodetect_plugins.water_segmenter.data import LANDSAT_BANDS, landsat_path

    # The file marks 0 as nodata, but 0 in all three bands is also the open water of the bay (the
    # 8-bit stretch clipped it): read a copy without that flag, or the bay itself would be skipped.
    scene = _without_nodata(landsat_path(), out_dir / "scenes" / "sf-bay-landsat.tif")
    bands = ",".join(f"{k}={v}" for k, v in LANDSAT_BANDS.items())  # the file tags NIR/red/green as RGB
    water = gd.detect(scene, detector="water-segmenter", bands=bands, scene_ids=["sf-bay-landsat"])
    st = water.attrs["geodetect"][0]
    print(f"real Landsat SF Bay scene {scene.name}: {len(water)} water polygons, "
          f"{water.area_m2.sum() / 1e6:,.0f} km2 of water, {st['tiles_run']} tiles run")
    parquet = gd.write(water, out_dir / "sf_bay_water.parquet")
    per_county = gd.aggregate(water, counties, by="fips")  # SedonaDB, embedded
    attrs = per_county.attrs
    per_county = per_county[per_county["count"] > 0].sort_values("area_m2", ascending=False)
    per_county = per_county.assign(water_km2=per_county.area_m2 / 1e6,
                                   water_share=per_county.area_m2 / 1e6 / per_county.region_area_km2)
    per_county.to_csv(out_dir / "sf_bay_water_by_county.csv", index=False)
    print("\nwater per Bay Area county (polygons counted in the county that holds their point on surface):")
    print(per_county[["fips", "name", "count", "water_km2", "region_area_km2", "water_share"]]
          .to_string(index=False, float_format=lambda v: f"{v:,.3f}"))
    at_sea = attrs["geodetect"]["unassigned"]
    print(f"water polygons in no county (the Census county outlines stop at the shore: the bay and the "
          f"ocean): {at_sea}")
    png = gd.quicklook(scene, water, out_dir / "sf_bay_water.png", fill=True)  # false colour: NIR, red, green
    html = gd.to_kepler(water, out_dir / "sf_bay_water_map.html", regions=counties, by="fips")
    return [parquet, out_dir / "sf_bay_water_by_county.csv", png, html]


def main(out: str) -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    counties = ROOT / "sample_data" / "counties_demo.geojson"
    real = real_water(out_dir, counties)
    print()
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
    for p in (*real, parquet, geojson, out_dir / "counts_by_scene.csv", out_dir / "counts_by_borough.csv",
              out_dir / "heatmap_h3.geojson", map_html, *pngs):
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out/demo"))
