"""The GeoPandas engine: the same steps as :data:`geodetect.engines.AGGREGATE_SQL`, in shapely + pandas.

No extra dependency. Used as the reference for the SedonaDB engine (the tests
check they give identical numbers) and where SedonaDB is not installed.
"""

from __future__ import annotations

import numpy as np

from geodetect.errors import ConfigError

__all__ = ["GeoPandasEngine", "complete"]


class GeoPandasEngine:
    """Border rule and aggregation of :mod:`geodetect.engines`, without SQL."""

    name = "geopandas"

    def sql(self, query, tables):  # noqa: ARG002
        raise ConfigError("the geopandas engine cannot run SQL; use engine='sedonadb' (pip install sedonadb)")

    def assign(self, detections, regions):
        """``ASSIGN_SQL``: per detection in some region, the smallest ``_region_order`` it intersects."""
        import pandas as pd
        import shapely

        pts = np.asarray(detections.geometry.values, dtype=object)
        polys = np.asarray(regions.geometry.values, dtype=object)
        cols = ["_det_id", "class_name", "_area_q", "_region_order"]
        if len(pts) == 0 or len(polys) == 0:
            return pd.DataFrame({c: pd.Series([], dtype=("int64" if c != "class_name" else object)) for c in cols})
        tree = shapely.STRtree(polys)
        di, ri = tree.query(pts, predicate="intersects")
        order = regions["_region_order"].to_numpy(np.int64)[ri]
        if len(di) == 0:
            return pd.DataFrame({c: pd.Series([], dtype=("int64" if c != "class_name" else object)) for c in cols})
        # smallest order per detection: sort by (detection, order), keep the first of each detection
        idx = np.lexsort((order, di))
        di, order = di[idx], order[idx]
        first = np.ones(len(di), bool)
        first[1:] = di[1:] != di[:-1]
        di, order = di[first], order[first]
        return pd.DataFrame({
            "_det_id": detections["_det_id"].to_numpy(np.int64)[di],
            "class_name": detections["class_name"].to_numpy(object)[di],
            "_area_q": detections["_area_q"].to_numpy(np.int64)[di],
            "_region_order": order,
        })

    def aggregate(self, detections, regions, classes):
        """``AGGREGATE_SQL``: one row per region x class, zero counts included."""
        import pandas as pd

        a = self.assign(detections, regions)
        per = (
            a.groupby(["_region_order", "class_name"], sort=False)
            .agg(n=("_det_id", "size"), area_q=("_area_q", "sum"))
            .reset_index()
        )
        return complete(per, regions, classes)


def complete(per, regions, classes):
    """Per (region, class) sums ``n`` and ``area_q`` -> the full region x class table of AGGREGATE_SQL.

    Shared by the GeoPandas engine and the Spark fallback (which sums on Spark
    and completes the small table on the driver).
    """
    import pandas as pd

    grid = pd.MultiIndex.from_product(
        [regions["_region_order"].to_numpy(np.int64), classes["class_name"].to_numpy(object)],
        names=["_region_order", "class_name"],
    ).to_frame(index=False)
    out = grid.merge(per, on=["_region_order", "class_name"], how="left")
    n = out["n"].fillna(0).to_numpy(np.int64)
    area_q = out["area_q"].fillna(0).to_numpy(np.int64)
    region_area = regions.set_index("_region_order")["region_area_km2"].reindex(out["_region_order"]).to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        density = np.where(region_area > 0, n.astype(np.float64) / region_area, np.nan)
    return pd.DataFrame({
        "_region_order": out["_region_order"].to_numpy(np.int64),
        "class_name": out["class_name"].to_numpy(object),
        "count": n,
        "area_m2": area_q.astype(np.float64) / 1000.0,
        "density_per_km2": density,
        "region_area_km2": region_area,
    })
