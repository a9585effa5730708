"""geodetect.regions: reading, checking, cleaning and reprojecting region layers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")

from geodetect.errors import ConfigError, GeodetectError  # noqa: E402
from geodetect.regions import load_regions, split_antimeridian  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
DEMO = SAMPLE / "counties_demo.geojson"
ALL = SAMPLE / "us_counties.parquet"


def _squares(crs="EPSG:4326", ids=("A", "B")):
    return gpd.GeoDataFrame(
        {"rid": list(ids), "name": ["left", "right"]},
        geometry=[shapely.box(0, 0, 1, 1), shapely.box(1, 0, 2, 1)],
        crs=crs,
    )


def test_reads_path_and_keeps_by_and_name():
    reg = load_regions(DEMO, "fips")
    assert list(reg.columns) == ["fips", "name", "geometry"]
    assert len(reg) == 218
    assert reg.crs.equals("EPSG:4326", ignore_axis_order=True)
    assert reg.attrs["geodetect_regions"]["name_col"] == "name"


def test_name_col_explicit_and_absent():
    reg = load_regions(_squares(), "rid", "name")
    assert list(reg.columns) == ["rid", "name", "geometry"]
    reg = load_regions(_squares().drop(columns="name"), "rid")
    assert list(reg.columns) == ["rid", "geometry"]
    with pytest.raises(ConfigError, match="no column 'label'.*columns are: rid, name"):
        load_regions(_squares(), "rid", "label")


def test_by_missing_lists_columns():
    with pytest.raises(ConfigError, match=r"no column 'fips'.*columns are: rid, name"):
        load_regions(_squares(), "fips")


def test_by_not_unique_and_null():
    g = _squares(ids=("A", "A"))
    with pytest.raises(ConfigError, match=r"not unique.*'A'.*choose a unique column among: rid, name"):
        load_regions(g, "rid")
    g = _squares(ids=("A", None))
    with pytest.raises(ConfigError, match="empty values"):
        load_regions(g, "rid")


def test_errors_are_geodetect_errors():
    with pytest.raises(GeodetectError):
        load_regions(_squares(), "nope")
    with pytest.raises(GeodetectError, match="no such file"):
        load_regions("/nonexistent/regions.geojson", "fips")
    with pytest.raises(ConfigError, match="path or a GeoDataFrame"):
        load_regions(42, "fips")


def test_reprojects_to_requested_crs():
    src = load_regions(DEMO, "fips").to_crs("EPSG:5070")
    reg = load_regions(src, "fips", crs="EPSG:4326")
    assert reg.crs.equals("EPSG:4326")
    ref = load_regions(DEMO, "fips")
    # reprojecting there and back moves vertices by far less than a metre
    a = ref.set_index("fips").loc["08031", "geometry"]
    b = reg.set_index("fips").loc["08031", "geometry"]
    assert a.symmetric_difference(b).area / a.area < 1e-8


def test_equivalent_crs_gets_callers_object():
    reg = load_regions(DEMO, "fips", crs="EPSG:4326")  # file says OGC:CRS84
    assert reg.crs.to_epsg() == 4326


def test_no_crs_lonlat_is_assumed_with_warning():
    g = _squares(crs=None)
    with pytest.warns(UserWarning, match="no CRS.*taken as EPSG:4326"):
        reg = load_regions(g, "rid")
    assert reg.crs.equals("EPSG:4326")


def test_no_crs_projected_is_refused():
    g = gpd.GeoDataFrame({"rid": ["A", "B"]}, geometry=[shapely.box(5e5, 4e6, 6e5, 4.1e6), shapely.box(6e5, 4e6, 7e5, 4.1e6)])
    with pytest.raises(ConfigError, match="no CRS.*not lon/lat.*src_crs"):
        load_regions(g, "rid")
    reg = load_regions(g, "rid", src_crs="EPSG:5070", crs="EPSG:4326")
    assert reg.crs.equals("EPSG:4326")


def test_invalid_polygon_repaired_with_one_warning():
    bowtie = shapely.Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])
    bowtie2 = shapely.Polygon([(2, 0), (3, 1), (3, 0), (2, 1), (2, 0)])
    g = gpd.GeoDataFrame({"rid": ["X", "Y", "Z"]}, geometry=[bowtie, bowtie2, shapely.box(5, 5, 6, 6)], crs=4326)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        reg = load_regions(g, "rid")
    msgs = [str(x.message) for x in w]
    assert len(msgs) == 1 and "repaired 2 invalid region polygon(s)" in msgs[0] and "X, Y" in msgs[0]
    assert reg.is_valid.all()
    assert set(reg.geom_type) <= {"Polygon", "MultiPolygon"}
    assert reg.geometry.iloc[0].area == pytest.approx(0.5)
    assert reg.attrs["geodetect_regions"]["repaired"] == 2


def test_empty_regions_dropped_with_warning_naming_them():
    with pytest.warns(UserWarning, match=r"dropped 1 region\(s\) with an empty geometry \(fips: 51610\)"):
        reg = load_regions(ALL, "fips")
    assert len(reg) == 3230 and "51610" not in set(reg["fips"])


def test_non_polygons_refused():
    g = gpd.GeoDataFrame({"rid": ["A"]}, geometry=[shapely.Point(0, 0)], crs=4326)
    with pytest.raises(ConfigError, match="must be polygons.*Point"):
        load_regions(g, "rid")


def test_aleutians_west_keeps_its_split():
    reg = load_regions(DEMO, "fips").set_index("fips")
    aw = reg.loc["02016", "geometry"]
    assert aw.geom_type == "MultiPolygon" and len(aw.geoms) == 43
    east = [p for p in aw.geoms if p.bounds[0] > 0]
    west = [p for p in aw.geoms if p.bounds[2] < 0]
    assert len(east) == 12 and len(west) == 31


def test_region_crossing_antimeridian_from_projected_crs_is_split():
    # A 1 x 1 degree box centred on the antimeridian, made in Alaska Albers (EPSG:3338)
    lonlat = shapely.Polygon([(179.5, 52), (180.5, 52), (180.5, 53), (179.5, 53)])
    seg = shapely.segmentize(lonlat, 0.05)
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, 3338, always_xy=True)
    xy = shapely.get_coordinates(seg)
    x, y = tr.transform(((xy[:, 0] + 180) % 360) - 180, xy[:, 1])
    poly3338 = shapely.Polygon(np.column_stack([x, y]))
    g = gpd.GeoDataFrame({"rid": ["AM"]}, geometry=[poly3338], crs=3338)
    reg = load_regions(g, "rid", crs="EPSG:4326")
    geom = reg.geometry.iloc[0]
    assert geom.is_valid and geom.geom_type == "MultiPolygon"
    b = shapely.bounds(np.array(list(geom.geoms)))
    assert (b[:, 0] >= -180).all() and (b[:, 2] <= 180).all()
    assert geom.intersects(shapely.Point(179.8, 52.5)) and geom.intersects(shapely.Point(-179.8, 52.5))
    assert not geom.intersects(shapely.Point(0, 52.5))


def test_split_antimeridian_lon_beyond_180_and_noop():
    beyond = shapely.box(179, 0, 181, 1)
    out = split_antimeridian(np.array([beyond, shapely.box(0, 0, 1, 1)], dtype=object))
    assert out[0].geom_type == "MultiPolygon" and out[0].area == pytest.approx(2.0)
    assert out[0].intersects(shapely.Point(-179.5, 0.5)) and out[0].intersects(shapely.Point(179.5, 0.5))
    ordinary = np.array([shapely.box(0, 0, 1, 1)], dtype=object)
    assert split_antimeridian(ordinary)[0] is ordinary[0]


def test_topojson_like_file_without_crs(tmp_path):
    """A GeoJSON-shaped file with no CRS member is read as lon/lat by GDAL already; a plain
    file from GeoPandas without CRS exercises the guess."""
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"rid": "A"}, "geometry": json.loads(shapely.to_geojson(shapely.box(0, 0, 1, 1)))},
        ],
    }
    p = tmp_path / "r.geojson"
    p.write_text(json.dumps(fc))
    reg = load_regions(p, "rid")
    assert reg.crs is not None and reg.crs.equals("EPSG:4326", ignore_axis_order=True)
