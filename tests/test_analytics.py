"""geodetect.analytics: aggregate / heatmap / change / sql, both engines, and their CLI.

Tiny data is built here; real county polygons come from sample_data/counties_demo.geojson
(AK, CA, CO, FL; Aleutians West 02016 is split at the antimeridian).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

gpd = pytest.importorskip("geopandas")
pd = pytest.importorskip("pandas")
shapely = pytest.importorskip("shapely")

from geodetect.analytics import aggregate, change, heatmap, sql  # noqa: E402
from geodetect.errors import ConfigError, GeodetectError, MissingDependencyError  # noqa: E402
from geodetect.frames import make_detections, write  # noqa: E402
from geodetect.georef import area_m2  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DEMO = SAMPLE / "counties_demo.geojson"
ALL = SAMPLE / "us_counties.parquet"

HAVE_SEDONADB = True
try:  # the import alone (telemetry off), without loading anything else
    from geodetect.engines.sedonadb import import_sedonadb

    import_sedonadb()
except MissingDependencyError:  # pragma: no cover
    HAVE_SEDONADB = False
HAVE_H3 = True
try:
    import h3  # noqa: F401
except ImportError:  # pragma: no cover
    HAVE_H3 = False

needs_sedonadb = pytest.mark.skipif(not HAVE_SEDONADB, reason="sedonadb not installed (pip install sedonadb)")
needs_h3 = pytest.mark.skipif(not HAVE_H3, reason="h3 not installed (pip install h3)")


# --------------------------------------------------------------------------- helpers


def dets_from(geoms, classes=None, crs="EPSG:4326", scores=None):
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    classes = ["spot"] * n if classes is None else list(classes)
    return make_detections("test", "1.0", "scene", classes, np.ones(n) if scores is None else scores, geoms,
                           area_m2(geoms, crs), crs)


def both(dets, regions, by, **kw):
    """Run both engines (sedonadb when installed) and require identical frames."""
    ref = aggregate(dets, regions, by=by, engine="geopandas", **kw)
    if HAVE_SEDONADB:
        got = aggregate(dets, regions, by=by, engine="sedonadb", **kw)
        pd.testing.assert_frame_equal(got, ref, check_exact=True)
        assert got.attrs["geodetect"]["unassigned"] == ref.attrs["geodetect"]["unassigned"]
    return ref


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


@pytest.fixture(scope="module")
def demo():
    return gpd.read_file(DEMO)


def _shared_boundary_points(counties, n_each=60, seed=0):
    """Vertices and edge midpoints on borders shared by two or more counties (TopoJSON arcs are shared exactly)."""
    rows = []
    for f, g in zip(counties["fips"], counties.geometry):
        for ring in shapely.get_parts(shapely.boundary(g)):
            xy = shapely.get_coordinates(ring)
            for a, b in zip(xy[:-1], xy[1:]):
                key = (a[0], a[1], b[0], b[1]) if (a[0], a[1]) <= (b[0], b[1]) else (b[0], b[1], a[0], a[1])
                rows.append((f, *key))
    seg = pd.DataFrame(rows, columns=["fips", "x0", "y0", "x1", "y1"])
    shared = seg.groupby(["x0", "y0", "x1", "y1"])["fips"].nunique()
    shared = shared[shared >= 2].reset_index().sample(n_each, random_state=seed)
    verts = shapely.points(shared["x0"], shared["y0"])
    mids = shapely.points((shared["x0"] + shared["x1"]) / 2, (shared["y0"] + shared["y1"]) / 2)
    return np.concatenate([verts, mids])


def _aleutian_points(counties):
    aw = counties.set_index("fips").loc["02016", "geometry"]
    parts = list(aw.geoms)
    east = max(parts, key=lambda p: p.bounds[2])  # the island nearest +180 (lon 179.48..179.77)
    west = min(parts, key=lambda p: p.bounds[0])  # the island nearest -180 (lon -179.14..-179.07)
    pe, pw = east.point_on_surface(), west.point_on_surface()
    assert pe.x > 179 and pw.x < -179
    return [pe, pw]


def _reference_counts(dets, regions, by):
    """Brute force border rule with shapely: smallest id among intersecting regions."""
    regs = regions[~regions.is_empty].sort_values(by)
    geoms = regs.geometry.values
    ids = regs[by].to_numpy()
    out = {}
    for g, c in zip(dets.geometry.values, dets["class_name"]):
        p = g if g.geom_type == "Point" else g.point_on_surface()
        hit = [i for i, r in zip(ids, geoms) if r.intersects(p)]
        if hit:
            out[(min(hit), c)] = out.get((min(hit), c), 0) + 1
    return out


# --------------------------------------------------------------------------- aggregate


def test_engines_identical_on_real_counties_with_borders_and_antimeridian(demo):
    rng = np.random.default_rng(1)
    inner = shapely.points(rng.uniform(-124, -103, 300), rng.uniform(33, 41, 300))  # CA, CO (and neighbours)
    border = _shared_boundary_points(demo[demo["state_fips"].isin(["06", "08"])])
    aleut = _aleutian_points(demo)
    boxes = [shapely.box(x, y, x + 0.05, y + 0.05) for x, y in zip(rng.uniform(-122, -105, 20), rng.uniform(35, 40, 20))]
    geoms = np.concatenate([inner, border, aleut, boxes])
    classes = rng.choice(["seal", "sea-lion"], len(geoms))
    dets = dets_from(geoms, classes)

    res = both(dets, DEMO, "fips")
    assert list(res.columns) == ["fips", "name", "class_name", "count", "area_m2", "density_per_km2", "region_area_km2"]
    assert len(res) == 218 * 2  # every county x both classes, zeros included

    ref = _reference_counts(dets, demo, "fips")
    got = {(f, c): n for f, c, n in zip(res["fips"], res["class_name"], res["count"]) if n}
    assert got == ref  # the border rule, checked against brute force
    # every border point counted exactly once
    assert res["count"].sum() == sum(ref.values())
    assert res["count"].sum() + res.attrs["geodetect"]["unassigned"] == len(dets)
    aw = res[res["fips"] == "02016"]
    assert aw["count"].sum() == 2 and aw["name"].iloc[0] == "Aleutians West"


def test_border_rule_smallest_id_wins():
    regions = gpd.GeoDataFrame(
        {"rid": ["B", "A", "C"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1), shapely.box(0, 1, 2, 2)],
        crs=4326,
    )
    pts = [
        shapely.Point(0.5, 0.5),   # inside B only
        shapely.Point(1.0, 0.5),   # on the B|A edge        -> A
        shapely.Point(0.5, 1.0),   # on the B|C edge        -> B
        shapely.Point(1.0, 1.0),   # corner of A, B and C   -> A
        shapely.Point(1.5, 1.0),   # on the A|C edge        -> A
        shapely.Point(2.0, 1.5),   # on C's outer boundary  -> C
        shapely.Point(5.0, 5.0),   # nowhere
    ]
    res = both(dets_from(pts), regions, "rid")
    assert dict(zip(res["rid"], res["count"])) == {"A": 3, "B": 2, "C": 1}
    assert res.attrs["geodetect"]["unassigned"] == 1


def test_border_rule_orders_numeric_ids_numerically():
    regions = gpd.GeoDataFrame({"code": [10, 9]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs=4326)
    res = both(dets_from([shapely.Point(1, 0.5)]), regions, "code")
    assert dict(zip(res["code"], res["count"])) == {9: 1, 10: 0}
    assert res["code"].tolist() == [9, 10]


def test_zero_regions_and_requested_classes():
    regions = gpd.GeoDataFrame({"rid": ["A", "B"], "label": ["a", "b"]},
                               geometry=[shapely.box(0, 0, 1, 1), shapely.box(5, 5, 6, 6)], crs=4326)
    res = both(dets_from([shapely.Point(0.5, 0.5)]), regions, "rid", name_col="label", classes=["spot", "other"])
    assert list(res.columns[:3]) == ["rid", "label", "class_name"]
    assert res[["rid", "class_name", "count"]].values.tolist() == [
        ["A", "other", 0], ["A", "spot", 1], ["B", "other", 0], ["B", "spot", 0]]
    assert (res.loc[res["count"] == 0, "density_per_km2"] == 0).all()


def test_density_and_area_against_hand_computation():
    # Regions and detections in EASE-Grid 2.0 (EPSG:6933), the equal-area CRS itself:
    # region 10 km x 10 km = 100 km^2; three 100 m x 50 m boxes = 5,000 m^2 each.
    crs = "EPSG:6933"
    x0, y0 = 1_000_000.0, 4_000_000.0
    regions = gpd.GeoDataFrame(
        {"rid": ["R1", "R2"]},
        geometry=[shapely.box(x0, y0, x0 + 10_000, y0 + 10_000), shapely.box(x0 + 10_000, y0, x0 + 30_000, y0 + 10_000)],
        crs=crs,
    )
    boxes = [shapely.box(x0 + 1000 * i + 100, y0 + 100, x0 + 1000 * i + 200, y0 + 150) for i in range(3)]
    pts = [shapely.Point(x0 + 15_000, y0 + 5_000)]
    dets = dets_from(boxes + pts, ["roof"] * 3 + ["car"], crs=crs)
    assert dets["area_m2"].tolist() == [5000.0, 5000.0, 5000.0, 0.0]
    res = both(dets, regions, "rid").set_index(["rid", "class_name"])
    assert res.loc[("R1", "roof"), "count"] == 3
    assert res.loc[("R1", "roof"), "area_m2"] == 15_000.0
    assert res.loc[("R1", "roof"), "region_area_km2"] == pytest.approx(100.0, rel=1e-12)
    assert res.loc[("R1", "roof"), "density_per_km2"] == pytest.approx(0.03, rel=1e-12)
    assert res.loc[("R2", "car"), "region_area_km2"] == pytest.approx(200.0, rel=1e-12)
    assert res.loc[("R2", "car"), "density_per_km2"] == pytest.approx(1 / 200, rel=1e-12)
    assert res.loc[("R2", "car"), "area_m2"] == 0.0

    # The same region given in EPSG:6933 but detections in lon/lat: the region is reprojected
    # to lon/lat and its area computed back in EPSG:6933 (a cylindrical projection: exact box).
    res2 = both(dets.to_crs(4326), regions, "rid").set_index(["rid", "class_name"])
    assert res2.loc[("R1", "roof"), "region_area_km2"] == pytest.approx(100.0, rel=1e-9)
    assert res2.loc[("R1", "roof"), "count"] == 3


def test_area_m2_computed_when_column_missing():
    crs = "EPSG:6933"
    regions = gpd.GeoDataFrame({"rid": ["R"]}, geometry=[shapely.box(0, 0, 1000, 1000)], crs=crs)
    dets = gpd.GeoDataFrame({"class_name": ["x"]}, geometry=[shapely.box(10, 10, 20, 30)], crs=crs)
    res = both(dets, regions, "rid")
    assert res["area_m2"].tolist() == [200.0]


@pytest.mark.parametrize("region_crs", ["EPSG:5070", "EPSG:3338"])
def test_regions_in_projected_crs_are_reprojected(demo, region_crs):
    sub = demo[demo["state_fips"].isin(["02", "08"])]
    pts = list(sub.geometry.representative_point()) + _aleutian_points(demo)
    dets = dets_from(pts)
    ref = both(dets, sub, "fips")
    got = both(dets, sub.to_crs(region_crs), "fips")
    pd.testing.assert_frame_equal(got.drop(columns=["region_area_km2", "density_per_km2"]),
                                  ref.drop(columns=["region_area_km2", "density_per_km2"]))
    np.testing.assert_allclose(got["region_area_km2"], ref["region_area_km2"], rtol=1e-6)
    assert got.set_index("fips").loc["02016", "count"] == 3  # its own point + the two antimeridian ones


def test_detections_in_projected_crs(demo):
    sub = demo[demo["state_fips"] == "08"]
    dets = dets_from(list(sub.geometry.representative_point()))
    a = both(dets, sub, "fips")
    b = both(dets.to_crs("EPSG:5070"), sub, "fips")
    assert a["count"].tolist() == b["count"].tolist() == [1] * 64
    np.testing.assert_allclose(a["region_area_km2"], b["region_area_km2"], rtol=1e-6)


def test_invalid_region_repaired_inside_aggregate():
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    regions = gpd.GeoDataFrame({"rid": ["X"]}, geometry=[bowtie], crs=4326)
    with pytest.warns(UserWarning, match=r"repaired 1 invalid region polygon"):
        res = aggregate(dets_from([shapely.Point(0.2, 0.5)]), regions, by="rid", engine="geopandas")
    assert res["count"].tolist() == [1]


def test_input_errors():
    regions = gpd.GeoDataFrame({"rid": ["A"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    dets = dets_from([shapely.Point(0.5, 0.5)])
    with pytest.raises(ConfigError, match="no CRS"):
        aggregate(dets.set_crs(None, allow_override=True), regions, by="rid", engine="geopandas")
    with pytest.raises(ConfigError, match="class_name"):
        aggregate(dets.drop(columns="class_name"), regions, by="rid", engine="geopandas")
    with pytest.raises(ConfigError, match="unknown engine 'duckdb'.*sedonadb, geopandas"):
        aggregate(dets, regions, by="rid", engine="duckdb")
    with pytest.raises(ConfigError, match="columns are: rid"):
        aggregate(dets, regions, by="fips", engine="geopandas")
    with pytest.raises(GeodetectError, match="no such file"):
        aggregate("/nonexistent/dets.parquet", regions, by="rid", engine="geopandas")


@needs_sedonadb
def test_aggregate_from_files(tmp_path, demo):
    dets = dets_from(list(demo[demo["state_fips"] == "06"].geometry.representative_point()))
    p = write(dets, tmp_path / "d.parquet")
    a = aggregate(p, DEMO, by="fips")
    b = aggregate(dets, demo, by="fips", engine="geopandas")
    pd.testing.assert_frame_equal(a, b)
    assert a["count"].sum() == 58


@needs_sedonadb
def test_aggregate_sql_template_runs_under_other_table_names(demo):
    """The Spark seam: the same SQL text, views named by the caller."""
    from geodetect import analytics as ga
    from geodetect.engines import AGGREGATE_SQL, get_engine

    dets = dets_from(list(demo.geometry.representative_point()))
    t, _ = ga._prepare_detections(dets)
    reg = quiet(ga._prepare_regions, demo, "fips", None, dets.crs)
    cls = ga._classes_table(["spot"])
    q = AGGREGATE_SQL.format(detections="dets_v", regions="regions_v", classes="classes_v")
    got = get_engine("sedonadb").sql(q, {"dets_v": t, "regions_v": reg.table, "classes_v": cls})
    assert int(got["count"].sum()) == 218 and len(got) == 218


# --------------------------------------------------------------------------- heatmap


@needs_h3
def test_heatmap_counts_and_cells(demo):
    import h3

    rng = np.random.default_rng(3)
    pts = list(shapely.points(rng.uniform(-122.5, -121.5, 400), rng.uniform(37, 38, 400)))
    pts += _aleutian_points(demo) + [shapely.Point(179.999, 51.0), shapely.Point(-179.999, 51.0)]
    boxes = [shapely.box(-122.2, 37.2, -122.19, 37.21)]
    dets = dets_from(pts + boxes, rng.choice(["a", "b"], len(pts) + 1))
    hexes = heatmap(dets, resolution=7)
    assert list(hexes.columns) == ["h3_cell", "class_name", "count", "geometry"]
    assert hexes.crs.equals("EPSG:4326")
    assert hexes["count"].sum() == len(dets)
    assert hexes.geometry.is_valid.all() and set(hexes.geom_type) <= {"Polygon", "MultiPolygon"}
    assert all(h3.get_resolution(c) == 7 for c in hexes["h3_cell"])
    assert not hexes.duplicated(["h3_cell", "class_name"]).any()
    # each point lies in (or on the edge of) its cell's polygon
    cell_geom = dict(zip(hexes["h3_cell"], hexes.geometry))
    for p in pts[:50] + pts[-4:]:
        c = h3.latlng_to_cell(p.y, p.x, 7)
        assert cell_geom[c].buffer(1e-9).covers(p)
    # the cells at the antimeridian are split, not wrapped around the globe
    parts = shapely.get_parts(np.asarray(hexes.geometry.values, dtype=object))
    b = shapely.bounds(parts)
    assert ((b[:, 2] - b[:, 0]) < 1).all() and (b[:, 0] >= -180).all() and (b[:, 2] <= 180).all()
    split = hexes[hexes.geom_type == "MultiPolygon"]
    assert len(split) >= 1 and split.geometry.iloc[0].covers(shapely.Point(179.999, 51.0))
    # same answer from a projected CRS
    again = heatmap(dets.to_crs("EPSG:3857"), resolution=7)
    assert again[["h3_cell", "class_name", "count"]].equals(hexes[["h3_cell", "class_name", "count"]])


@needs_h3
def test_heatmap_bad_resolution():
    with pytest.raises(ConfigError, match="0 to 15"):
        heatmap(dets_from([shapely.Point(0, 0)]), resolution=16)


# --------------------------------------------------------------------------- change


def _grid(classes, x0=500_000.0, y0=4_400_000.0, step=250.0, crs="EPSG:32613"):
    """Tile footprints, row-major over an (n_rows, n_cols) class array, as a CLASSIFICATION run."""
    classes = np.asarray(classes)
    geoms, names = [], []
    for r in range(classes.shape[0]):
        for c in range(classes.shape[1]):
            geoms.append(shapely.box(x0 + c * step, y0 + r * step, x0 + (c + 1) * step, y0 + (r + 1) * step))
            names.append(classes[r, c])
    return dets_from(geoms, names, crs=crs)


def test_change_classification_grid():
    x0, y0 = 500_000.0, 4_400_000.0
    regions = gpd.GeoDataFrame(
        {"rid": ["R1", "R2"], "name": ["west", "east"]},
        geometry=[shapely.box(x0, y0, x0 + 1000, y0 + 1000), shapely.box(x0 + 1000, y0, x0 + 2000, y0 + 1000)],
        crs="EPSG:32613",
    )
    before = np.array([["water"] * 4 + ["land"] * 4] * 4)
    after = before.copy()
    after[0, 0:3] = "land"      # 3 tiles in R1: water -> land
    after[3, 6:8] = "water"     # 2 tiles in R2: land -> water
    b, a = _grid(before), _grid(after)
    extra = _grid(np.array([["land"]]), x0=x0 + 2000)  # outside both regions, after only
    a = pd.concat([a, extra], ignore_index=True)

    reports = [change(b, a, regions, by="rid", engine="geopandas")]
    if HAVE_SEDONADB:
        reports.append(change(b, a, regions, by="rid", engine="sedonadb"))
    for rep in reports:
        t = rep.transitions
        assert list(t.columns) == ["rid", "name", "class_before", "class_after", "count", "area_m2", "changed"]
        got = {(r, cb, ca): n for r, cb, ca, n in zip(t["rid"], t["class_before"], t["class_after"], t["count"])}
        assert got == {("R1", "water", "water"): 13, ("R1", "water", "land"): 3,
                       ("R2", "land", "land"): 14, ("R2", "land", "water"): 2}
        # areas are the after run's (EPSG:6933), each rounded to 0.001 m^2, then summed exactly
        q = np.floor(a["area_m2"].to_numpy() * 1000 + 0.5).astype(np.int64)
        assert t.loc[t["changed"], "area_m2"].tolist() == [q[[0, 1, 2]].sum() / 1000, q[[30, 31]].sum() / 1000]
        assert abs(q[0] / 1000 - 62_500) < 200  # UTM metres are not quite equal-area metres
        assert (rep.matched, rep.unmatched_before, rep.unmatched_after) == (32, 0, 1)
        d = rep.deltas.set_index(["rid", "class_name"])
        assert d.loc[("R1", "water"), ["count_before", "count_after", "count_delta"]].tolist() == [16, 13, -3]
        assert d.loc[("R1", "land"), "area_m2_delta"] == q[[0, 1, 2]].sum() / 1000
        assert d.loc[("R2", "water"), "count_delta"] == 2
    if HAVE_SEDONADB:
        pd.testing.assert_frame_equal(reports[0].transitions, reports[1].transitions, check_exact=True)
        pd.testing.assert_frame_equal(reports[0].deltas, reports[1].deltas, check_exact=True)


def test_change_points_gives_count_deltas():
    regions = gpd.GeoDataFrame({"rid": ["A", "B"]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)], crs=4326)
    b = dets_from([shapely.Point(0.2, 0.2), shapely.Point(0.3, 0.3), shapely.Point(1.5, 0.5)], ["car", "car", "car"])
    a = dets_from([shapely.Point(0.21, 0.2), shapely.Point(1.5, 0.6), shapely.Point(1.6, 0.6)], ["car", "car", "truck"])
    rep = change(b, a, regions, by="rid", engine="sedonadb" if HAVE_SEDONADB else "geopandas")
    d = rep.deltas.set_index(["rid", "class_name"])["count_delta"].to_dict()
    assert d == {("A", "car"): -1, ("A", "truck"): 0, ("B", "car"): 0, ("B", "truck"): 1}
    assert rep.matched == 0 and len(rep.transitions) == 0


# --------------------------------------------------------------------------- sql


@needs_sedonadb
def test_sql_join_over_frames_and_files(demo, tmp_path):
    co = demo[demo["state_fips"] == "08"]
    dets = dets_from(list(co.geometry.representative_point()) * 2)
    q = ("SELECT r.fips, COUNT(*) AS n FROM detections d JOIN regions r ON ST_Contains(r.geometry, d.geometry) "
         "GROUP BY r.fips ORDER BY r.fips")
    res = sql(q, detections=dets, regions=DEMO)
    assert isinstance(res, pd.DataFrame) and not isinstance(res, gpd.GeoDataFrame)
    assert res["n"].tolist() == [2] * 64 and res["fips"].tolist() == sorted(co["fips"])
    # GeoParquet read in place by SedonaDB, detections from a GeoParquet path too
    p = write(dets, tmp_path / "d.parquet")
    res2 = sql(q, detections=p, regions=ALL)
    pd.testing.assert_frame_equal(res2, res)
    # geometry results come back as a GeoDataFrame with the input's CRS object
    g = sql("SELECT fips, geometry FROM regions WHERE state_fips = '08' ORDER BY fips", regions=co)
    assert isinstance(g, gpd.GeoDataFrame) and len(g) == 64 and g.crs == co.crs
    assert g.geometry.iloc[0].equals(co.sort_values("fips").geometry.iloc[0])


@needs_sedonadb
def test_sql_errors(demo):
    dets = dets_from([shapely.Point(-105, 39)])
    with pytest.raises(ConfigError, match="Mismatched CRS|ST_Transform"):
        sql("SELECT * FROM d JOIN r ON ST_Intersects(r.geometry, d.geometry)", d=dets.to_crs(3857), r=demo)
    with pytest.raises(ConfigError, match="SQL failed"):
        sql("SELECT nope FROM d", d=dets)
    with pytest.raises(ConfigError, match="plain SQL identifier"):
        sql("SELECT 1", **{"bad-name": dets})
    with pytest.raises(ConfigError, match="at least one table"):
        sql("SELECT 1")
    with pytest.raises(GeodetectError, match="no such file"):
        sql("SELECT 1", d="/nonexistent/x.parquet")


# --------------------------------------------------------------------------- dependencies


def test_missing_sedonadb_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sedonadb", None)
    with pytest.raises(MissingDependencyError, match="pip install sedonadb"):
        aggregate(dets_from([shapely.Point(0, 0)]), gpd.GeoDataFrame({"r": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326),
                  by="r")
    with pytest.raises(ImportError):  # also an ImportError for callers who do not know geodetect
        sql("SELECT 1", t=pd.DataFrame({"a": [1]}))


def test_missing_h3_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "h3", None)
    with pytest.raises(MissingDependencyError, match="pip install h3"):
        heatmap(dets_from([shapely.Point(0, 0)]))


def _clean_env():
    env = {k: v for k, v in os.environ.items() if k not in ("DO_NOT_TRACK", "SCARF_NO_ANALYTICS")}
    return env


def test_import_geodetect_does_not_import_sedonadb_or_h3(tmp_path):
    code = textwrap.dedent("""
        import sys, json
        import geodetect, geodetect.analytics, geodetect.regions, geodetect.engines, geodetect._cli_analytics
        import geodetect.engines.sedonadb, geodetect.engines.geopandas
        from geodetect.cli import _parser
        _parser()
        heavy = ("sedonadb", "sedona", "h3")
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@needs_sedonadb
def test_telemetry_is_off_before_sedonadb_is_imported(tmp_path):
    code = textwrap.dedent("""
        import os, sys, json
        from geodetect.engines.sedonadb import import_sedonadb
        assert "sedonadb" not in sys.modules
        import_sedonadb()
        print(json.dumps([os.environ.get("DO_NOT_TRACK"), os.environ.get("SCARF_NO_ANALYTICS"),
                          "sedona" in sys.modules, "sedonadb" in sys.modules]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_clean_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["1", "true", False, True]


# --------------------------------------------------------------------------- CLI
# Assumes geodetect/cli.py _parser() calls
#     from geodetect._cli_analytics import register as _reg_analytics; _reg_analytics(sub)


def _cli(argv, capsys):
    from geodetect.cli import main

    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def co_dets(demo, tmp_path):
    co = demo[demo["state_fips"] == "08"]
    dets = dets_from(list(co.geometry.representative_point()), ["a", "b"] * 32)
    return write(dets, tmp_path / "dets.parquet")


@pytest.mark.parametrize("engine", ["sedonadb", "geopandas"])
def test_cli_aggregate(co_dets, tmp_path, capsys, engine):
    if engine == "sedonadb" and not HAVE_SEDONADB:
        pytest.skip("sedonadb not installed")
    out = tmp_path / "counts.csv"
    rc, _, err = _cli(["aggregate", co_dets, "--regions", DEMO, "--by", "fips", "--out", out, "--engine", engine], capsys)
    assert rc == 0, err
    got = pd.read_csv(out, dtype={"fips": str})
    ref = quiet(aggregate, co_dets, DEMO, by="fips", engine="geopandas")
    assert got["count"].tolist() == ref["count"].tolist() and got["fips"].tolist() == ref["fips"].tolist()
    assert list(got.columns) == ["fips", "name", "class_name", "count", "area_m2", "density_per_km2", "region_area_km2"]
    assert "wrote 436 rows" in err and "fall in no region" not in err


def test_cli_aggregate_errors(co_dets, capsys, tmp_path):
    rc, _, err = _cli(["aggregate", co_dets, "--regions", DEMO, "--by", "county", "--engine", "geopandas"], capsys)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "columns are: fips, name, state_fips" in err
    rc, _, err = _cli(["aggregate", co_dets, "--regions", DEMO, "--by", "fips", "--out", tmp_path / "x.geojson"], capsys)
    assert rc == 2 and ".csv or .parquet" in err


@needs_sedonadb
def test_cli_sql(co_dets, tmp_path, capsys):
    q = ("SELECT r.fips, COUNT(*) AS n FROM detections d JOIN regions r ON ST_Contains(r.geometry, d.geometry) "
         "GROUP BY r.fips ORDER BY r.fips")
    out = tmp_path / "n.parquet"
    rc, _, err = _cli(["sql", q, "--table", f"detections={co_dets}", "--table", f"regions={DEMO}", "--out", out], capsys)
    assert rc == 0, err
    got = pd.read_parquet(out)
    assert got["n"].tolist() == [1] * 64
    rc, stdout, err = _cli(["sql", "SELECT fips, geometry FROM regions ORDER BY fips LIMIT 2", "--table", f"regions={DEMO}"], capsys)
    assert rc == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0] == "fips,geometry" and "POLYGON" in lines[1] and len(lines) == 3
    rc, _, err = _cli(["sql", "SELECT 1", "--table", "no-equals-sign"], capsys)
    assert rc == 2 and "NAME=PATH" in err
    rc, _, err = _cli(["sql", "SELEC nonsense", "--table", f"regions={DEMO}"], capsys)
    assert rc == 2 and err.startswith("error: SQL statement 'SELEC' refused") and err.count("\n") == 1
    rc, _, err = _cli(["sql", "SELECT nonsense FROM", "--table", f"regions={DEMO}"], capsys)
    assert rc == 2 and err.startswith("error: SQL failed") and err.count("\n") == 1


@needs_h3
def test_cli_heatmap(co_dets, tmp_path, capsys):
    out = tmp_path / "hex.geojson"
    rc, _, err = _cli(["heatmap", co_dets, "--resolution", "5", "--out", out], capsys)
    assert rc == 0, err
    hexes = gpd.read_file(out)
    assert hexes["count"].sum() == 64 and hexes.geometry.is_valid.all()
    rc, _, err = _cli(["heatmap", co_dets, "--resolution", "99", "--out", out], capsys)
    assert rc == 2 and "0 to 15" in err


def test_null_and_empty_detection_geometries_are_skipped():
    regions = gpd.GeoDataFrame({"rid": ["A"]}, geometry=[shapely.box(0, 0, 1, 1)], crs=4326)
    dets = dets_from([shapely.Point(0.5, 0.5), shapely.Point(0.6, 0.6), shapely.Point(0.7, 0.7)])
    dets.loc[1, "geometry"] = None
    dets.loc[2, "geometry"] = shapely.Point()
    res = both(dets, regions, "rid")
    assert res["count"].tolist() == [1]
    assert res.attrs["geodetect"]["skipped_empty"] == 2 and res.attrs["geodetect"]["unassigned"] == 0


# --------------------------------------------------------------------------- the GeoParquet fast path


@needs_sedonadb
@pytest.mark.parametrize("crs", ["EPSG:4326", "EPSG:5070"])
def test_geoparquet_fast_path_equals_the_general_path(demo, tmp_path, crs):
    """Points straight from GeoParquet (Arrow, no GEOS) give the frame the GeoDataFrame path gives."""
    from geodetect.analytics import _arrow_point_detections

    rng = np.random.default_rng(3)
    inner = shapely.points(rng.uniform(-124, -103, 300), rng.uniform(33, 41, 300))
    border = _shared_boundary_points(demo[demo["state_fips"].isin(["06", "08"])])
    geoms = np.concatenate([inner, border, _aleutian_points(demo), [shapely.Point()]])  # and one empty point
    dets = dets_from(geoms, rng.choice(["seal", "sea-lion"], len(geoms)))
    dets.loc[3, "area_m2"] = np.nan
    if crs != "EPSG:4326":
        dets = dets[~dets.geometry.is_empty].to_crs(crs)
    path = tmp_path / "dets.parquet"
    dets.to_parquet(path)
    fast = _arrow_point_detections(path)
    assert fast is not None and fast[2] == len(dets)  # the fast path is taken
    got = aggregate(path, DEMO, by="fips")
    ref = aggregate(dets, DEMO, by="fips", engine="geopandas")
    pd.testing.assert_frame_equal(got, ref, check_exact=True)
    assert got.attrs["geodetect"] == {**ref.attrs["geodetect"], "engine": "sedonadb"}
    assert got.attrs["geodetect"]["skipped_empty"] == (1 if crs == "EPSG:4326" else 0)


def test_geoparquet_fast_path_declines_polygons(tmp_path):
    from geodetect.analytics import _arrow_point_detections

    dets = dets_from([shapely.box(0, 0, 1, 1)])
    dets.to_parquet(tmp_path / "boxes.parquet")
    assert _arrow_point_detections(tmp_path / "boxes.parquet") is None
