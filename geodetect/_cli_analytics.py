"""CLI subcommands of the analytics: ``aggregate``, ``sql``, ``heatmap``.

Wired into ``geodetect.cli._parser()`` with ``register(sub)``. A thin layer
over :mod:`geodetect.analytics`: parse, call one library function, write.
Errors are GeodetectError subclasses; the main CLI prints them as one line.
"""

from __future__ import annotations

import sys

from geodetect.errors import ConfigError

__all__ = ["register"]

_EXAMPLES_AGG = """\
example:
  geodetect aggregate lions.parquet --regions counties.geojson --by fips --out counts.csv

One row per region x class (regions without detections included, count 0):
<by>, name, class_name, count, area_m2, density_per_km2, region_area_km2.
A detection on a border shared by regions counts once, in the region with the smallest id.
"""

_EXAMPLES_SQL = """\
example:
  geodetect sql "SELECT r.fips, COUNT(*) AS n FROM detections d JOIN regions r ON ST_Contains(r.geometry, d.geometry) GROUP BY r.fips" \\
      --table detections=lions.parquet --table regions=counties.geojson --out n.csv

Sedona SQL run by SedonaDB (embedded). GeoParquet tables are read in place. One read-only query
(SELECT, WITH, VALUES) over the --table tables; --allow-files lifts that for trusted queries.
"""


def register(subparsers) -> None:
    """Add the analytics subcommands to the ``geodetect`` subparsers."""
    import argparse

    raw = argparse.RawDescriptionHelpFormatter

    a = subparsers.add_parser(
        "aggregate", help="count detections per region and class",
        description="Count detections per region and class, with areas and densities (EPSG:6933).",
        epilog=_EXAMPLES_AGG, formatter_class=raw,
    )
    a.add_argument("detections", help="detections file (.parquet, .geojson, .gpkg, .fgb, ...)")
    a.add_argument("--regions", "-r", required=True, help="region polygons (any vector file)")
    a.add_argument("--by", required=True, help="region id column (unique), e.g. fips")
    a.add_argument("--name-col", help="region name column (default: 'name' when there is one)")
    a.add_argument("--engine", choices=("sedonadb", "geopandas"), default="sedonadb",
                   help="sedonadb (default, embedded Apache Sedona) or geopandas; same numbers")
    a.add_argument("--out", "-o", help="output table: .csv or .parquet (default: CSV on stdout)")
    a.set_defaults(func=_cmd_aggregate)

    s = subparsers.add_parser(
        "sql", help="run Sedona SQL over detections and region files",
        description="Run a Sedona SQL query in SedonaDB over named tables.",
        epilog=_EXAMPLES_SQL, formatter_class=raw,
    )
    s.add_argument("query", help="the SQL query")
    s.add_argument("--table", "-t", action="append", default=[], metavar="NAME=PATH",
                   help="a table for the query (repeat): name=path to a vector file")
    s.add_argument("--out", "-o", help="output: .csv, .parquet, or a vector format if the result has geometry "
                   "(default: CSV on stdout, geometry as WKT)")
    s.add_argument("--allow-files", action="store_true",
                   help="trusted queries only: let SedonaDB read and write files itself (COPY ... TO, CREATE EXTERNAL "
                   "TABLE, FROM 'path'); by default only one read-only query over the --table tables runs")
    s.set_defaults(func=_cmd_sql)

    h = subparsers.add_parser(
        "heatmap", help="count detections per H3 cell",
        description="Count detections per H3 cell and class; writes the cells as polygons (EPSG:4326).",
    )
    h.add_argument("detections", help="detections file")
    h.add_argument("--resolution", type=int, default=7, help="H3 resolution 0-15 (default 7, cells ~5 km2)")
    h.add_argument("--out", "-o", required=True, help="output: .geojson, .parquet, .gpkg, .fgb or .csv")
    h.set_defaults(func=_cmd_heatmap)


def _check_out(path) -> None:
    import os

    from geodetect.frames import check_output_path

    if path and os.path.splitext(str(path))[1].lower() not in (".csv", ".parquet"):
        check_output_path(path)


def _emit(df, out) -> None:
    from geodetect.analytics import write_table

    if out:
        path = write_table(df, out)
        print(f"wrote {len(df)} rows to {path}", file=sys.stderr)
        return
    if hasattr(df, "geometry") and hasattr(df, "crs"):
        geom = df.geometry.name
        df = df.drop(columns=geom).assign(**{geom: df.geometry.to_wkt()})
    df.to_csv(sys.stdout, index=False)


def _cmd_aggregate(args) -> int:
    from geodetect.analytics import aggregate

    if args.out and not str(args.out).lower().endswith((".csv", ".parquet")):
        raise ConfigError(f"{args.out}: the counts table is written as .csv or .parquet")
    counts = aggregate(args.detections, args.regions, by=args.by, name_col=args.name_col, engine=args.engine)
    _emit(counts, args.out)
    st = counts.attrs.get("geodetect", {})
    if st.get("unassigned"):
        print(f"note: {st['unassigned']} detections fall in no region", file=sys.stderr)
    _note_skipped(st)
    return 0


def _note_skipped(st) -> None:
    n = st.get("skipped_empty") or 0
    if n:
        print(f"note: {n} detection(s) with no geometry, an empty one or NaN/infinite coordinates were left out",
              file=sys.stderr)


def _cmd_sql(args) -> int:
    from geodetect.analytics import sql

    tables = {}
    for spec in args.table:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--table {spec!r}: write it as NAME=PATH, e.g. --table regions=counties.geojson")
        if name in tables:
            raise ConfigError(f"--table: the name {name!r} is given twice")
        tables[name] = path
    if not tables:
        raise ConfigError("sql needs at least one --table NAME=PATH")
    _check_out(args.out)
    _emit(sql(args.query, allow_files=args.allow_files, **tables), args.out)
    return 0


def _cmd_heatmap(args) -> int:
    from geodetect.analytics import heatmap

    _check_out(args.out)
    cells = heatmap(args.detections, resolution=args.resolution)
    _emit(cells, args.out)
    _note_skipped(cells.attrs.get("geodetect", {}))
    return 0
