"""Engines that run the spatial analytics: SedonaDB (embedded, default) and GeoPandas.

Every engine answers the same two questions over the same *prepared* tables
(built once by :mod:`geodetect.analytics`, so the engines cannot disagree on
inputs):

``detections``
    ``_det_id`` (int64, unique), ``class_name`` (str), ``_area_q`` (int64: the
    detection's ``area_m2`` rounded to 0.001 m^2, so that sums are exact integer
    sums whatever order an engine adds them in), ``geometry`` (the detection's
    representative point: the point itself, or ``shapely.point_on_surface`` of a
    polygon, computed once in Python).
``regions``
    ``_region_order`` (int64: 0 for the smallest region id, 1 for the next, ...),
    ``region_area_km2`` (float64, EPSG:6933), ``geometry`` (polygons, same CRS).
``classes``
    ``class_name``: the classes to report, one row each.

**Border rule** (all engines): a detection is assigned to exactly one region,
the one with the smallest ``_region_order`` (that is, the smallest region id)
among all regions its representative point *intersects* (interior or
boundary). A point on a border shared by two counties is therefore counted
once, in the county with the smaller id; a detection in the overlap of two
overlapping AOIs is counted once too. Detections that intersect no region are
not counted.

Exactness on borders needs exact predicates: GEOS (GeoPandas), JTS (Sedona on Spark) and, in
SedonaDB, the ``geo`` spatial-join library, which :mod:`geodetect.engines.sedonadb` selects
(SedonaDB's default ``tg`` library may place a point lying on a shared edge in only one of
the two polygons).

The SQL below is the contract. SedonaDB runs it as is; the Spark + Sedona
engine (cluster) will register the same three tables as temporary views and
run the same text; the GeoPandas engine implements the same steps with
``shapely.STRtree`` and pandas and is tested to give identical numbers.
"""

from __future__ import annotations

from geodetect.errors import ConfigError

__all__ = ["ASSIGN_SQL", "AGGREGATE_SQL", "ENGINES", "DEFAULT_ENGINE", "get_engine"]

#: One row per detection that falls in some region: which region it counts in (border rule).
ASSIGN_SQL = """\
SELECT d._det_id AS _det_id, d.class_name AS class_name, d._area_q AS _area_q,
       MIN(r._region_order) AS _region_order
FROM {detections} d
JOIN {regions} r ON ST_Intersects(r.geometry, d.geometry)
GROUP BY d._det_id, d.class_name, d._area_q"""

#: One row per region x class, zero counts included.
AGGREGATE_SQL = """\
WITH assigned AS (
""" + ASSIGN_SQL + """
),
per_class AS (
    SELECT _region_order, class_name, COUNT(*) AS n, SUM(_area_q) AS area_q
    FROM assigned
    GROUP BY _region_order, class_name
)
SELECT r._region_order AS _region_order,
       c.class_name AS class_name,
       COALESCE(p.n, 0) AS count,
       CAST(COALESCE(p.area_q, 0) AS DOUBLE) / 1000.0 AS area_m2,
       CASE WHEN r.region_area_km2 > 0
            THEN CAST(COALESCE(p.n, 0) AS DOUBLE) / r.region_area_km2 END AS density_per_km2,
       r.region_area_km2 AS region_area_km2
FROM {regions} r
CROSS JOIN {classes} c
LEFT JOIN per_class p ON p._region_order = r._region_order AND p.class_name = c.class_name"""

ENGINES = ("sedonadb", "geopandas")
DEFAULT_ENGINE = "sedonadb"


def get_engine(name: str | None = None):
    """The engine object for ``name`` (``"sedonadb"`` or ``"geopandas"``)."""
    name = DEFAULT_ENGINE if name is None else str(name).lower()
    if name == "sedonadb":
        from geodetect.engines.sedonadb import SedonaDBEngine

        return SedonaDBEngine()
    if name == "geopandas":
        from geodetect.engines.geopandas import GeoPandasEngine

        return GeoPandasEngine()
    if name in ("spark", "sedona-spark"):
        raise ConfigError(f"engine {name!r} is not available yet; use one of: {', '.join(ENGINES)}")
    raise ConfigError(f"unknown engine {name!r}; use one of: {', '.join(ENGINES)}")
