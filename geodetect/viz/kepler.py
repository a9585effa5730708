"""kepler.gl maps of detections: one self-describing HTML file, online or offline.

>>> import geodetect as gd                                                    # doctest: +SKIP
>>> gd.to_kepler(dets, "map.html", regions="counties.geojson", by="fips")     # doctest: +SKIP

The file holds the data (inline JSON), a ready kepler.gl layer configuration and
a small bootstrap script; kepler.gl itself (3.2.6, UMD build) and its pinned
dependencies are loaded from unpkg with Subresource Integrity, or inlined with
``offline=True`` (see :mod:`geodetect.viz.assets`). No Mapbox token is needed:
the basemap is one of CARTO's free styles kepler.gl ships with (``dark-matter``,
``positron``, ``voyager``), or none. Without network the basemap just stays blank.

Layers, top to bottom (each only when there is data for it):

``detections``
    point layer of point detections, coloured by class;
``detection_shapes``
    polygon layer of boxes / polygons / classification footprints, coloured by class
    (translucent fill, class-coloured outline);
``heatmap``
    kepler.gl heatmap of the detections (of the H3 cell counts when the raw
    detections were sampled, so it still counts every detection);
``h3``
    H3 hexagons (``hexbins`` resolution) coloured by count (:func:`geodetect.analytics.heatmap`);
``regions``
    choropleth of detections per region (``choropleth="count"``) or per km²
    (``"density"``), from :func:`geodetect.aggregate`.

Tooltips show class, score, region, detector and scene for detections, id, name,
count and density for regions, cell id and count for H3 cells. The view is
fitted to the data, the short way across the antimeridian when the data
straddles it (longitudes on the far side are then shifted by 360 degrees for
display, so the data is drawn in one piece).

Size guard: with more than ``max_features`` detections the map embeds a
deterministic random sample of ``max_features`` of them (``seed``), while the
H3 and region layers and the heatmap are computed from all of them; a warning,
the page title and a note on the page say so. A Spark DataFrame is never
collected: counts per region (:func:`geodetect.spark.aggregate`) and per H3 cell
(``mapInPandas`` + ``groupBy``) run on Spark, and only those small tables and a
``limit``-ed sample reach the driver.

Geometry columns: the active geometry is drawn, whatever its name; any other
geometry column is exported as WKT text in ``<name>_wkt`` (``meta.wkt_columns``
and ``meta.notes`` in the file say which). Every other column is kept (numbers as
numbers, anything else as text), except ``lon``, ``lat``, ``region`` and
``region_name``, which the map computes itself (representative point, region by
the analytics' border rule).
"""

from __future__ import annotations

import html as _html
import json
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geodetect.errors import ConfigError, OutputError

__all__ = ["to_kepler", "DEFAULT_MAX_FEATURES", "BASEMAPS"]

log = logging.getLogger("geodetect")

DEFAULT_MAX_FEATURES = 250_000
BASEMAPS = ("dark-matter", "positron", "voyager", "none")
_VIEW_W, _VIEW_H = 1000, 700  # the view is fitted for at least this many pixels
_ID_COLUMNS = ("fips", "geoid", "id", "code", "region_id")
_MAX_CLASS_COLUMNS = 20
_RESERVED = ("geometry", "lon", "lat", "region", "region_name")  # columns the map computes itself


# --------------------------------------------------------------------------- public


def to_kepler(
    dets,
    path,
    *,
    regions=None,
    by: str | None = None,
    name_col: str | None = None,
    heatmap: bool = True,
    hexbins: int | None = 7,
    choropleth: str = "count",
    max_features: int = DEFAULT_MAX_FEATURES,
    seed: int = 0,
    offline: bool = False,
    assets=None,
    basemap: str = "dark-matter",
    title: str | None = None,
    engine: str = "sedonadb",
    crs="EPSG:4326",
) -> Path:
    """Write detections (and their aggregates) as a kepler.gl map in one HTML file.

    Parameters
    ----------
    dets:
        detections: a GeoDataFrame with a CRS (any active geometry column), a path to a
        vector file, or a Spark DataFrame with WKB ``geometry`` (in ``crs``).
    path:
        the ``.html`` file to write (under a temporary name, then renamed).
    regions, by, name_col:
        region polygons (GeoDataFrame or vector file) for the choropleth and the
        ``region`` of each detection; ``by`` is the id column (default: the first of
        fips/geoid/id/code that is unique, else the first unique column).
    heatmap:
        add a heatmap layer.
    hexbins:
        H3 resolution (0-15) of the hexagon layer; ``None`` or ``False`` for none.
    choropleth:
        ``"count"`` or ``"density"`` (detections per km², EPSG:6933 areas).
    max_features:
        the most raw detections embedded; above it a deterministic sample (``seed``) is shown
        and the aggregate layers count everything (see the module docstring).
    offline:
        inline kepler.gl and its dependencies (about 15.5 MB) so the map opens without
        internet; they are read from a local folder (:func:`geodetect.viz.assets.find_assets`).
    basemap:
        ``"dark-matter"`` (default), ``"positron"``, ``"voyager"`` (CARTO, no token) or ``"none"``.
    engine:
        engine of :func:`geodetect.aggregate` for the region counts.
    crs:
        CRS of a Spark DataFrame's WKB geometries (GeoDataFrames carry their own).

    Returns the path written. ``UserWarning`` when the detections were sampled.
    """
    path = Path(os.fspath(path))
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"{path}: a kepler.gl map is an .html file; name it e.g. {path.with_suffix('.html').name}")
    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'map.html'}")
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 1:
        raise ConfigError(f"max_features must be a positive integer, not {max_features!r}")
    if hexbins is False:
        hexbins = None
    if hexbins is not None and (isinstance(hexbins, bool) or not isinstance(hexbins, (int, np.integer))
                                or not 0 <= int(hexbins) <= 15):
        raise ConfigError(f"hexbins must be an H3 resolution from 0 to 15 (or None), not {hexbins!r}")
    if choropleth not in ("count", "density"):
        raise ConfigError(f"choropleth must be 'count' or 'density', not {choropleth!r}")
    if basemap not in BASEMAPS:
        raise ConfigError(f"basemap must be one of {', '.join(BASEMAPS)}, not {basemap!r}")
    if regions is None and (by is not None or name_col is not None):
        raise ConfigError("by= and name_col= need regions= (CLI: --regions FILE)")

    asset_bytes = None
    if offline:  # fail before any work when the assets are missing
        from geodetect.viz.assets import find_assets

        asset_bytes = find_assets(assets)

    if _is_spark(dets):
        data = _collect_spark(dets, regions, by, name_col, hexbins, max_features, seed, crs)
    else:
        data = _collect_local(dets, regions, by, name_col, hexbins, max_features, seed, engine)

    if data.sampled:
        msg = (f"{data.total:,} detections exceed max_features={max_features:,}: the map shows a deterministic sample "
               f"of {data.shown:,} (seed {seed}); the "
               + " and ".join(x for x in ("heatmap" if heatmap and data.h3 is not None else "",
                                          "H3" if data.h3 is not None else "",
                                          "region" if data.regions is not None else "") if x)
               + " layers count all of them")
        if data.h3 is None and data.regions is None:
            msg = (f"{data.total:,} detections exceed max_features={max_features:,}: the map shows a deterministic "
                   f"sample of {data.shown:,} (seed {seed}); add hexbins= or regions= to count all of them")
        data.notes.insert(0, msg)
        warnings.warn(msg, UserWarning, stacklevel=2)

    spec = _build_spec(data, heatmap=heatmap, choropleth=choropleth, basemap=basemap, max_features=max_features,
                       seed=seed, offline=offline)
    if title is None:
        title = f"geodetect: {data.total:,} detections"
        if data.sampled:
            title += f" (map shows a sample of {data.shown:,})"
    text = _render_html(spec, title=title, note=" ".join(data.notes[:1]) if data.sampled else "",
                        asset_bytes=asset_bytes)
    _write_text(path, text)
    return path


# --------------------------------------------------------------------------- collected data


@dataclass
class _MapData:
    points: object = None  # GeoDataFrame (EPSG:4326) of point detections shown, with lon/lat/region
    shapes: object = None  # same, polygon detections
    h3: object = None  # GeoDataFrame: h3_cell, count, count_<class>..., lon, lat, geometry
    h3_resolution: int | None = None
    regions: object = None  # GeoDataFrame: by, (name), count, density_per_km2, region_area_km2, count_<class>...
    by: str | None = None
    name_col: str | None = None
    classes: list = field(default_factory=list)
    total: int = 0
    shown: int = 0
    sampled: bool = False
    geometry_column: str = "geometry"
    wkt_columns: list = field(default_factory=list)
    skipped_empty: int = 0
    notes: list = field(default_factory=list)
    source: str = "GeoDataFrame"


def _is_spark(obj) -> bool:
    return type(obj).__module__.startswith("pyspark.") and hasattr(obj, "mapInPandas")


def _lonlat_frame(dets, what="detections"):
    """A GeoDataFrame in EPSG:4326 whose geometry column is ``geometry`` (the active one); other geometry
    columns become WKT text. Returns (frame, active name, converted columns)."""
    import geopandas as gpd
    import pandas as pd

    if isinstance(dets, (str, os.PathLike)):
        from geodetect.frames import read

        dets = read(dets)
    if not isinstance(dets, gpd.GeoDataFrame):
        raise ConfigError(f"{what} must be a GeoDataFrame, a vector file or a Spark DataFrame, not {type(dets).__name__}")
    try:
        active = dets.geometry.name
    except AttributeError:
        raise ConfigError(f"{what} have no active geometry column; choose one with .set_geometry('<column>')") from None
    if dets.crs is None:
        raise ConfigError(f"{what} have no CRS; set one (dets.set_crs('EPSG:4326') for lon/lat)")
    if "class_name" not in dets.columns:
        raise ConfigError(f"{what} have no 'class_name' column; columns are: {', '.join(map(str, dets.columns))}")
    cols, wkt, replaced = {}, [], []
    for c in dets.columns:
        if c == active:
            continue
        s = dets[c]
        if isinstance(s.dtype, gpd.array.GeometryDtype):
            name = f"{c}_wkt"
            cols[name] = gpd.GeoSeries(s.values).to_wkt().where(~gpd.GeoSeries(s.values).isna(), None).to_numpy(object)
            wkt.append(c)
        elif str(c) in _RESERVED:
            replaced.append(str(c))
        else:
            cols[str(c)] = s.to_numpy()
    if replaced:
        log.info("%s: columns %s are replaced by the map's own (representative point, region)", what, replaced)
    geoms = dets.geometry
    from pyproj import CRS

    if not CRS.from_user_input(dets.crs).equals(CRS.from_user_input("EPSG:4326"), ignore_axis_order=True):
        geoms = geoms.to_crs("EPSG:4326")
    out = gpd.GeoDataFrame(pd.DataFrame(cols), geometry=gpd.GeoSeries(np.asarray(geoms.values, dtype=object),
                                                                       crs="EPSG:4326"), crs="EPSG:4326")
    return out, str(active), wkt


def _drop_empty(gdf):
    """Leave out (and count) detections that cannot be placed: missing, empty or non-finite geometries."""
    from geodetect.frames import unplaceable

    bad = unplaceable(gdf.geometry.values)
    if bad.any():
        gdf = gdf.loc[~bad].reset_index(drop=True)
    return gdf, int(bad.sum())


def _rep_points(geoms) -> tuple[np.ndarray, np.ndarray]:
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    pts = geoms.copy()
    is_pt = shapely.get_type_id(geoms) == 0
    if (~is_pt).any():
        pts[~is_pt] = shapely.point_on_surface(geoms[~is_pt])
    return shapely.get_x(pts).astype(np.float64), shapely.get_y(pts).astype(np.float64)


def _sample_index(n: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def _load_regions(regions, by, name_col):
    """Regions in EPSG:4326, cleaned (load_regions), with ``by`` inferred when not given."""
    from geodetect.regions import load_regions

    if by is None:
        by = _guess_by(regions)
    reg = load_regions(regions, by, name_col, crs="EPSG:4326")
    return reg, by, reg.attrs["geodetect_regions"]["name_col"]


def _guess_by(regions) -> str:
    import geopandas as gpd

    from geodetect.regions import _read

    gdf, label = _read(regions)
    cols = [c for c in gdf.columns if c != gdf.geometry.name and not isinstance(gdf[c].dtype, gpd.array.GeometryDtype)]
    unique = [c for c in cols if gdf[c].notna().all() and gdf[c].is_unique]
    for want in _ID_COLUMNS:
        for c in unique:
            if str(c).lower() == want:
                return c
    if unique:
        return unique[0]
    raise ConfigError(f"{label}: no column identifies the regions uniquely; give by= (CLI: --by COLUMN); "
                      f"columns are: {', '.join(map(str, cols)) or 'none'}")


def _region_table(counts, reg, by, name_col, classes):
    """Per-region totals (+ per class counts) joined back to the region polygons."""
    import geopandas as gpd
    import pandas as pd

    c = pd.DataFrame(counts)
    tot = c.groupby(by, sort=False).agg(count=("count", "sum"), region_area_km2=("region_area_km2", "first"))
    out = pd.DataFrame({by: reg[by].to_numpy()})
    if name_col:
        out[name_col] = reg[name_col].to_numpy()
    out = out.merge(tot.reset_index(), on=by, how="left")
    out["count"] = out["count"].fillna(0).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["density_per_km2"] = np.where(out["region_area_km2"] > 0, out["count"] / out["region_area_km2"], np.nan)
    if 1 < len(classes) <= _MAX_CLASS_COLUMNS:
        wide = c.pivot_table(index=by, columns="class_name", values="count", aggfunc="sum", fill_value=0)
        for k in classes:
            col = wide[k] if k in wide.columns else pd.Series(0, index=wide.index)
            out[f"count_{k}"] = out[by].map(col).fillna(0).astype(np.int64).to_numpy()
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(np.asarray(reg.geometry.values, dtype=object),
                                                        crs="EPSG:4326"), crs="EPSG:4326")


def _assign_regions(gdf, reg, by, name_col):
    """Region id (and name) of each detection shown, by the analytics' border rule."""
    import pandas as pd

    from geodetect.analytics import _prepare_detections, _prepare_regions
    from geodetect.engines.geopandas import GeoPandasEngine

    prepared = _prepare_regions(reg, by, name_col, "EPSG:4326")
    table, _ = _prepare_detections(gdf.assign(class_name=gdf["class_name"].astype(str)))
    a = GeoPandasEngine().assign(table, prepared.table)
    keys = prepared.frame.set_index("_region_order")
    region = pd.Series([None] * len(gdf), dtype=object)
    det = a["_det_id"].to_numpy(np.int64)
    region.iloc[det] = keys[by].reindex(a["_region_order"].to_numpy()).astype(str).to_numpy(object)
    out = {"region": region.to_numpy(object)}
    if name_col:
        nm = pd.Series([None] * len(gdf), dtype=object)
        nm.iloc[det] = keys[name_col].reindex(a["_region_order"].to_numpy()).to_numpy(object)
        out["region_name"] = nm.to_numpy(object)
    return out


def _h3_table(cell_counts, resolution: int, max_cells: int, notes: list):
    """(h3_cell, class_name, count) rows -> per-cell GeoDataFrame, coarsened while there are too many cells."""
    import geopandas as gpd
    import pandas as pd

    from geodetect.analytics import _cell_polygons, _import_h3
    from geodetect.regions import split_antimeridian

    h3 = _import_h3()
    df = pd.DataFrame(cell_counts)[["h3_cell", "class_name", "count"]]
    res = resolution
    while res > 0 and df["h3_cell"].nunique() > max_cells:
        res -= 1
        df = (df.assign(h3_cell=[h3.cell_to_parent(c, res) for c in df["h3_cell"]])
              .groupby(["h3_cell", "class_name"], as_index=False)["count"].sum())
    if res != resolution:
        notes.append(f"H3 layer coarsened from resolution {resolution} to {res} to stay within max_features cells")
    classes = sorted(df["class_name"].astype(str).unique())
    per = df.groupby("h3_cell", sort=True)["count"].sum()
    out = pd.DataFrame({"h3_cell": per.index.to_numpy(object), "count": per.to_numpy(np.int64)})
    if 1 < len(classes) <= _MAX_CLASS_COLUMNS:
        wide = df.pivot_table(index="h3_cell", columns="class_name", values="count", aggfunc="sum", fill_value=0)
        for k in classes:
            out[f"count_{k}"] = wide[k].reindex(out["h3_cell"]).fillna(0).astype(np.int64).to_numpy()
    latlng = np.array([h3.cell_to_latlng(c) for c in out["h3_cell"]], dtype=np.float64).reshape(-1, 2)
    out["lon"], out["lat"] = latlng[:, 1], latlng[:, 0]
    polys = split_antimeridian(_cell_polygons(h3, list(out["h3_cell"])))
    return gpd.GeoDataFrame(out, geometry=gpd.GeoSeries(polys, crs="EPSG:4326"), crs="EPSG:4326"), res


def _split_kinds(gdf, data: _MapData) -> None:
    import shapely

    t = shapely.get_type_id(np.asarray(gdf.geometry.values, dtype=object))
    is_pt = np.isin(t, (0, 4))  # Point, MultiPoint
    if is_pt.any():
        data.points = gdf.loc[is_pt].reset_index(drop=True)
    if (~is_pt).any():
        data.shapes = gdf.loc[~is_pt].reset_index(drop=True)


def _finish_detections(shown, data: _MapData, reg, by, name_col) -> None:
    lon, lat = _rep_points(shown.geometry.values)
    shown = shown.assign(lon=lon, lat=lat)
    if reg is not None:
        for k, v in _assign_regions(shown, reg, by, name_col).items():
            shown[k] = v
    data.shown = len(shown)
    _split_kinds(shown, data)


def _collect_local(dets, regions, by, name_col, hexbins, max_features, seed, engine) -> _MapData:
    from geodetect.analytics import aggregate
    from geodetect.analytics import heatmap as h3_counts

    gdf, active, wkt = _lonlat_frame(dets)
    gdf, skipped = _drop_empty(gdf)
    data = _MapData(total=len(gdf), geometry_column=active, wkt_columns=wkt, skipped_empty=skipped)
    if wkt:
        data.notes.append(f"geometry column {active!r} is drawn; {', '.join(map(repr, wkt))} exported as WKT text "
                          f"({', '.join(f'{c}_wkt' for c in wkt)})")
    if skipped:
        msg = f"{skipped} detection(s) with no geometry, an empty one or NaN/infinite coordinates left out"
        data.notes.append(msg)
        warnings.warn(msg, UserWarning, stacklevel=3)
    data.classes = sorted(gdf["class_name"].astype(str).unique())
    reg = None
    if regions is not None:
        reg, by, name_col = _load_regions(regions, by, name_col)
        counts = aggregate(gdf, reg, by, name_col=name_col, engine=engine)
        data.regions, data.by, data.name_col = _region_table(counts, reg, by, name_col, data.classes), by, name_col
    if hexbins is not None and len(gdf):
        data.h3, data.h3_resolution = _h3_table(h3_counts(gdf, int(hexbins)), int(hexbins), max_features, data.notes)
    shown = gdf
    if len(gdf) > max_features:
        data.sampled = True
        shown = gdf.iloc[_sample_index(len(gdf), max_features, seed)].reset_index(drop=True)
    _finish_detections(shown, data, reg, by, name_col)
    return data


# --------------------------------------------------------------------------- Spark


_H3_SCHEMA = "h3_cell string, class_name string"


def _h3_cells_fn(resolution: int, crs_wkt: str):
    """mapInPandas: WKB detections -> one (h3_cell, class_name) row each, computed on the executors."""

    def fn(batches):
        import pandas as pd
        import shapely

        from geodetect.analytics import _import_h3
        from geodetect.georef import transformer

        h3 = _import_h3()
        tr = None
        from pyproj import CRS

        if not CRS.from_user_input(crs_wkt).equals(CRS.from_user_input("EPSG:4326"), ignore_axis_order=True):
            tr = transformer(crs_wkt, "EPSG:4326")
        for pdf in batches:
            g = shapely.from_wkb(pdf["geometry"].to_numpy())
            ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
            x, y = _rep_points(g[ok])
            if tr is not None:
                x, y = tr.transform(x, y)
            cells = [h3.latlng_to_cell(float(b), float(a), resolution) for a, b in zip(x, y)]
            yield pd.DataFrame({"h3_cell": pd.Series(cells, dtype=object),
                                "class_name": pdf["class_name"].to_numpy(object)[ok].astype(str)})

    return fn


def _collect_spark(sdf, regions, by, name_col, hexbins, max_features, seed, crs) -> _MapData:
    import geopandas as gpd
    import pandas as pd
    import shapely
    from pyproj import CRS

    from geodetect import spark as gds

    missing = [c for c in ("class_name", "geometry") if c not in sdf.columns]
    if missing:
        raise ConfigError(f"the Spark detections have no {', '.join(missing)} column; columns are: {', '.join(sdf.columns)}")
    sdf = gds.as_wkb(sdf)  # a Sedona geometry column (gds.detect with Sedona) -> WKB, which the code below reads
    crs_wkt = CRS.from_user_input(crs).to_wkt()
    per_class = sdf.groupBy("class_name").count().collect()  # one job: the total and the classes
    total = int(sum(r["count"] for r in per_class))
    data = _MapData(total=total, source="Spark DataFrame")
    data.classes = sorted(str(r["class_name"]) for r in per_class)
    reg = None
    if regions is not None:
        reg, by, name_col = _load_regions(regions, by, name_col)
        counts = gds.aggregate(sdf, reg, by, name_col=name_col, classes=data.classes, crs=crs)
        data.regions, data.by, data.name_col = _region_table(counts, reg, by, name_col, data.classes), by, name_col
    if hexbins is not None and total:
        from pyspark.sql import functions as F

        cells = (sdf.select("class_name", "geometry").mapInPandas(_h3_cells_fn(int(hexbins), crs_wkt), schema=_H3_SCHEMA)
                 .groupBy("h3_cell", "class_name").agg(F.count(F.lit(1)).alias("count"))).persist()
        n_cells = cells.count()
        if n_cells > 4 * max_features:  # never bring an unbounded table to the driver: coarsen on Spark first
            res = int(hexbins)
            while res > 0 and n_cells > 4 * max_features:
                res -= 1
                parent = F.udf(lambda c, r=res: __import__("h3").cell_to_parent(c, r), "string")
                cells = cells.withColumn("h3_cell", parent("h3_cell")).groupBy("h3_cell", "class_name").agg(
                    F.sum("count").alias("count"))
                n_cells = cells.count()
            data.notes.append(f"H3 cells coarsened on Spark from resolution {hexbins} to {res}")
            hexbins = res
        cell_counts = cells.toPandas().astype({"count": "int64"})  # at most 4 x max_features rows
        cells.unpersist()
        data.h3, data.h3_resolution = _h3_table(cell_counts, int(hexbins), max_features, data.notes)
    if total > max_features:
        data.sampled = True
        frac = min(1.0, 1.5 * max_features / total)
        part = sdf.sample(withReplacement=False, fraction=frac, seed=seed).limit(max_features)
    else:
        part = sdf.limit(max_features)
    pdf = part.toPandas()
    wkb = [None if w is None else bytes(w) for w in pdf["geometry"]]  # pyspark 4.0 gives bytearray
    geoms = shapely.from_wkb(wkb) if len(pdf) else np.array([], dtype=object)
    gdf = gpd.GeoDataFrame(pdf.drop(columns=["geometry"]), geometry=gpd.GeoSeries(geoms, crs=crs_wkt), crs=crs_wkt)
    gdf = gdf.drop(columns=[c for c in gdf.columns if c == "geom"])  # Sedona geometry column, if any
    gdf, _, _ = _lonlat_frame(gdf, "the Spark detections")
    gdf, data.skipped_empty = _drop_empty(gdf)
    _finish_detections(gdf, data, reg, by, name_col)
    return data


# --------------------------------------------------------------------------- view


def _merc_y(lat):
    lat = np.clip(np.asarray(lat, np.float64), -85.0511, 85.0511)
    return (1.0 - np.log(np.tan(np.pi / 4 + np.radians(lat) / 2)) / np.pi) / 2.0


def _merc_lat(y):
    return float(np.degrees(2 * np.arctan(np.exp((1.0 - 2.0 * y) * np.pi)) - np.pi / 2))


@dataclass
class _View:
    longitude: float
    latitude: float
    zoom: float
    bounds: tuple  # west, south, east, north (east > 180 when the data crosses the antimeridian)
    crosses: bool = False
    cut: float = 180.0  # longitudes on the far side of this meridian are shifted for display
    shift: float = 0.0  # +360 (shift the parts west of `cut`) or -360 (the parts east of it)


def fit_view(lons, lats, width: int = _VIEW_W, height: int = _VIEW_H) -> _View:
    """A kepler.gl mapState (centre and zoom) showing every point, the short way round the globe.

    >>> v = fit_view([179.5, -179.5], [52.0, 52.5])
    >>> v.crosses, round(v.longitude, 3) in (180.0, -180.0), v.zoom > 5
    (True, True, True)
    >>> fit_view([-122.5, -122.0], [37.5, 38.0]).crosses
    False
    """
    lons = np.asarray(lons, np.float64)
    lats = np.asarray(lats, np.float64)
    ok = np.isfinite(lons) & np.isfinite(lats)
    lons, lats = lons[ok], lats[ok]
    if len(lons) == 0:
        return _View(0.0, 20.0, 1.0, (-180.0, -85.0, 180.0, 85.0))
    lons = ((lons + 180.0) % 360.0) - 180.0
    u = np.unique(lons)
    west, east = float(u[0]), float(u[-1])
    crosses, cut = False, 180.0
    if len(u) > 1:
        gaps = np.diff(u)
        i = int(np.argmax(gaps))
        wrap = u[0] + 360.0 - u[-1]
        if gaps[i] > wrap:  # the widest empty band is inside [-180, 180]: the data straddles the antimeridian
            west, east = float(u[i + 1]), float(u[i] + 360.0)
            crosses = True
            cut = float((u[i] + u[i + 1]) / 2.0)
    south, north = float(lats.min()), float(lats.max())
    span_x = max(east - west, 1e-4)
    ys = _merc_y([south, north])
    span_y = max(abs(float(ys[0] - ys[1])), 1e-6)
    zoom = min(math.log2(width * 360.0 / (512.0 * span_x)), math.log2(height / (512.0 * span_y))) - 0.35
    zoom = float(min(max(zoom, 0.5), 15.0))
    lon_c = (west + east) / 2.0
    shift = 0.0
    if crosses:
        shift = 360.0 if lon_c <= 180.0 else -360.0
        if lon_c > 180.0:
            lon_c -= 360.0
    lat_c = _merc_lat(float(ys.mean()))
    return _View(round(lon_c, 6), round(lat_c, 6), round(zoom, 3), (west, south, east, north), crosses, cut, shift)


def _shift_lon(x: np.ndarray, view: _View) -> np.ndarray:
    if not view.crosses:
        return x
    move = (x < view.cut) if view.shift > 0 else (x > view.cut)
    return np.where(move, x + view.shift, x)


def _shift_geoms(geoms: np.ndarray, view: _View) -> np.ndarray:
    """Shift whole parts lying on the far side of ``view.cut`` by 360 degrees (display only)."""
    import shapely

    geoms = np.asarray(geoms, dtype=object)
    if not view.crosses or len(geoms) == 0:
        return geoms
    parts, owner = shapely.get_parts(geoms, return_index=True)
    b = shapely.bounds(parts)
    move = (b[:, 2] <= view.cut) if view.shift > 0 else (b[:, 0] >= view.cut)
    if not move.any():
        return geoms
    parts = parts.copy()
    parts[move] = shapely.transform(parts[move], lambda c: c + np.array([view.shift, 0.0]))
    out = geoms.copy()
    for i in np.unique(owner[move]):  # only the geometries with a moved part are rebuilt
        ps = parts[owner == i]
        if len(ps) == 1:
            out[i] = ps[0]
        elif all(p.geom_type == "Polygon" for p in ps):
            out[i] = shapely.MultiPolygon(list(ps))
        elif all(p.geom_type == "Point" for p in ps):
            out[i] = shapely.MultiPoint(list(ps))
        else:
            out[i] = shapely.GeometryCollection(list(ps))
    return out


# --------------------------------------------------------------------------- spec (data + kepler config)


def _json_records(df) -> str:
    """A DataFrame's columns -> JSON text of {"fields": [...], "rows": [[...], ...]} (numbers stay numbers)."""
    df = _plain_columns(df)
    split = df.to_json(orient="split", index=False, date_format="iso", double_precision=8)
    body = json.loads(split)
    return json.dumps({"fields": body["columns"], "rows": body["data"]}, ensure_ascii=False,
                      separators=(",", ":"), allow_nan=False) if len(df.columns) else '{"fields":[],"rows":[]}'


def _plain_columns(df):
    """Numbers and booleans kept; datetimes as ISO text; anything else as text (None stays null)."""
    import pandas as pd

    out = {}
    for c in df.columns:
        s = df[c]
        if pd.api.types.is_bool_dtype(s) or pd.api.types.is_numeric_dtype(s):
            if pd.api.types.is_float_dtype(s):
                s = s.astype(np.float64).where(np.isfinite(s.astype(np.float64)), None)
            out[str(c)] = s
        elif pd.api.types.is_datetime64_any_dtype(s):
            out[str(c)] = s.map(lambda v: None if pd.isna(v) else v.isoformat())
        else:
            out[str(c)] = s.map(lambda v: None if v is None or (isinstance(v, float) and math.isnan(v))
                                else (v if isinstance(v, str) else str(v)))
    return pd.DataFrame(out, index=df.index)


def _geojson_text(gdf, view: _View, precision: int = 6) -> str:
    """A GeoDataFrame -> GeoJSON FeatureCollection text (coordinates rounded, shifted for display)."""
    import shapely

    geoms = np.asarray(gdf.geometry.values, dtype=object)
    geoms = _shift_geoms(geoms, view)
    geoms = shapely.transform(geoms, lambda c: np.round(c, precision))
    gtext = shapely.to_geojson(geoms)
    props = _plain_columns(gdf.drop(columns=gdf.geometry.name)).to_json(
        orient="records", date_format="iso", double_precision=8)
    plist = json.loads(props)
    feats = ",".join('{"type":"Feature","properties":%s,"geometry":%s}'
                     % (json.dumps(p, ensure_ascii=False, separators=(",", ":")), g) for p, g in zip(plist, gtext))
    return '{"type":"FeatureCollection","features":[%s]}' % feats


def _breaks(values, ramp, name: str, *, zero_bin: bool, integer: bool) -> dict:
    """A kepler.gl custom (threshold) colour range: zeros in their own bin, then quantiles of the positive values.

    (kepler.gl's own quantile scale puts every zero in the top bin when most regions have no detections.)
    """
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    pos = np.sort(v[v > 0])
    ramp = list(ramp)
    th: list[float] = []
    if zero_bin and len(pos):
        th.append(float(pos[0]))
    n_q = len(ramp) - (1 if zero_bin else 0)
    if len(pos):
        for q in np.quantile(pos, np.arange(1, n_q) / n_q):
            q = float(math.ceil(q) if integer else q)
            if q > (th[-1] if th else pos[0]) and q <= pos[-1]:
                th.append(q)
    if not th:
        th = [1.0]
    n_bins = len(th) + 1
    if zero_bin:
        rest = ramp[1:]
        colors = [ramp[0]] + [rest[int(round(i))] for i in np.linspace(0, len(rest) - 1, n_bins - 1)]
    else:
        colors = [ramp[int(round(i))] for i in np.linspace(0, len(ramp) - 1, n_bins)]
    cmap = [[(int(t) if integer else round(t, 6)), c] for t, c in zip(th, colors)] + [[None, colors[-1]]]
    return {"name": name, "type": "custom", "category": "Custom", "colors": colors, "colorMap": cmap}


def _build_spec(data: _MapData, *, heatmap, choropleth, basemap, max_features, seed, offline) -> dict:
    from geodetect import __version__
    from geodetect.viz._style import SEQUENTIAL, class_colors, hex_to_rgb
    from geodetect.viz.assets import KEPLER_GL_VERSION

    # view: every detection shown, plus the H3 cells (they cover the detections left out of a sample)
    lons, lats = [], []
    for g in (data.points, data.shapes):
        if g is not None:
            lons.append(g["lon"].to_numpy(np.float64))
            lats.append(g["lat"].to_numpy(np.float64))
    if data.h3 is not None and len(data.h3):
        lons.append(data.h3["lon"].to_numpy(np.float64))
        lats.append(data.h3["lat"].to_numpy(np.float64))
    if not lons and data.regions is not None and len(data.regions):
        import shapely

        b = shapely.bounds(shapely.get_parts(np.asarray(data.regions.geometry.values, dtype=object)))
        lons += [b[:, 0], b[:, 2]]
        lats += [b[:, 1], b[:, 3]]
    view = fit_view(np.concatenate(lons) if lons else [], np.concatenate(lats) if lats else [])
    if view.crosses:
        data.notes.append("the data straddles the antimeridian: coordinates beyond it (and the lon column) are "
                          "shifted by 360 degrees so the map draws the data in one piece")

    colors = class_colors(data.classes)
    class_range = {"name": "geodetect classes", "type": "custom", "category": "Custom",
                   "colors": list(colors.values()) or ["#e6194b"],
                   "colorMap": [[k, v] for k, v in colors.items()] or [["", "#e6194b"]]}

    def seq(name, label):
        return {"name": label, "type": "sequential", "category": "ColorBrewer", "colors": list(SEQUENTIAL[name])}

    raw: dict[str, str] = {}
    datasets, layers, tooltips = [], [], {}
    det_fields = [f for f in ("class_name", "score", "region", "region_name", "detector", "scene_id")]

    def add_dataset(did, label, fmt, text, fields_present):
        key = f"__geodetect_raw_{len(raw)}__"
        raw[key] = text
        datasets.append({"id": did, "label": label, "format": fmt, "data": key})
        tooltips[did] = [{"name": f, "format": None} for f in fields_present]

    def layer(lid, ltype, did, label, columns, vis, channels, color="#e6194b", column_mode=None):
        cfg = {"dataId": did, "label": label, "color": hex_to_rgb(color), "highlightColor": [252, 242, 26, 255],
               "columns": columns, "isVisible": True, "visConfig": vis, "hidden": False,
               "textLabel": [{"field": None, "color": [255, 255, 255], "size": 18, "offset": [0, 0],
                              "anchor": "start", "alignment": "center", "outlineWidth": 0,
                              "outlineColor": [255, 0, 0, 255], "background": False,
                              "backgroundColor": [0, 0, 200, 255]}]}
        if column_mode:
            cfg["columnMode"] = column_mode
        layers.append({"id": lid, "type": ltype, "config": cfg, "visualChannels": channels})

    no_channels = {"sizeField": None, "sizeScale": "linear", "heightField": None, "heightScale": "linear",
                   "radiusField": None, "radiusScale": "linear"}
    by_class = {"colorField": {"name": "class_name", "type": "string"}, "colorScale": "customOrdinal"}

    shape_vis = {"opacity": 0.3, "strokeOpacity": 0.95, "thickness": 1.5, "strokeColor": [255, 255, 255],
                 "colorRange": class_range, "strokeColorRange": class_range, "radius": 10, "sizeRange": [0, 10],
                 "radiusRange": [0, 50], "heightRange": [0, 500], "elevationScale": 5, "stroked": True,
                 "filled": True, "enable3d": False, "wireframe": False, "fixedHeight": False}
    shape_channels = {**by_class, "strokeColorField": {"name": "class_name", "type": "string"},
                      "strokeColorScale": "customOrdinal", **no_channels}
    if data.points is not None and view.crosses:
        # kepler.gl's point layer does not draw points across the antimeridian (one side vanishes); its
        # GeoJSON layer draws the shifted coordinates in one piece, so the points go through it.
        pts = data.points.assign(lon=np.round(_shift_lon(data.points["lon"].to_numpy(np.float64), view), 7))
        add_dataset("detections", "Detections (points)", "geojson", _geojson_text(pts, view),
                    [f for f in det_fields if f in pts.columns])
        layer("detections", "geojson", "detections", "Detections by class (points)", {"geojson": "_geojson"},
              {**shape_vis, "opacity": 0.9, "stroked": False, "radius": 12}, shape_channels)
        data.notes.append("points are drawn with a GeoJSON layer, which (unlike kepler.gl's point layer) draws "
                          "them on both sides of the antimeridian")
    elif data.points is not None:
        pts = data.points.drop(columns=data.points.geometry.name)
        pts = pts.assign(lon=np.round(pts["lon"].to_numpy(np.float64), 7),
                         lat=np.round(pts["lat"].to_numpy(np.float64), 7))
        add_dataset("detections", "Detections (points)", "rows", _json_records(pts),
                    [f for f in det_fields if f in pts.columns])
        layer("detections", "point", "detections", "Detections by class (points)",
              {"lat": "lat", "lng": "lon", "altitude": None},
              {"radius": 12, "fixedRadius": False, "opacity": 0.9, "outline": True, "thickness": 0.5,
               "strokeColor": [20, 20, 20], "colorRange": class_range, "strokeColorRange": class_range,
               "radiusRange": [0, 50], "filled": True, "billboard": False, "allowHover": True,
               "showNeighborOnHover": False, "showHighlightColor": True},
              {**by_class, "strokeColorField": None, "strokeColorScale": "quantile", "sizeField": None,
               "sizeScale": "linear"}, column_mode="points")
    if data.shapes is not None:
        shp = data.shapes.assign(lon=np.round(_shift_lon(data.shapes["lon"].to_numpy(np.float64), view), 7))
        add_dataset("detection_shapes", "Detections (boxes / polygons)", "geojson", _geojson_text(shp, view),
                    [f for f in det_fields if f in shp.columns])
        layer("detection_shapes", "geojson", "detection_shapes", "Detections by class (boxes / polygons)",
              {"geojson": "_geojson"}, shape_vis, shape_channels)

    heat_source = None
    if heatmap and data.shown:
        if data.sampled and data.h3 is not None:
            heat_source = ("h3_cells", {"name": "count", "type": "integer"})
        elif data.points is not None and data.shapes is None:
            heat_source = ("detections", None)
        elif data.shapes is not None and data.points is None:
            heat_source = ("detection_shapes", None)
        elif data.points is not None:  # both kinds: a dataset of every detection's point, for the heatmap only
            import pandas as pd

            both = pd.concat([data.points[["class_name", "lon", "lat"]], data.shapes[["class_name", "lon", "lat"]]],
                             ignore_index=True)
            both["lon"] = np.round(_shift_lon(both["lon"].to_numpy(np.float64), view), 7)
            add_dataset("detection_centres", "Detection centres", "rows", _json_records(both), ["class_name"])
            heat_source = ("detection_centres", None)
        if heat_source is None and data.h3 is not None:
            heat_source = ("h3_cells", {"name": "count", "type": "integer"})
        if data.sampled and data.h3 is None:
            data.notes.append("the heatmap shows the sample only (no hexbins to count every detection)")

    if data.h3 is not None:
        h3 = data.h3.copy()
        h3["lon"] = np.round(_shift_lon(h3["lon"].to_numpy(np.float64), view), 7)
        add_dataset("h3_cells", f"H3 cells (resolution {data.h3_resolution})", "geojson", _geojson_text(h3, view),
                    ["h3_cell", "count"] + [c for c in h3.columns if str(c).startswith("count_")])

    if heat_source is not None:
        did, weight = heat_source
        layer("heatmap", "heatmap", did, "Heatmap of detections" + (" (weighted H3 counts)" if weight else ""),
              {"lat": "lat", "lng": "lon"},
              {"opacity": 0.65, "colorRange": seq("heatmap", "Global Warming"), "radius": 22},
              {"weightField": weight, "weightScale": "linear"}, color="#ffc300")
    if data.h3 is not None:
        layer("h3", "geojson", "h3_cells", f"H3 cells (res {data.h3_resolution}): detections per cell",
              {"geojson": "_geojson"},
              {"opacity": 0.55, "strokeOpacity": 0.6, "thickness": 0.5, "strokeColor": [255, 255, 255],
               "colorRange": _breaks(h3["count"], SEQUENTIAL["h3"], "H3 counts", zero_bin=False, integer=True),
               "strokeColorRange": seq("h3", "OrRd-6"), "radius": 10,
               "sizeRange": [0, 10], "radiusRange": [0, 50], "heightRange": [0, 500], "elevationScale": 5,
               "stroked": True, "filled": True, "enable3d": False, "wireframe": False, "fixedHeight": False},
              {"colorField": {"name": "count", "type": "integer"}, "colorScale": "custom",
               "strokeColorField": None, "strokeColorScale": "quantile", **no_channels}, color="#fc8d59")
    if data.regions is not None:
        fld = "count" if choropleth == "count" else "density_per_km2"
        ftype = "integer" if choropleth == "count" else "real"
        regs = data.regions
        add_dataset("regions", "Regions", "geojson", _geojson_text(regs, view),
                    [data.by] + ([data.name_col] if data.name_col else [])
                    + ["count", "density_per_km2"] + [c for c in regs.columns if str(c).startswith("count_")])
        layer("regions", "geojson", "regions",
              "Regions: detections per region" if choropleth == "count" else "Regions: detections per km²",
              {"geojson": "_geojson"},
              {"opacity": 0.4, "strokeOpacity": 0.7, "thickness": 0.5, "strokeColor": [200, 200, 200],
               "colorRange": _breaks(regs[fld], SEQUENTIAL["regions"], f"region {choropleth}", zero_bin=True,
                                     integer=choropleth == "count"),
               "strokeColorRange": seq("regions", "YlGnBu-6"),
               "radius": 10, "sizeRange": [0, 10], "radiusRange": [0, 50], "heightRange": [0, 500],
               "elevationScale": 5, "stroked": True, "filled": True, "enable3d": False, "wireframe": False,
               "fixedHeight": False},
              {"colorField": {"name": fld, "type": ftype}, "colorScale": "custom",
               "strokeColorField": None, "strokeColorScale": "quantile", **no_channels}, color="#41b6c4")

    config = {
        "version": "v1",
        "config": {
            "visState": {
                "filters": [],
                "layers": layers,
                "layerOrder": [lay["id"] for lay in layers],
                "interactionConfig": {
                    "tooltip": {"fieldsToShow": tooltips, "compareMode": False, "compareType": "absolute",
                                "enabled": True},
                    "brush": {"size": 0.5, "enabled": False},
                    "geocoder": {"enabled": False},
                    "coordinate": {"enabled": False},
                },
                "layerBlending": "normal",
                "splitMaps": [],
                "animationConfig": {"currentTime": None, "speed": 1},
            },
            "mapState": {"bearing": 0, "dragRotate": False, "latitude": view.latitude, "longitude": view.longitude,
                         "pitch": 0, "zoom": view.zoom, "isSplit": False},
            "mapStyle": {"styleType": "no_map" if basemap == "none" else basemap, "topLayerGroups": {},
                         "visibleLayerGroups": {"label": True, "road": True, "border": False, "building": True,
                                                "water": True, "land": True, "3d building": False},
                         "threeDBuildingColor": [9.665468314072013, 17.18305478057247, 31.1442867897876],
                         "mapStyles": {}},
        },
    }
    meta = {
        "generator": f"geodetect {__version__}",
        "kepler.gl": KEPLER_GL_VERSION,
        "mode": "offline" if offline else "online",
        "source": data.source,
        "detections": data.total,
        "shown": data.shown,
        "sampled": data.sampled,
        "max_features": int(max_features),
        "sample_seed": int(seed),
        "classes": data.classes,
        "class_colors": colors,
        "geometry_column": data.geometry_column,
        "wkt_columns": data.wkt_columns,
        "skipped_empty": data.skipped_empty,
        "h3_resolution": data.h3_resolution,
        "h3_cells": None if data.h3 is None else int(len(data.h3)),
        "regions": None if data.regions is None else {"by": data.by, "name_col": data.name_col,
                                                      "count": int(len(data.regions)), "choropleth": choropleth},
        "bounds": [round(float(v), 6) for v in view.bounds],
        "antimeridian": view.crosses,
        "basemap": basemap,
        "notes": data.notes,
    }
    return {"meta": meta, "datasets": datasets, "config": config, "_raw": raw}


# --------------------------------------------------------------------------- HTML


_BOOTSTRAP = r"""
(function () {
'use strict';
(window.__geodetectAssets || Promise.resolve()).then(start, function (err) {
  console.warn('geodetect: ' + err.message);
  start();
});

function start() {
  var spec = JSON.parse(document.getElementById('geodetect-map').textContent);
  window.__geodetectSpec = spec;
  var missing = ['React', 'ReactDOM', 'Redux', 'ReactRedux', 'styled', 'KeplerGl'].filter(function (g) { return !window[g]; });
  if (missing.length) {
    var box = document.getElementById('geodetect-fallback');
    box.style.display = 'block';
    box.textContent = 'kepler.gl could not be loaded (' + missing.join(', ') + ' missing). ' + (
      spec.meta.mode === 'offline' ? 'This offline map carries kepler.gl ' + spec.meta['kepler.gl'] +
      ' inside; open it in a recent Chrome, Edge, Firefox or Safari.' : 'This map loads kepler.gl ' +
      spec.meta['kepler.gl'] + ' from unpkg.com: open it with internet access, or export it again with --offline.') +
      ' The data is inside this file (script#geodetect-map).';
    window.__geodetectFailed = missing;
    return;
  }
  var K = window.KeplerGl;

  // Without network the basemap style cannot be fetched: say so once, as a warning, instead of an
  // uncaught promise rejection (the map and its layers work without a basemap).
  window.addEventListener('unhandledrejection', function (ev) {
    var r = ev.reason;
    if (r && r.name === 'TypeError' && /fetch|network/i.test(String(r.message))) {
      ev.preventDefault();
      if (!window.__geodetectOffline) {
        window.__geodetectOffline = true;
        console.warn('geodetect: the basemap could not be loaded (no network?); the layers are drawn without it');
      }
    }
  });
  // kepler.gl fetches an icon catalogue for its icon layer from a third-party CDN at start-up; these maps
  // have no icon layer, so answer it here with an empty catalogue instead of calling out.
  var realFetch = window.fetch;
  window.fetch = function (input, init) {
    var url = typeof input === 'string' ? input : (input && input.url) || '';
    if (/\/icons\/svg-icons\.json$/.test(url)) {
      return Promise.resolve(new Response('{"svgIcons":[]}', {status: 200, headers: {'Content-Type': 'application/json'}}));
    }
    return realFetch.apply(this, arguments);
  };

  var reducers = Redux.combineReducers({
    keplerGl: K.keplerGlReducer.initialState({uiState: {readOnly: false, currentModal: null}})
  });
  var store = Redux.createStore(reducers, {}, Redux.applyMiddleware.apply(null, K.enhanceReduxMiddleware([])));
  window.__keplerStore = store;

  function App() {
    var s = React.useState({width: window.innerWidth, height: window.innerHeight});
    React.useEffect(function () {
      function onResize() { s[1]({width: window.innerWidth, height: window.innerHeight}); }
      window.addEventListener('resize', onResize);
      return function () { window.removeEventListener('resize', onResize); };
    }, []);
    return React.createElement(K.KeplerGl, {
      id: 'map', width: s[0].width, height: s[0].height, appName: 'geodetect', mapboxApiAccessToken: ''
    });
  }

  function toRows(d) {
    return d.rows.map(function (r) {
      var o = {};
      for (var i = 0; i < d.fields.length; i++) { o[d.fields[i]] = r[i]; }
      return o;
    });
  }

  // kepler.gl draws its heatmap with the basemap's renderer, which may finish loading its style after
  // the data arrived; re-rendering the map (same view) a few times lets the heatmap catch up.
  function resync() {
    var m = store.getState().keplerGl.map;
    if (m) {
      store.dispatch(K.updateMap({latitude: m.mapState.latitude, longitude: m.mapState.longitude,
                                  zoom: m.mapState.zoom}));
    }
  }

  var loaded = false;
  function load() {
    if (loaded || !store.getState().keplerGl.map) { return; }
    loaded = true;
    unsubscribe();
    var datasets = spec.datasets.map(function (d) {
      var processed = d.format === 'geojson' ? K.processGeojson(d.data) : K.processRowObject(toRows(d.data));
      return {info: {id: d.id, label: d.label}, data: processed};
    });
    store.dispatch(K.addDataToMap({
      datasets: datasets, config: spec.config, options: {centerMap: false, readOnly: false, keepExistingConfig: false}
    }));
    [300, 1000, 2500, 5000].forEach(function (ms) { window.setTimeout(resync, ms); });
    window.__geodetectReady = true;
  }
  var unsubscribe = store.subscribe(load);
  ReactDOM.createRoot(document.getElementById('app')).render(
    React.createElement(ReactRedux.Provider, {store: store}, React.createElement(App)));
  load();
}
})();
"""

# The kepler.gl UMD bundle takes 'react/jsx-runtime' from a global of that name; React 18's UMD build has none.
# Lazy (React is looked up at call time), so it may run before React is loaded.
_JSX_SHIM = r"""
(function () {
  if (window['react/jsx-runtime']) { return; }
  var has = Object.prototype.hasOwnProperty;
  function jsx(type, props, key) {
    var p = {};
    for (var k in props) { if (has.call(props, k)) { p[k] = props[k]; } }
    if (key !== undefined) { p.key = '' + key; }
    return window.React.createElement(type, p);
  }
  window['react/jsx-runtime'] = {jsx: jsx, jsxs: jsx, get Fragment() { return window.React.Fragment; }};
})();
"""

_CSS = """
html, body { margin: 0; padding: 0; height: 100%; overflow: hidden; background: #242730;
  font-family: ff-clan-web-pro, 'Helvetica Neue', Helvetica, sans-serif; }
#app { position: absolute; top: 0; left: 0; right: 0; bottom: 0; }
#geodetect-note { position: absolute; right: 12px; bottom: 28px; z-index: 10; max-width: 420px; padding: 6px 10px;
  background: rgba(36, 39, 48, 0.9); color: #ffc300; font-size: 12px; border-radius: 3px; pointer-events: none; }
#geodetect-fallback { display: none; position: absolute; top: 40%; left: 10%; right: 10%; padding: 16px;
  background: #29323c; color: #f0f0f0; font-size: 15px; border-radius: 4px; }
"""


def _safe_inline(text: str, tag: str) -> bool:
    """Can ``text`` sit verbatim inside <tag>...</tag>? (Nothing that closes it or opens a nested script.)"""
    low = text.lower()
    return f"</{tag}" not in low and "<script" not in low


_GZ_TYPE = "application/x-geodetect-gzip-base64"

# Offline maps carry their JS gzipped (kepler.gl: 15 MB -> 5.2 MB of base64); kepler.gl and react-dom
# also hold HTML snippets ("<!--", "<script") that must not sit verbatim inside a <script> element.
# This loader inflates each block with the browser's DecompressionStream and runs it as a classic
# script, in document order; the bootstrap waits for it.
_GZ_LOADER = r"""
window.__geodetectAssets = (function () {
  var blocks = Array.prototype.slice.call(document.querySelectorAll('script[type="%s"]'));
  if (!blocks.length) { return Promise.resolve(); }
  if (typeof DecompressionStream === 'undefined') {
    return Promise.reject(new Error('this browser cannot inflate the inlined kepler.gl (no DecompressionStream)'));
  }
  return blocks.reduce(function (done, el) {
    return done.then(function () {
      var bin = atob(el.textContent.replace(/\s+/g, ''));
      var bytes = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) { bytes[i] = bin.charCodeAt(i); }
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
      return new Response(stream).text();
    }).then(function (code) {
      var s = document.createElement('script');
      s.setAttribute('data-asset', el.getAttribute('data-asset'));
      s.text = code;
      document.head.appendChild(s);
      el.textContent = '';
    });
  }, Promise.resolve());
})();
""" % _GZ_TYPE


def _asset_tags(asset_bytes) -> tuple[list[str], list[str]]:
    """<link>/<style> tags for CSS and <script> tags for JS, in load order.

    Online: pinned unpkg URLs with SRI. Offline: CSS inline verbatim (a data: URL if something in it could
    end the element early); JS gzipped + base64, run in order by ``_GZ_LOADER``.
    """
    import base64
    import gzip

    from geodetect.viz.assets import ASSETS

    css, js = [], []
    for a in ASSETS:
        name = f"{a.package}@{a.version}/{a.path}"
        if asset_bytes is None:
            if a.kind == "css":
                css.append(f'<link rel="stylesheet" href="{a.url}" integrity="{a.integrity}" crossorigin="anonymous">')
            else:
                js.append(f'<script src="{a.url}" integrity="{a.integrity}" crossorigin="anonymous"></script>')
            continue
        data = asset_bytes[a]
        if a.kind == "js":  # all of them, so that the loader runs them in order
            b64 = base64.b64encode(gzip.compress(data, compresslevel=6, mtime=0)).decode("ascii")
            lines = "\n".join(b64[i:i + 4096] for i in range(0, len(b64), 4096))
            js.append(f'<script type="{_GZ_TYPE}" data-asset="{name}">\n{lines}\n</script>')
        elif _safe_inline(data.decode("utf-8"), "style"):
            css.append(f"<!-- {name} -->\n<style>\n{data.decode('utf-8')}\n</style>")
        else:  # CSS that cannot be inlined verbatim: a data: URL keeps the bytes intact
            b64 = base64.b64encode(data).decode("ascii")
            css.append(f'<!-- {name} -->\n<link rel="stylesheet" href="data:text/css;base64,{b64}">')
    if js and asset_bytes is not None:
        js.append(f"<script>{_GZ_LOADER}</script>")
    return css, js


def _render_html(spec: dict, *, title: str, note: str, asset_bytes) -> str:
    raw = spec.pop("_raw")
    text = json.dumps(spec, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for key, value in raw.items():
        text = text.replace(f'"{key}"', value, 1)
    text = text.replace("<", "\\u003c")  # nothing inside may close the <script> element
    css, js = _asset_tags(asset_bytes)
    js.insert(0, f"<script>{_JSX_SHIM}</script>")
    meta = spec["meta"]
    note_html = f'<div id="geodetect-note">{_html.escape(note)}</div>' if note else ""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_html.escape(title)}</title>",
        f'<meta name="generator" content="{_html.escape(meta["generator"])}; kepler.gl {meta["kepler.gl"]}">',
        f"<style>{_CSS}</style>",
        *css,
        *js,
        "</head>",
        "<body>",
        '<div id="app"></div>',
        note_html,
        '<div id="geodetect-fallback"></div>',
        f'<script type="application/json" id="geodetect-map">{text}</script>',
        f"<script>{_BOOTSTRAP}</script>",
        "</body>",
        "</html>",
        "",
    ])


def _write_text(path: Path, text: str) -> None:
    from geodetect._atomic import atomic_output

    with atomic_output(path, what="the map") as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)