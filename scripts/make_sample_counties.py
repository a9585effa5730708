#!/usr/bin/env python
"""Build the US county sample data in ``sample_data/`` from the us-atlas npm package.

Usage::

    cd /tmp && npm pack us-atlas@3.0.1 && tar xzf us-atlas-3.0.1.tgz
    python scripts/make_sample_counties.py /tmp/package

Reads ``counties-10m.json`` (TopoJSON, unprojected NAD83 lon/lat, no CRS
declared) from the unpacked package and writes

* ``sample_data/us_counties.parquet``   all counties, GeoParquet, EPSG:4326
* ``sample_data/counties_demo.geojson`` counties of AK, CA, CO and FL only

Both have exactly the columns ``fips``, ``name``, ``state_fips``, ``geometry``
and are sorted by ``fips``.  Invalid geometries are repaired with
``shapely.make_valid`` and only their polygonal parts are kept.  Empty
geometries (Falls Church, VA, 51610) are kept as empty polygons.

Only the standard library, geopandas, shapely and pyproj are used.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import geopandas as gpd
import shapely
from shapely.geometry import MultiPolygon, Polygon

EXPECTED_COUNTIES = 3231
DEMO_STATES = {"02": "Alaska", "06": "California", "08": "Colorado", "12": "Florida"}
ALEUTIANS_WEST = "02016"
DEMO_DECIMALS = 6
DEMO_SIZE_WARN_BYTES = 3 * 1024 * 1024

REPO_ROOT = Path(__file__).resolve().parent.parent


def polygonal_part(geom):
    """Return only the polygonal part of *geom* as a Polygon or MultiPolygon.

    ``make_valid`` may return a GeometryCollection that also holds collapsed
    (line or point) pieces; those are dropped.  Returns an empty Polygon when
    nothing polygonal is left.
    """
    if geom is None or geom.is_empty:
        return Polygon()
    if isinstance(geom, (Polygon, MultiPolygon)):
        return geom
    polys = []
    for part in getattr(geom, "geoms", []):
        if isinstance(part, Polygon):
            polys.append(part)
        elif isinstance(part, MultiPolygon):
            polys.extend(part.geoms)
        elif part.geom_type == "GeometryCollection":
            sub = polygonal_part(part)
            if not sub.is_empty:
                polys.extend(getattr(sub, "geoms", [sub]))
    polys = [p for p in polys if not p.is_empty]
    if not polys:
        return Polygon()
    if len(polys) == 1:
        return polys[0]
    return MultiPolygon(polys)


def find_source(path: Path) -> Path:
    if path.is_file():
        return path
    src = path / "counties-10m.json"
    if not src.is_file():
        sys.exit(f"error: {src} not found (pass the unpacked us-atlas@3.0.1 package dir)")
    return src


def load_counties(src: Path):
    raw = gpd.read_file(src, layer="counties")
    if len(raw) != EXPECTED_COUNTIES:
        sys.exit(f"error: expected {EXPECTED_COUNTIES} counties, got {len(raw)}")

    fips = raw["id"].astype(str)
    bad = ~fips.str.fullmatch(r"\d{5}")
    if bad.any():
        sys.exit(f"error: non 5-digit ids: {fips[bad].tolist()[:10]}")
    if fips.duplicated().any():
        sys.exit(f"error: duplicate ids: {fips[fips.duplicated()].tolist()[:10]}")

    gdf = gpd.GeoDataFrame(
        {
            "fips": fips.values,
            "name": raw["name"].astype(str).values,
            "state_fips": fips.str[:2].values,
        },
        geometry=raw.geometry.values,
        crs=None,
    )
    # The TopoJSON carries no CRS; the Census cartographic boundary files are NAD83.
    gdf = gdf.set_crs(4269).to_crs(4326)
    return gdf


def repair(gdf):
    geoms = gdf.geometry.values
    invalid = ~shapely.is_valid(geoms)
    repaired = []
    for i, geom in enumerate(geoms):
        if invalid[i]:
            geom = polygonal_part(shapely.make_valid(geom))
        repaired.append(geom)
    gdf = gdf.set_geometry(gpd.GeoSeries(repaired, index=gdf.index, crs=gdf.crs))
    return gdf, sorted(gdf.loc[invalid, "fips"].tolist())


def check(gdf):
    types = set(gdf.geom_type[~gdf.is_empty])
    if not types <= {"Polygon", "MultiPolygon"}:
        sys.exit(f"error: non-polygonal geometry types left: {types}")
    if not gdf.is_valid.all():
        sys.exit(f"error: still invalid: {gdf.loc[~gdf.is_valid, 'fips'].tolist()}")
    # No single polygon may span (almost) the whole globe in longitude.
    for fips, geom in zip(gdf["fips"], gdf.geometry):
        for part in getattr(geom, "geoms", [geom]):
            if not part.is_empty and part.bounds[2] - part.bounds[0] > 180:
                sys.exit(f"error: {fips} has a part wider than 180 degrees: {part.bounds}")


def check_aleutians(gdf):
    geom = gdf.loc[gdf["fips"] == ALEUTIANS_WEST].geometry.iloc[0]
    if geom.geom_type != "MultiPolygon" or not geom.is_valid:
        sys.exit(f"error: {ALEUTIANS_WEST} is not a valid MultiPolygon")
    parts = list(geom.geoms)
    east = [p for p in parts if p.bounds[0] >= 0]  # longitudes near +180
    west = [p for p in parts if p.bounds[2] <= 0]  # longitudes near -180
    if not east or not west or len(east) + len(west) != len(parts):
        sys.exit(f"error: {ALEUTIANS_WEST} parts are not cleanly split at the antimeridian")
    east_b = MultiPolygon(east).bounds
    west_b = MultiPolygon(west).bounds
    return {
        "bounds": geom.bounds,
        "parts": len(parts),
        "east_parts": len(east),
        "east_bounds": east_b,
        "west_parts": len(west),
        "west_bounds": west_b,
        "widest_part_deg": max(p.bounds[2] - p.bounds[0] for p in parts),
    }


def write_demo(gdf, path: Path):
    demo = gdf[gdf["state_fips"].isin(DEMO_STATES)].copy()
    # Snap to a 1e-6 degree grid (about 0.1 m) so that the 6-decimal GeoJSON
    # text is exactly what is stored and the result stays valid.
    demo = demo.set_geometry(
        gpd.GeoSeries(
            shapely.set_precision(demo.geometry.values, 10.0**-DEMO_DECIMALS),
            index=demo.index,
            crs=demo.crs,
        )
    )
    if path.exists():
        path.unlink()
    demo.to_file(
        path,
        driver="GeoJSON",
        layer="counties_demo",
        engine="pyogrio",
        COORDINATE_PRECISION=DEMO_DECIMALS,
    )
    back = gpd.read_file(path)
    if len(back) != len(demo) or not back.is_valid.all():
        sys.exit(f"error: {path} did not read back as {len(demo)} valid features")
    return demo


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("package", type=Path,
                    help="unpacked us-atlas@3.0.1 package dir (or its counties-10m.json)")
    ap.add_argument("--out-dir", type=Path, default=REPO_ROOT / "sample_data",
                    help="output directory (default: %(default)s)")
    args = ap.parse_args(argv)

    src = find_source(args.package)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    gdf = load_counties(src)
    gdf, repaired = repair(gdf)
    check(gdf)
    gdf = gdf.sort_values("fips", kind="stable").reset_index(drop=True)
    gdf = gdf[["fips", "name", "state_fips", "geometry"]]
    empty = gdf.loc[gdf.is_empty, ["fips", "name"]]
    aleut = check_aleutians(gdf)

    pq_path = args.out_dir / "us_counties.parquet"
    gdf.to_parquet(pq_path, index=False)

    gj_path = args.out_dir / "counties_demo.geojson"
    demo = write_demo(gdf, gj_path)

    def fmt(b):
        return "(" + ", ".join(f"{v:.4f}" for v in b) + ")"

    print(f"source: {src}")
    print(f"counties: {len(gdf)} ({gdf['state_fips'].nunique()} state/territory codes)")
    print(f"invalid geometries repaired with make_valid: {len(repaired)}")
    print(f"  {', '.join(repaired)}")
    print(f"empty geometries kept: {len(empty)} "
          + ", ".join(f"{f} {n}" for f, n in zip(empty['fips'], empty['name'])))
    print(f"geometry types: {gdf.geom_type[~gdf.is_empty].value_counts().to_dict()}")
    print(f"Aleutians West ({ALEUTIANS_WEST}): MultiPolygon, {aleut['parts']} parts, "
          f"bounds {fmt(aleut['bounds'])}")
    print(f"  east of antimeridian (lon > 0): {aleut['east_parts']} parts, {fmt(aleut['east_bounds'])}")
    print(f"  west of antimeridian (lon < 0): {aleut['west_parts']} parts, {fmt(aleut['west_bounds'])}")
    print(f"  widest single part: {aleut['widest_part_deg']:.4f} deg")
    print(f"wrote {pq_path} ({pq_path.stat().st_size:,} bytes, {len(gdf)} rows)")
    counts = demo["state_fips"].value_counts().sort_index()
    per_state = ", ".join(f"{DEMO_STATES[s]} {n}" for s, n in counts.items())
    size = gj_path.stat().st_size
    print(f"wrote {gj_path} ({size:,} bytes, {len(demo)} rows: {per_state})")
    if size > DEMO_SIZE_WARN_BYTES:
        print(f"warning: {gj_path.name} is larger than 3 MB")


if __name__ == "__main__":
    main()
