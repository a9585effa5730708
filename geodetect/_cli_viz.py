"""CLI subcommands for maps and pictures: ``map``, ``quicklook``, ``quicklook-counts``.

Wired into ``geodetect.cli._parser()`` with ``register(sub)``. A thin layer over
:mod:`geodetect.viz`: parse, call one library function, report. Errors are
GeodetectError subclasses; the main CLI prints them as one line.
"""

from __future__ import annotations

import sys

from geodetect.errors import ConfigError

__all__ = ["register"]

_EXAMPLES_MAP = """\
examples:
  geodetect map lions.parquet --out map.html
  geodetect map lions.parquet --regions counties.geojson --by fips --hexbins 6 --out map.html --offline

The map is one HTML file with the data inside. Online (default) it loads kepler.gl 3.2.6 and its
dependencies from unpkg.com at pinned versions; --offline inlines them (about 15.5 MB), read from
$GEODETECT_KEPLER_ASSETS or tests/browser/node_modules, which scripts/install_browser_deps.sh fills.
Layers: detections by class, heatmap, H3 cells, regions (count or density). Above --max-features
detections the map shows a deterministic sample and the aggregate layers count everything.
"""

_EXAMPLES_QL = """\
examples:
  geodetect quicklook scene.tif lions.parquet --out scene.png
  geodetect quicklook landsat.tif water.parquet --out water.png --bands 3,2,1 --max-size 1024

The scene is read decimated (at most --max-size pixels on the long side) and each band stretched
between its 2nd and 98th percentiles; detections are drawn in the scene's CRS.
"""


def register(subparsers) -> None:
    """Add the map and quicklook subcommands to the ``geodetect`` subparsers."""
    import argparse

    from geodetect.viz.kepler import BASEMAPS, DEFAULT_MAX_FEATURES
    from geodetect.viz.quicklook import DEFAULT_MAX_SIZE

    raw = argparse.RawDescriptionHelpFormatter

    m = subparsers.add_parser(
        "map", help="write a kepler.gl HTML map of detections",
        description="Write detections, their H3 cells and per-region counts as one kepler.gl HTML map.",
        epilog=_EXAMPLES_MAP, formatter_class=raw,
    )
    m.add_argument("detections", help="detections file (.parquet, .geojson, .gpkg, .fgb, ...)")
    m.add_argument("--out", "-o", required=True, help="output .html file")
    m.add_argument("--regions", "-r", help="region polygons (any vector file) for a choropleth")
    m.add_argument("--by", help="region id column (default: fips/geoid/id/code, or the first unique column)")
    m.add_argument("--name-col", help="region name column (default: 'name' when there is one)")
    m.add_argument("--choropleth", choices=("count", "density"), default="count",
                   help="colour regions by detections (count, default) or detections per km2 (density)")
    m.add_argument("--hexbins", type=int, metavar="RES",
                   help="H3 resolution of the hexagon layer, 0-15 (default 7, cells ~5 km2)")
    m.add_argument("--no-hexbins", action="store_true", help="no H3 layer")
    m.add_argument("--no-heatmap", action="store_true", help="no heatmap layer")
    m.add_argument("--max-features", type=int, default=DEFAULT_MAX_FEATURES,
                   help=f"most raw detections in the map; above it a sample is shown (default {DEFAULT_MAX_FEATURES:,})")
    m.add_argument("--seed", type=int, default=0, help="seed of that sample (default 0)")
    m.add_argument("--basemap", choices=BASEMAPS, default="dark-matter",
                   help="CARTO basemap style (no token needed) or none (default dark-matter)")
    m.add_argument("--offline", action="store_true", help="inline kepler.gl and its dependencies: opens with no internet")
    m.add_argument("--assets", metavar="DIR", help="node_modules folder with the pinned assets for --offline "
                   "(default: $GEODETECT_KEPLER_ASSETS, then tests/browser/node_modules of the checkout)")
    m.add_argument("--title", help="page title")
    m.add_argument("--engine", choices=("sedonadb", "geopandas"), default="sedonadb",
                   help="engine of the region counts (default sedonadb)")
    m.set_defaults(func=_cmd_map)

    q = subparsers.add_parser(
        "quicklook", help="write a PNG of a scene with its detections drawn",
        description="Write a PNG of a scene (percentile-stretched, decimated) with detections drawn on it: points "
        "as markers, boxes and polygons as outlines, classification footprints as translucent fills, a legend.",
        epilog=_EXAMPLES_QL, formatter_class=raw,
    )
    q.add_argument("scene", help="raster (GeoTIFF, COG, VRT, ...)")
    q.add_argument("detections", nargs="?", help="detections file (omit for the plain scene)")
    q.add_argument("--out", "-o", required=True, help="output .png")
    q.add_argument("--bands", help="1 or 3 bands to show, e.g. 3,2,1 (default 1,2,3, or 1)")
    q.add_argument("--max-size", type=int, default=DEFAULT_MAX_SIZE,
                   help=f"long side of the PNG in pixels (default {DEFAULT_MAX_SIZE})")
    q.add_argument("--fill", choices=("auto", "yes", "no"), default="auto",
                   help="fill polygons instead of outlining them (default auto: fill classification footprints)")
    q.add_argument("--title", help="caption in the top-left corner (default: file, bands, count)")
    q.set_defaults(func=_cmd_quicklook)

    c = subparsers.add_parser(
        "quicklook-counts", help="write a PNG bar chart of counts per region and class",
        description="Write a stacked bar chart of a counts table (geodetect aggregate's output): the regions with "
        "most detections, one colour per class.",
    )
    c.add_argument("counts", help="counts table (.csv or .parquet) from `geodetect aggregate`")
    c.add_argument("--out", "-o", required=True, help="output .png")
    c.add_argument("--by", help="region id column (default: the first column)")
    c.add_argument("--top", type=int, default=30, help="regions shown (default 30)")
    c.set_defaults(func=_cmd_counts)


def _cmd_map(args) -> int:
    import warnings

    from geodetect.viz import to_kepler

    if args.no_hexbins and args.hexbins is not None:
        raise ConfigError("--hexbins and --no-hexbins contradict each other; give one")
    hexbins = None if args.no_hexbins else (7 if args.hexbins is None else args.hexbins)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = to_kepler(
            args.detections, args.out, regions=args.regions, by=args.by, name_col=args.name_col,
            heatmap=not args.no_heatmap, hexbins=hexbins,
            choropleth=args.choropleth, max_features=args.max_features, seed=args.seed, offline=args.offline,
            assets=args.assets, basemap=args.basemap, title=args.title, engine=args.engine,
        )
    for w in caught:
        if "max_features" in str(w.message) or "left out" in str(w.message):
            print(f"note: {w.message}", file=sys.stderr)
    size = path.stat().st_size
    human = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
    print(f"wrote {path} ({human}, {'offline' if args.offline else 'online: loads kepler.gl from unpkg.com'})",
          file=sys.stderr)
    return 0


def _cmd_quicklook(args) -> int:
    from geodetect.viz import quicklook

    dets = args.detections
    if dets is None:
        from geodetect.frames import empty_detections

        dets = empty_detections()
    fill = {"auto": None, "yes": True, "no": False}[args.fill]
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = quicklook(args.scene, dets, args.out, bands=args.bands, max_size=args.max_size, fill=fill,
                         title=args.title)
    for w in caught:
        if "not drawn" in str(w.message):
            print(f"note: {w.message}", file=sys.stderr)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _cmd_counts(args) -> int:
    from geodetect.viz import quicklook_counts

    path = quicklook_counts(args.counts, args.out, by=args.by, top=args.top)
    print(f"wrote {path}", file=sys.stderr)
    return 0
