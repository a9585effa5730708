"""Spatial analytics over detections: per-region counts, H3 heatmaps, change between runs, SQL.

>>> import geodetect.analytics as ga
>>> sorted(ga.__all__)
['ChangeReport', 'aggregate', 'change', 'heatmap', 'sql', 'write_table']

The heavy lifting (the spatial join) runs in an engine (:mod:`geodetect.engines`):
SedonaDB, embedded, by default; GeoPandas as the dependency-free reference.
Both run the same prepared tables through the same steps
(:data:`geodetect.engines.AGGREGATE_SQL`) and give identical numbers.

Conventions shared by every function here:

* Detections need a CRS (ConfigError otherwise). Regions in another CRS are
  reprojected to the detections' CRS explicitly (:func:`geodetect.regions.load_regions`);
  nothing is ever compared across CRSs.
* A detection is represented by one point: itself for points, its
  ``shapely.point_on_surface`` for boxes, masks and footprints (computed once,
  in Python, so engines cannot differ on it).
* Border rule: a detection counts in exactly one region, the one with the
  smallest region id (``by`` value) among the regions its point intersects
  (interior or boundary). Detections in no region are not counted
  (``result.attrs["geodetect"]["unassigned"]`` says how many).
* Areas and densities are computed in an equal-area projection (EPSG:6933, as
  :func:`geodetect.georef.area_m2`). Detection areas come from the ``area_m2``
  column (computed the same way when the column is missing), rounded to
  0.001 m^2 before summing, so sums are exact and engine-independent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from geodetect.errors import ConfigError, MissingDependencyError

__all__ = ["aggregate", "heatmap", "change", "sql", "ChangeReport", "write_table"]

_AREA_QUANTUM = 1000.0  # 1 / 0.001 m^2


# --------------------------------------------------------------------------- inputs


def _load_detections(dets, what: str = "detections"):
    import geopandas as gpd

    if isinstance(dets, (str, os.PathLike)):
        from geodetect.frames import read

        dets = read(dets)
    if not isinstance(dets, gpd.GeoDataFrame):
        raise ConfigError(f"{what} must be a GeoDataFrame or a path to a vector file, not {type(dets).__name__}")
    if dets.crs is None:
        raise ConfigError(
            f"{what} have no CRS; set one (dets.set_crs('EPSG:4326') for lon/lat) so they can be matched with regions"
        )
    if "class_name" not in dets.columns:
        raise ConfigError(f"{what} have no 'class_name' column; columns are: {', '.join(map(str, dets.columns))}")
    return dets


def _prepare_detections(dets):
    """The engines' ``detections`` table: ``_det_id``, ``class_name``, ``_area_q``, ``geometry`` (point)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    from geodetect.georef import area_m2

    from geodetect.frames import unplaceable

    geoms = np.asarray(dets.geometry.values, dtype=object)
    ok = ~unplaceable(geoms)  # missing, empty or non-finite: left out and counted (``skipped_empty``)
    geoms = geoms[ok]
    if "area_m2" in dets.columns:
        area = pd.to_numeric(dets["area_m2"], errors="coerce").to_numpy(np.float64)[ok]
        area = np.where(np.isfinite(area), area, 0.0)
    else:
        area = area_m2(geoms, dets.crs)
    is_point = shapely.get_type_id(geoms) == 0
    pts = geoms.copy()
    if (~is_point).any():
        pts[~is_point] = shapely.point_on_surface(geoms[~is_point])
    table = gpd.GeoDataFrame(
        {
            "_det_id": np.nonzero(ok)[0].astype(np.int64),
            "class_name": dets["class_name"].astype(str).to_numpy(object)[ok],
            "_area_q": np.floor(area * _AREA_QUANTUM + 0.5).astype(np.int64),
        },
        geometry=gpd.GeoSeries(pts, crs=dets.crs),
        crs=dets.crs,
    )
    return table, int((~ok).sum())


def _arrow_point_detections(path):
    """The engines' ``detections`` table straight from a GeoParquet file of 2-D points, as Arrow.

    The fast path of :func:`aggregate` on SedonaDB: no GEOS objects are made;
    the WKB column is handed to the engine as it is (Arrow buffers, no copy)
    and only ``_det_id`` and ``_area_q`` are computed, with numpy. Returns
    ``(table, crs, n_rows, n_skipped)``, or None when the file is not GeoParquet
    with a WKB point column (the caller then takes the general path).
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyproj import CRS

    try:
        pf = pq.ParquetFile(os.fspath(path))
        geo = json.loads((pf.schema_arrow.metadata or {}).get(b"geo", b"null"))
    except Exception:  # noqa: BLE001  (the general path reports unreadable files)
        return None
    if not geo:
        return None
    gcol = geo.get("primary_column", "geometry")
    meta = geo.get("columns", {}).get(gcol, {})
    if meta.get("encoding", "").upper() != "WKB" or meta.get("geometry_types") != ["Point"]:
        return None
    names = pf.schema_arrow.names
    if "class_name" not in names:
        return None
    cols = ["class_name", gcol] + (["area_m2"] if "area_m2" in names else [])
    t = pf.read(columns=cols)
    wkb = t.column(gcol).combine_chunks()
    if isinstance(wkb.type, pa.ExtensionType):
        wkb = wkb.storage
    if wkb.type not in (pa.binary(), pa.large_binary()):
        return None
    n = len(wkb)
    valid = wkb.is_valid().to_numpy(zero_copy_only=False)
    wide = wkb.type == pa.large_binary()
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int64 if wide else np.int32, count=n + 1,
                            offset=wkb.offset * (8 if wide else 4)).astype(np.int64)
    n_valid = int(valid.sum())
    if n and not ((np.diff(offsets)[valid] == 21).all() and offsets[-1] - offsets[0] == 21 * n_valid):
        return None  # Z/M points, multipoints, or an unusual layout: general path
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8) if n else np.zeros(0, np.uint8)
    rec = data[offsets[0] : offsets[-1]].reshape(n_valid, 21) if n else np.zeros((0, 21), np.uint8)
    if not (rec[:, :5] == np.array([1, 1, 0, 0, 0], np.uint8)).all():
        return None  # big-endian or not a 2-D point: general path
    x = np.ascontiguousarray(rec[:, 5:13]).view("<f8").ravel()
    y = np.ascontiguousarray(rec[:, 13:21]).view("<f8").ravel()
    empty = np.zeros(n, bool)
    empty[valid] = ~(np.isfinite(x) & np.isfinite(y))  # POINT EMPTY is NaN NaN; NaN/inf rows are unplaceable too
    ok = valid & ~empty
    if "area_m2" in names:
        area = t.column("area_m2").to_numpy().astype(np.float64, copy=False)
        area = np.where(np.isfinite(area), area, 0.0)
    else:
        area = np.zeros(n)
    crs_json = meta.get("crs", "OGC:CRS84")  # GeoParquet: a missing crs means OGC:CRS84
    if crs_json is None:
        return None  # explicitly no CRS: the general path says what to do
    crs = CRS.from_json_dict(crs_json) if isinstance(crs_json, dict) else CRS.from_user_input(crs_json)
    field = pa.field("geometry", pa.binary(), metadata={
        b"ARROW:extension:name": b"geoarrow.wkb",
        b"ARROW:extension:metadata": json.dumps({"crs": crs.to_json_dict()}).encode(),
    })
    keep = pa.array(ok)
    table = pa.table({
        "_det_id": pa.array(np.arange(n, dtype=np.int64)),
        "class_name": t.column("class_name").cast(pa.string()),
        "_area_q": pa.array(np.floor(area * _AREA_QUANTUM + 0.5).astype(np.int64)),
    }).append_column(field, wkb.cast(pa.binary()))
    if not ok.all():
        table = table.filter(keep)
    return table, crs, n, int(n - ok.sum())


@dataclass
class _Regions:
    frame: object  # load_regions() result, with _region_order
    table: object  # engines' regions table
    by: str
    name_col: str | None


def _prepare_regions(regions, by, name_col, crs) -> _Regions:
    import geopandas as gpd
    import pandas as pd

    from geodetect.georef import area_m2
    from geodetect.regions import load_regions

    if by is None:
        raise ConfigError("say which region column identifies a region: by='fips' (CLI: --by fips)")
    reg = load_regions(regions, by, name_col, crs=crs)
    name_col = reg.attrs["geodetect_regions"]["name_col"]
    ids = reg[by]
    try:
        order = ids.sort_values(kind="mergesort").index
    except TypeError:  # mixed id types: order by their text
        order = ids.astype(str).sort_values(kind="mergesort").index
    rank = np.empty(len(reg), np.int64)
    rank[order.to_numpy()] = np.arange(len(reg), dtype=np.int64)
    reg = reg.assign(_region_order=rank)
    geoms = np.asarray(reg.geometry.values, dtype=object)
    table = gpd.GeoDataFrame(
        pd.DataFrame({"_region_order": rank, "region_area_km2": area_m2(geoms, reg.crs) / 1e6}),
        geometry=gpd.GeoSeries(geoms, crs=reg.crs),
        crs=reg.crs,
    )
    return _Regions(reg, table, by, name_col)


def _classes_table(classes):
    import pandas as pd

    names = sorted({str(c) for c in classes})
    return pd.DataFrame({"class_name": pd.Series(names, dtype=object)})


def _transitions_table(t, reg):
    """Change transitions per region (``_region_order, class_before, class_after, count, area_q`` with
    ``area_q`` in :data:`_AREA_QUANTUM` units) as the report's typed table with the region columns."""
    import pandas as pd

    t = pd.DataFrame({
        "_region_order": t["_region_order"].to_numpy(np.int64),
        "class_before": t["class_before"].to_numpy(object),
        "class_after": t["class_after"].to_numpy(object),
        "count": t["count"].to_numpy(np.int64),
        "area_m2": t["area_q"].to_numpy(np.int64).astype(np.float64) / _AREA_QUANTUM,
        "changed": (t["class_before"] != t["class_after"]).to_numpy(bool),
    })
    return _with_region_columns(t, reg, lead=("class_before", "class_after"))


def _with_region_columns(df, reg: _Regions, lead=()):
    """Replace ``_region_order`` by the region id (and name) columns, in region order."""
    import pandas as pd

    keys = reg.frame[[reg.by] + ([reg.name_col] if reg.name_col else []) + ["_region_order"]]
    out = pd.DataFrame(df).merge(pd.DataFrame(keys), on="_region_order", how="left")
    out = out.sort_values(["_region_order", *lead], kind="mergesort").drop(columns="_region_order").reset_index(drop=True)
    front = [reg.by] + ([reg.name_col] if reg.name_col else [])
    return out[front + [c for c in out.columns if c not in front]]


# --------------------------------------------------------------------------- aggregate


def aggregate(
    dets, regions, by: str, *, name_col: str | None = None, engine: str = "sedonadb", classes=None
):
    """Counts, areas and densities of detections per region and class.

    Parameters
    ----------
    dets:
        detections (GeoDataFrame with a CRS, or a path).
    regions:
        a GeoDataFrame or a path to any vector file (see :func:`geodetect.regions.load_regions`).
    by:
        the region id column (unique).
    name_col:
        region name column to carry; default ``"name"`` when there is one.
    engine:
        ``"sedonadb"`` (default, embedded Apache Sedona) or ``"geopandas"``; same numbers.
    classes:
        the classes to report; default: every class in ``dets``.

    Returns a pandas DataFrame with one row per region x class, **regions with
    zero detections included with count 0** (every region of the layer, except
    those with an empty geometry, which are dropped with a warning), sorted by
    region id then class:

    ``<by>``, ``<name_col>`` (if any), ``class_name``, ``count`` (int64),
    ``area_m2`` (sum of detection areas; 0 for points), ``density_per_km2``
    (count / region area), ``region_area_km2`` (EPSG:6933).

    Each detection is counted once, by the border rule of :mod:`geodetect.engines`
    (smallest region id among the regions its point intersects).
    ``result.attrs["geodetect"]`` has ``engine``, ``detections``, ``unassigned``
    (in no region) and ``skipped_empty`` (null/empty geometries).
    """
    from geodetect.engines import get_engine

    eng = get_engine(engine)
    fast = None
    if eng.name == "sedonadb" and isinstance(dets, (str, os.PathLike)) and \
            os.fspath(dets).lower().endswith((".parquet", ".geoparquet")) and os.path.isfile(os.fspath(dets)):
        fast = _arrow_point_detections(dets)
    if fast is not None:
        det_table, crs, n_dets, skipped = fast
        uniq = det_table.column("class_name").unique().to_pylist()
        n_table = det_table.num_rows
    else:
        dets = _load_detections(dets)
        det_table, skipped = _prepare_detections(dets)
        crs, n_dets, n_table = dets.crs, len(dets), len(det_table)
        uniq = det_table["class_name"].unique()
    reg = _prepare_regions(regions, by, name_col, crs)
    cls = _classes_table(uniq if classes is None else classes)
    res = eng.aggregate(det_table, reg.table, cls)
    res = _normalise_counts(res)
    out = _with_region_columns(res, reg, lead=("class_name",))
    counted = int(out["count"].sum())
    out.attrs["geodetect"] = {
        "engine": eng.name,
        "detections": int(n_dets),
        "unassigned": int(n_table - counted) if classes is None else None,
        "skipped_empty": skipped,
    }
    return out


def _normalise_counts(res):
    import pandas as pd

    res = pd.DataFrame(res)
    return pd.DataFrame({
        "_region_order": res["_region_order"].to_numpy(np.int64),
        "class_name": res["class_name"].astype(object).to_numpy(object),
        "count": res["count"].to_numpy(np.int64),
        "area_m2": res["area_m2"].to_numpy(np.float64),
        "density_per_km2": pd.to_numeric(res["density_per_km2"]).to_numpy(np.float64),
        "region_area_km2": res["region_area_km2"].to_numpy(np.float64),
    })


# --------------------------------------------------------------------------- heatmap


def heatmap(dets, resolution: int = 7):
    """Counts of detections per H3 cell and class (long format), as a GeoDataFrame in EPSG:4326.

    Columns: ``h3_cell`` (H3 index string), ``class_name``, ``count`` (int64),
    ``geometry`` (the cell's hexagon or pentagon, lon/lat; cells crossing the
    antimeridian are split into a MultiPolygon). Only cells with detections
    appear; rows are sorted by cell then class, so the counts add up to the
    number of detections with a geometry (those without one, or with NaN/infinite coordinates, are
    left out and counted in ``attrs["geodetect"]["skipped_empty"]``). A polygon detection counts in the cell
    of its representative point (``point_on_surface``). Detections in a
    projected CRS are reprojected to lon/lat first. Needs ``pip install h3``.
    """
    import geopandas as gpd
    import pandas as pd
    import shapely

    from geodetect.georef import transformer
    from geodetect.regions import split_antimeridian

    h3 = _import_h3()
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or not 0 <= int(resolution) <= 15:
        raise ConfigError(f"H3 resolution must be an integer from 0 to 15, not {resolution!r}")
    res = int(resolution)
    dets = _load_detections(dets)
    table, skipped = _prepare_detections(dets)
    xs = shapely.get_x(table.geometry.values).astype(np.float64)
    ys = shapely.get_y(table.geometry.values).astype(np.float64)
    from pyproj import CRS

    if not CRS.from_user_input(dets.crs).equals(CRS.from_user_input("EPSG:4326"), ignore_axis_order=True):
        xs, ys = transformer(dets.crs, "EPSG:4326").transform(xs, ys)
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    good = np.isfinite(xs) & np.isfinite(ys)
    if not good.all():
        raise ConfigError(f"{int((~good).sum())} detection(s) cannot be placed in lon/lat (outside the CRS's area of use?)")
    if len(xs) == 0:
        out = gpd.GeoDataFrame({"h3_cell": pd.Series([], dtype=object), "class_name": pd.Series([], dtype=object),
                                "count": pd.Series([], dtype=np.int64)}, geometry=gpd.GeoSeries([], crs="EPSG:4326"))
        out.attrs["geodetect"] = {"resolution": res, "detections": 0, "skipped_empty": skipped}
        return out
    cells = [h3.latlng_to_cell(y, x, res) for x, y in zip(xs.tolist(), ys.tolist())]
    codes, uniq = pd.factorize(np.asarray(cells, dtype=object), sort=True)
    cls_codes, cls_names = pd.factorize(table["class_name"].to_numpy(object), sort=True)
    pair = codes.astype(np.int64) * len(cls_names) + cls_codes
    keys, counts = np.unique(pair, return_counts=True)  # sorted by cell, then class
    cell_of, class_of = keys // len(cls_names), keys % len(cls_names)
    polys = split_antimeridian(_cell_polygons(h3, list(uniq)))
    out = gpd.GeoDataFrame(
        {
            "h3_cell": np.asarray(uniq, dtype=object)[cell_of],
            "class_name": np.asarray(cls_names, dtype=object)[class_of],
            "count": counts.astype(np.int64),
        },
        geometry=gpd.GeoSeries(polys[cell_of], crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    out.attrs["geodetect"] = {"resolution": res, "detections": int(len(table)), "skipped_empty": skipped}
    return out


def _cell_polygons(h3, cells) -> np.ndarray:
    """H3 cells -> shapely polygons (lon/lat), built in one vectorised call."""
    import itertools

    import shapely

    bounds = [h3.cell_to_boundary(c) for c in cells]  # ((lat, lng), ...) per cell, 5 to 10 vertices
    if not bounds:
        return np.array([], dtype=object)
    lens = np.fromiter((len(b) for b in bounds), np.int64, len(bounds))
    flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(bounds)), np.float64, 2 * int(lens.sum()))
    latlng = flat.reshape(-1, 2)
    rings = shapely.linearrings(latlng[:, ::-1], indices=np.repeat(np.arange(len(bounds)), lens))
    return np.asarray(shapely.polygons(rings), dtype=object)


def _import_h3():
    try:
        import h3
    except ImportError:
        raise MissingDependencyError("heatmap() needs the h3 package: pip install h3") from None
    if not hasattr(h3, "latlng_to_cell"):
        raise MissingDependencyError(f"heatmap() needs h3 version 4 or later (found {getattr(h3, '__version__', '?')}): pip install -U h3")
    return h3


# --------------------------------------------------------------------------- change


@dataclass
class ChangeReport:
    """What changed between two runs over the same regions (see :func:`change`)."""

    deltas: object
    """Per region x class: ``count_before``, ``count_after``, ``count_delta``, ``area_m2_before``,
    ``area_m2_after``, ``area_m2_delta``; every region and class, zeros included."""
    transitions: object
    """Per region x (``class_before``, ``class_after``): ``count``, ``area_m2``, ``changed``, for detections
    matched by identical geometry (classification footprints on one grid); only non-zero rows."""
    matched: int = 0
    unmatched_before: int = 0
    unmatched_after: int = 0
    attrs: dict = field(default_factory=dict)


def change(
    before,
    after,
    regions,
    by: str,
    *,
    name_col: str | None = None,
    engine: str = "sedonadb",
    grid_size: float | None = None,
) -> ChangeReport:
    """Compare two runs per region: class transitions of matched footprints, and count deltas per class.

    * ``transitions``: detections of the two runs are matched by **identical
      geometry** (after ``shapely.normalize``; with ``grid_size`` coordinates are
      first snapped to that grid, in CRS units). That is how CLASSIFICATION
      footprints from two runs over the same grid line up. For each region (the
      border rule applied to the footprint's representative point) and each
      (``class_before``, ``class_after``) pair: ``count`` and ``area_m2`` (after
      run's areas), and ``changed`` (the classes differ). Unchanged pairs are kept:
      together they are the per-region confusion matrix. Footprints present in
      one run only are counted in ``unmatched_before`` / ``unmatched_after``. If a
      geometry repeats within a run, its k-th occurrence (by class) pairs with the
      k-th in the other run.
    * ``deltas``: per region and class, counts and area sums of each run and their
      difference (after - before): the answer for points and boxes, whose
      geometries do not match between runs.

    ``before`` is reprojected to ``after``'s CRS when they differ.
    """
    import pandas as pd
    import shapely

    from geodetect.engines import get_engine

    eng = get_engine(engine)
    after = _load_detections(after, "after detections")
    before = _load_detections(before, "before detections")
    from geodetect.regions import _same_crs

    if not _same_crs(before.crs, after.crs):
        before = before.to_crs(after.crs)
    reg = _prepare_regions(regions, by, name_col, after.crs)
    b_table, _ = _prepare_detections(before)
    a_table, _ = _prepare_detections(after)
    cls = _classes_table(set(b_table["class_name"]) | set(a_table["class_name"]))

    # deltas
    cb = _normalise_counts(eng.aggregate(b_table, reg.table, cls))
    ca = _normalise_counts(eng.aggregate(a_table, reg.table, cls))
    keys = ["_region_order", "class_name"]
    d = cb[keys + ["count", "area_m2"]].merge(ca[keys + ["count", "area_m2"]], on=keys, suffixes=("_before", "_after"))
    d["count_delta"] = d["count_after"] - d["count_before"]
    d["area_m2_delta"] = d["area_m2_after"] - d["area_m2_before"]
    d = d[keys + ["count_before", "count_after", "count_delta", "area_m2_before", "area_m2_after", "area_m2_delta"]]
    deltas = _with_region_columns(d, reg, lead=("class_name",))

    # transitions: match by identical geometry
    def keyed(dets):
        g = np.asarray(dets.geometry.values, dtype=object)
        ok = ~(shapely.is_missing(g) | shapely.is_empty(g))
        g = g[ok]
        if grid_size:
            g = shapely.set_precision(g, grid_size)
        k = pd.DataFrame({
            "_key": shapely.to_wkb(shapely.normalize(g)),
            "_det_id": np.nonzero(ok)[0].astype(np.int64),
            "class_name": dets["class_name"].astype(str).to_numpy(object)[ok],
        })
        k = k.sort_values(["_key", "class_name", "_det_id"], kind="mergesort")
        k["_nth"] = k.groupby("_key", sort=False).cumcount()
        return k

    kb, ka = keyed(before), keyed(after)
    m = kb.merge(ka, on=["_key", "_nth"], suffixes=("_before", "_after"))
    matched_after = a_table[a_table["_det_id"].isin(m["_det_id_after"])]
    assigned = eng.assign(matched_after, reg.table)
    assigned = pd.DataFrame(assigned)[["_det_id", "_region_order", "_area_q"]]
    t = m.rename(columns={"class_name_before": "class_before", "class_name_after": "class_after"}).merge(
        assigned.rename(columns={"_det_id": "_det_id_after"}), on="_det_id_after"
    )
    t = (
        t.groupby(["_region_order", "class_before", "class_after"], sort=True)
        .agg(count=("_key", "size"), area_q=("_area_q", "sum"))
        .reset_index()
    )
    transitions = _transitions_table(t, reg)
    return ChangeReport(
        deltas=deltas,
        transitions=transitions,
        matched=int(len(m)),
        unmatched_before=int(len(kb) - len(m)),
        unmatched_after=int(len(ka) - len(m)),
        attrs={"engine": eng.name},
    )


# --------------------------------------------------------------------------- sql


def sql(query: str, /, *, allow_files: bool = False, **tables):
    """Run Sedona SQL in SedonaDB over named tables; a GeoDataFrame if the result has geometry.

    Example::

        gd.sql("SELECT r.fips, COUNT(*) AS n FROM detections d "
               "JOIN regions r ON ST_Contains(r.geometry, d.geometry) GROUP BY r.fips",
               detections=dets, regions="counties.geojson")

    Each keyword is a table name (a plain SQL identifier) and its value a
    GeoDataFrame, a pandas DataFrame, an Arrow table or a path: GeoParquet is
    read by SedonaDB in place, other vector files through GeoPandas (geometry
    column ``geometry``). Tables are taken as they are: no reprojection, and
    SedonaDB refuses to compare geometries in different CRSs (the error says to
    use ``ST_Transform``), so nothing is mismatched silently. Result geometry
    columns get back the CRS object of the input they are equivalent to. Errors
    in the query raise ConfigError with SedonaDB's message. Needs ``pip install sedonadb``.

    Read-only by default: one ``SELECT`` / ``WITH`` / ``VALUES`` query over the tables given
    here. Anything else (``COPY ... TO`` a file, ``CREATE EXTERNAL TABLE``, ``SET``, a file path
    as a table such as ``FROM '/data/x.parquet'``, ``information_schema``) is refused with a
    ConfigError. ``allow_files=True`` (CLI: ``--allow-files``) hands the text to SedonaDB as it
    is, with DataFusion's file reading and writing: only for queries you trust. (A table
    therefore cannot be named ``allow_files``.)
    """
    from geodetect.engines import get_engine

    if not isinstance(query, str) or not query.strip():
        raise ConfigError("sql() needs a query string")
    if not tables:
        raise ConfigError("sql() needs at least one table: sql(query, detections=dets, regions='counties.geojson')")
    return get_engine("sedonadb").sql(query, tables, allow_files=bool(allow_files))


# --------------------------------------------------------------------------- output


def write_table(df, path) -> str:
    """Write an analytics result: ``.csv`` or ``.parquet`` for tables; any detections format for GeoDataFrames."""
    import geopandas as gpd

    from geodetect.frames import FORMATS, write

    p = os.fspath(path)
    ext = os.path.splitext(p)[1].lower()
    if isinstance(df, gpd.GeoDataFrame):
        write(df, p)
        return p
    if ext not in (".csv", ".parquet"):
        hint = " (this result has no geometry)" if ext in FORMATS else ""
        raise ConfigError(f"{p}: unknown table format {ext!r}{hint}; use .csv or .parquet")
    from geodetect._atomic import atomic_output

    with atomic_output(p, what="the table") as tmp:
        if ext == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return p
