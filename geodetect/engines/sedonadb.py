"""SedonaDB: Apache Sedona's embedded single-node engine (``pip install sedonadb``).

Tables are registered as views in a fresh SedonaDB context per call:
GeoDataFrames and pandas DataFrames through Arrow (one WKB conversion,
no file), GeoParquet paths read in place by SedonaDB itself (no copy through
Python), other vector files through GeoPandas. Results come back as Arrow and
become a GeoDataFrame when they hold geometry, else a pandas DataFrame.

Telemetry: the ``apache-sedona`` meta-package sends a usage ping on
``import sedona.db`` unless ``DO_NOT_TRACK`` / ``SCARF_NO_ANALYTICS`` is set.
geodetect imports ``sedonadb`` directly and sets both variables (without
overriding a value the user chose) before the import, so nothing phones home.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from geodetect.errors import ConfigError, MissingDependencyError, VectorReadError

__all__ = ["SedonaDBEngine", "import_sedonadb", "connect", "register", "collect"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PARQUET = (".parquet", ".geoparquet")


def import_sedonadb():
    """Import ``sedonadb`` with telemetry off; MissingDependencyError when it is not installed."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("SCARF_NO_ANALYTICS", "true")
    try:
        import sedonadb
    except ImportError as exc:
        raise MissingDependencyError(
            "the SedonaDB engine needs the sedonadb package: pip install sedonadb "
            f"(or use engine='geopandas'); import failed: {exc}"
        ) from None
    return sedonadb


#: Predicates of the spatial join. SedonaDB 0.5's default library ("tg") is fast but not exact for
#: a point lying on a polygon edge: such a point can be found in only one of the two polygons sharing
#: the edge, and not always the one GEOS finds. "geo" (the Rust geo crate, exact orientation
#: predicates) decides these cases exactly, like GEOS in shapely/GeoPandas and JTS in Sedona on
#: Spark, so every engine applies the border rule to the same candidate regions. ("geos" would be the
#: obvious choice, but in sedonadb 0.5.0 it returns no rows for ST_Contains/ST_Within/ST_Covers joins.)
SPATIAL_LIBRARY = "geo"


def connect():
    """A new SedonaDB context, its spatial join using :data:`SPATIAL_LIBRARY`."""
    con = import_sedonadb().connect()
    con.sql(f"SET sedona.spatial_join.spatial_library = '{SPATIAL_LIBRARY}'").execute()
    return con


def register(con, name: str, obj) -> list:
    """Register ``obj`` (GeoDataFrame, DataFrame, Arrow table, or a vector file path) as view ``name``.

    Returns the CRSs of the geometry columns registered (from GeoPandas objects
    only), so results can be given back the caller's CRS objects.
    """
    import geopandas as gpd
    import pandas as pd

    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"table name {name!r} is not a plain SQL identifier (letters, digits, _; not starting with a digit)")
    crss = []
    if isinstance(obj, (str, os.PathLike)):
        path = Path(os.fspath(obj))
        if not path.exists():
            raise VectorReadError(f"{path}: no such file (table {name!r}); check the path")
        if path.suffix.lower() in _PARQUET:
            try:
                df = con.read_parquet(str(path))
            except Exception as exc:  # noqa: BLE001
                raise VectorReadError(f"{path}: SedonaDB cannot read this Parquet file ({_msg(exc)})") from exc
            df.to_view(name, overwrite=True)
            return crss
        from geodetect.frames import read

        obj = read(path)
    if isinstance(obj, gpd.GeoDataFrame):
        for c in obj.columns:
            if isinstance(obj[c].dtype, gpd.array.GeometryDtype) and obj[c].crs is not None:
                crss.append(obj[c].crs)
    elif not isinstance(obj, pd.DataFrame) and not hasattr(obj, "__arrow_c_stream__"):
        raise ConfigError(f"table {name!r}: expected a GeoDataFrame, DataFrame, Arrow table or a file path, not {type(obj).__name__}")
    if isinstance(obj, gpd.GeoDataFrame):
        obj = _to_arrow(obj)
    try:
        con.create_data_frame(obj).to_view(name, overwrite=True)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"table {name!r}: SedonaDB cannot register it ({_msg(exc)})") from exc
    return crss


def _to_arrow(gdf):
    """GeoDataFrame -> Arrow table with geoarrow.wkb columns.

    2-D points (all detections tables the analytics build) are encoded to WKB
    with numpy, about 30 times faster than going through GEOS; anything else
    goes through ``GeoDataFrame.to_arrow``.
    """
    import json

    import geopandas as gpd
    import numpy as np
    import pyarrow as pa
    import shapely

    geo_cols = [c for c in gdf.columns if isinstance(gdf[c].dtype, gpd.array.GeometryDtype)]
    simple = True
    for c in geo_cols:
        g = np.asarray(gdf[c].values, dtype=object)
        if len(g) and not (np.all(shapely.get_type_id(g) == 0) and not shapely.has_z(g).any() and not shapely.is_empty(g).any()):
            simple = False
    if not simple or not geo_cols:
        return pa.table(gdf.to_arrow(geometry_encoding="WKB"))
    table = pa.Table.from_pandas(gdf.drop(columns=geo_cols), preserve_index=False)
    for c in geo_cols:
        g = np.asarray(gdf[c].values, dtype=object)
        wkb = np.zeros((len(g), 21), np.uint8)
        wkb[:, 0] = 1  # little endian
        wkb[:, 1] = 1  # Point (uint32 1, little endian)
        wkb[:, 5:13] = shapely.get_x(g).astype("<f8").view(np.uint8).reshape(-1, 8)
        wkb[:, 13:21] = shapely.get_y(g).astype("<f8").view(np.uint8).reshape(-1, 8)
        offsets = np.arange(0, 21 * len(g) + 1, 21, dtype=np.int32)
        arr = pa.BinaryArray.from_buffers(pa.binary(), len(g), [None, pa.py_buffer(offsets), pa.py_buffer(wkb.reshape(-1))])
        crs = gdf[c].crs
        meta = {"crs": crs.to_json_dict()} if crs is not None else {}
        field = pa.field(c, pa.binary(), metadata={
            b"ARROW:extension:name": b"geoarrow.wkb",
            b"ARROW:extension:metadata": json.dumps(meta).encode(),
        })
        table = table.append_column(field, arr)
    return table.select(list(gdf.columns))


def collect(df, crss=()):
    """Run a SedonaDB DataFrame; a GeoDataFrame if the result has geometry, else a pandas DataFrame.

    A geometry column whose CRS is equivalent (``pyproj.CRS.equals``, axis order
    ignored: SedonaDB reports EPSG:4326 as OGC:CRS84) to one of ``crss`` gets
    that CRS object back.
    """
    import geopandas as gpd
    import pyarrow as pa

    table = pa.table(df)  # plain pyarrow: no geoarrow extension-type package needed
    geo_cols = [f.name for f in table.schema if (f.metadata or {}).get(b"ARROW:extension:name", b"").startswith(b"geoarrow.")]
    if not geo_cols:
        return table.to_pandas()
    primary = "geometry" if "geometry" in geo_cols else ("geography" if "geography" in geo_cols else geo_cols[0])
    out = gpd.GeoDataFrame.from_arrow(table, geometry=primary)
    for c in geo_cols:
        crs = out[c].crs
        if crs is None:
            continue
        for want in crss:
            if want is not None and crs.equals(want, ignore_axis_order=True):
                if c == out.geometry.name:
                    out = out.set_crs(want, allow_override=True)
                else:
                    out[c] = out[c].set_crs(want, allow_override=True)
                break
    return out


def _msg(exc) -> str:
    return " ".join(str(exc).split())


class SedonaDBEngine:
    """Runs :data:`geodetect.engines.AGGREGATE_SQL` / :data:`ASSIGN_SQL` and free SQL in SedonaDB."""

    name = "sedonadb"

    def __init__(self):
        import_sedonadb()  # fail early, with the install hint

    def sql(self, query: str, tables: dict, *, allow_files: bool = False):
        """Run ``query`` over ``tables``; read-only over them unless ``allow_files`` (see :mod:`._sqlguard`)."""
        from geodetect.engines._sqlguard import check_plan_scans, check_query_text

        if not allow_files:
            check_query_text(query, tables)
        con = connect()
        crss = []
        for name, obj in tables.items():
            crss.extend(register(con, name, obj))
        try:
            df = con.sql(query)
            if not allow_files:
                import pyarrow as pa

                plan = pa.table(df.explain(type="standard"))
                check_plan_scans("\n".join(str(v) for v in plan.column("plan").to_pylist()), tables)
            return collect(df, crss)
        except Exception as exc:  # noqa: BLE001
            if type(exc).__module__.startswith("sedonadb"):
                raise ConfigError(f"SQL failed in SedonaDB: {_msg(exc)}") from exc
            raise

    def aggregate(self, detections, regions, classes):
        from geodetect.engines import AGGREGATE_SQL

        q = AGGREGATE_SQL.format(detections="detections", regions="regions", classes="classes")
        return self.sql(q, {"detections": detections, "regions": regions, "classes": classes}, allow_files=True)

    def assign(self, detections, regions):
        from geodetect.engines import ASSIGN_SQL

        q = ASSIGN_SQL.format(detections="detections", regions="regions")
        return self.sql(q, {"detections": detections, "regions": regions}, allow_files=True)
