"""geodetect.viz: kepler.gl HTML maps and PNG quicklooks (fast: no browser; tests/test_browser.py opens the maps).

The maps are checked by parsing what they embed: the JSON in ``script#geodetect-map`` holds the
datasets, the kepler.gl config and a ``meta`` block saying what was done (sampling, antimeridian,
geometry columns...). Tiny data is built here.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

gpd = pytest.importorskip("geopandas")
pd = pytest.importorskip("pandas")
shapely = pytest.importorskip("shapely")
pytest.importorskip("h3")

from geodetect.errors import ConfigError, GeodetectError, MissingDependencyError, OutputError  # noqa: E402
from geodetect.frames import make_detections  # noqa: E402
from geodetect.georef import area_m2  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BROWSER = ROOT / "tests" / "browser"


# --------------------------------------------------------------------------- helpers


def dets_from(geoms, classes, crs="EPSG:4326", scores=None, **extra):
    geoms = np.asarray(geoms, dtype=object)
    n = len(geoms)
    return make_detections("toy-detector", "1.0", "scene-1", list(classes),
                           np.linspace(0.5, 1.0, n) if scores is None else scores, geoms, area_m2(geoms, crs), crs,
                           extra=extra or None)


def grid_regions(x0=-122.6, y0=37.2, step=0.3, n=3, crs="EPSG:4326"):
    """n x n square regions with fips '001'... and names."""
    polys, fips, names = [], [], []
    for i in range(n):
        for j in range(n):
            polys.append(shapely.box(x0 + j * step, y0 + i * step, x0 + (j + 1) * step, y0 + (i + 1) * step))
            fips.append(f"{i * n + j + 1:03d}")
            names.append(f"County {i * n + j + 1}")
    return gpd.GeoDataFrame({"fips": fips, "name": names}, geometry=polys, crs=crs)


def toy(n_points=120, n_boxes=30, seed=0, x0=-122.6, y0=37.2, span=0.9):
    rng = np.random.default_rng(seed)
    lon = rng.uniform(x0 + 0.01, x0 + span - 0.01, n_points)
    lat = rng.uniform(y0 + 0.01, y0 + span - 0.01, n_points)
    pts = list(shapely.points(lon, lat))
    bl = rng.uniform(x0 + 0.01, x0 + span - 0.02, n_boxes)
    bb = rng.uniform(y0 + 0.01, y0 + span - 0.02, n_boxes)
    boxes = list(shapely.box(bl, bb, bl + 0.004, bb + 0.003))
    classes = list(rng.choice(["car", "truck"], n_points)) + list(rng.choice(["bus", "car"], n_boxes))
    return dets_from(pts + boxes, classes)


def read_spec(path) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="geodetect-map">(.*?)</script>', text, re.S)
    assert m, "the map has no embedded data block"
    return json.loads(m.group(1))


def layers(spec) -> dict:
    return {lay["id"]: lay for lay in spec["config"]["config"]["visState"]["layers"]}


def dataset(spec, did) -> dict:
    (d,) = [d for d in spec["datasets"] if d["id"] == did]
    return d


def rows_of(d) -> list[dict]:
    if d["format"] == "rows":
        return [dict(zip(d["data"]["fields"], r)) for r in d["data"]["rows"]]
    return [f["properties"] for f in d["data"]["features"]]


def to_kepler(*a, **k):
    from geodetect.viz import to_kepler as f

    return f(*a, **k)


# --------------------------------------------------------------------------- the HTML and its config


def test_map_embeds_the_data_and_a_config_with_every_layer(tmp_path):
    dets = toy()
    regions = grid_regions()
    out = to_kepler(dets, tmp_path / "map.html", regions=regions, by="fips", hexbins=7)
    assert out == tmp_path / "map.html" and out.exists()
    spec = read_spec(out)
    meta = spec["meta"]
    assert meta["detections"] == meta["shown"] == 150 and not meta["sampled"]
    assert meta["classes"] == ["bus", "car", "truck"] and meta["mode"] == "online"

    lay = layers(spec)
    assert [lay_id for lay_id in lay] == ["detections", "detection_shapes", "heatmap", "h3", "regions"]
    assert spec["config"]["config"]["visState"]["layerOrder"] == list(lay)
    # detections by class: a point layer for points, a polygon (geojson) layer for boxes
    assert lay["detections"]["type"] == "point"
    assert lay["detections"]["config"]["columns"] == {"lat": "lat", "lng": "lon", "altitude": None}
    assert lay["detection_shapes"]["type"] == "geojson"
    for lid in ("detections", "detection_shapes"):
        vc = lay[lid]["visualChannels"]
        assert vc["colorField"] == {"name": "class_name", "type": "string"} and vc["colorScale"] == "customOrdinal"
        cmap = dict(map(tuple, lay[lid]["config"]["visConfig"]["colorRange"]["colorMap"]))
        assert cmap == meta["class_colors"]  # the same colour for a class in every layer (and in quicklooks)
    assert lay["heatmap"]["type"] == "heatmap" and lay["heatmap"]["config"]["dataId"] == "detection_centres"
    assert lay["h3"]["config"]["dataId"] == "h3_cells" and lay["h3"]["visualChannels"]["colorField"]["name"] == "count"
    assert lay["regions"]["visualChannels"]["colorField"]["name"] == "count"
    # no Mapbox token needed: a free CARTO style (or none)
    assert spec["config"]["config"]["mapStyle"]["styleType"] == "dark-matter"
    assert "mapbox://" not in out.read_text()

    pts = rows_of(dataset(spec, "detections"))
    shapes = dataset(spec, "detection_shapes")
    assert len(pts) == 120 and len(shapes["data"]["features"]) == 30
    assert {f["geometry"]["type"] for f in shapes["data"]["features"]} == {"Polygon"}
    assert sorted({p["class_name"] for p in pts}) == ["car", "truck"]
    # every detection has its region (the analytics' border rule) for the tooltip
    assert all(p["region"] in set(regions["fips"]) for p in pts)
    tips = spec["config"]["config"]["visState"]["interactionConfig"]["tooltip"]["fieldsToShow"]
    assert [f["name"] for f in tips["detections"]][:5] == ["class_name", "score", "region", "region_name", "detector"]
    assert {"fips", "name", "count", "density_per_km2"} <= {f["name"] for f in tips["regions"]}

    # H3 counts (geodetect.analytics.heatmap) and region counts (geodetect.aggregate) add up to every detection
    cells = rows_of(dataset(spec, "h3_cells"))
    assert sum(c["count"] for c in cells) == 150 and meta["h3_resolution"] == 7
    regs = rows_of(dataset(spec, "regions"))
    assert len(regs) == 9 and sum(r["count"] for r in regs) == 150
    from geodetect.analytics import aggregate

    agg = aggregate(dets, regions, by="fips", engine="geopandas").groupby("fips")["count"].sum()
    assert {r["fips"]: r["count"] for r in regs} == agg.to_dict()
    assert all(r["count_bus"] + r["count_car"] + r["count_truck"] == r["count"] for r in regs)


def test_view_is_fitted_to_the_data(tmp_path):
    from geodetect.viz.kepler import _merc_y

    wide = to_kepler(toy(span=0.9), tmp_path / "wide.html", hexbins=None)
    tight = to_kepler(toy(span=0.05, x0=-122.3, y0=37.7), tmp_path / "tight.html", hexbins=None)
    for path, (w, s, e, n) in ((wide, (-122.6, 37.2, -121.7, 38.1)), (tight, (-122.3, 37.7, -122.25, 37.75))):
        spec = read_spec(path)
        ms = spec["config"]["config"]["mapState"]
        bw, bs, be, bn = spec["meta"]["bounds"]
        assert w - 1e-9 <= bw < be <= e + 1e-9 and s - 1e-9 <= bs < bn <= n + 1e-9
        assert bw < ms["longitude"] < be and bs < ms["latitude"] < bn
        # the whole box fits in a 1000 x 700 px view at that zoom (512 px tiles), and not much more
        world = 512 * 2 ** ms["zoom"]
        px_w = (be - bw) / 360 * world
        px_h = abs(float(_merc_y(bs) - _merc_y(bn))) * world
        assert px_w <= 1000 and px_h <= 700
        assert max(px_w / 1000, px_h / 700) > 0.5
    assert read_spec(tight)["config"]["config"]["mapState"]["zoom"] > read_spec(wide)["config"]["config"]["mapState"]["zoom"] + 3


def test_antimeridian_data_gets_a_view_the_short_way_round(tmp_path):
    rng = np.random.default_rng(3)
    lon = np.concatenate([rng.uniform(178.5, 179.99, 40), rng.uniform(-179.99, -178.0, 40)])
    lat = rng.uniform(51.0, 52.5, 80)
    dets = dets_from(shapely.points(lon, lat), ["adult"] * 40 + ["pup"] * 40)
    reg = gpd.GeoDataFrame({"fips": ["02016"]}, geometry=[shapely.MultiPolygon([
        shapely.box(178.0, 50.5, 180.0, 53.0), shapely.box(-180.0, 50.5, -177.5, 53.0)])], crs=4326)
    spec = read_spec(to_kepler(dets, tmp_path / "aleutians.html", regions=reg, hexbins=5))
    meta, ms = spec["meta"], spec["config"]["config"]["mapState"]
    assert meta["antimeridian"] is True
    w, s, e, n = meta["bounds"]
    assert e > 180 and e - w < 4  # ~3.5 degrees wide, not 358
    assert abs(abs(ms["longitude"]) - 180) < 2 and ms["zoom"] > 5
    # everything drawn in one continuous longitude range around the view centre
    pts = dataset(spec, "detections")
    assert pts["format"] == "geojson" and layers(spec)["detections"]["type"] == "geojson"
    xs = np.array([f["geometry"]["coordinates"][0] for f in pts["data"]["features"]])
    assert xs.max() - xs.min() < 4
    assert np.all(np.abs(xs - ms["longitude"]) < 3)
    reg_xy = shapely.get_coordinates(shapely.from_geojson(json.dumps(dataset(spec, "regions")["data"]["features"][0]["geometry"])))
    assert reg_xy[:, 0].max() - reg_xy[:, 0].min() < 6
    assert sum(r["count"] for r in rows_of(dataset(spec, "regions"))) == 80  # the region counts all of them
    assert {r["region"] for r in rows_of(pts)} == {"02016"}
    assert any("antimeridian" in note for note in meta["notes"])


def test_fit_view_plain_and_crossing():
    from geodetect.viz.kepler import fit_view

    v = fit_view([-10.0, 10.0], [-5.0, 5.0])
    assert not v.crosses and v.longitude == 0 and abs(v.latitude) < 1e-6
    v = fit_view([170.0, -170.0], [0.0, 1.0])
    assert v.crosses and v.bounds[0] == 170.0 and v.bounds[2] == 190.0 and abs(abs(v.longitude) - 180) < 1e-6
    v = fit_view([], [])
    assert v.zoom == 1.0
    v = fit_view([5.0], [45.0])  # a single detection: zoomed in, capped
    assert v.zoom == 15.0 and v.longitude == 5.0


def test_size_guard_samples_and_aggregates_and_says_so(tmp_path):
    dets = toy(n_points=300, n_boxes=0)
    regions = grid_regions()
    with pytest.warns(UserWarning, match=r"300 detections exceed max_features=50.*sample of 50"):
        out = to_kepler(dets, tmp_path / "big.html", regions=regions, hexbins=6, max_features=50, seed=7)
    spec = read_spec(out)
    meta = spec["meta"]
    assert meta["sampled"] and meta["detections"] == 300 and meta["shown"] == 50 and meta["sample_seed"] == 7
    assert "sample" in meta["notes"][0]
    text = out.read_text()
    assert re.search(r"<title>[^<]*sample of 50[^<]*</title>", text)
    assert 'id="geodetect-note"' in text and "max_features=50" in text
    shown = rows_of(dataset(spec, "detections"))
    assert len(shown) == 50
    # the aggregates count all 300, not the sample
    assert sum(c["count"] for c in rows_of(dataset(spec, "h3_cells"))) == 300
    assert sum(r["count"] for r in rows_of(dataset(spec, "regions"))) == 300
    # the heatmap is drawn from the H3 counts, weighted, so it still shows every detection
    heat = layers(spec)["heatmap"]
    assert heat["config"]["dataId"] == "h3_cells" and heat["visualChannels"]["weightField"]["name"] == "count"
    # deterministic: same seed -> same sample; another seed -> another sample
    with pytest.warns(UserWarning):
        again = read_spec(to_kepler(dets, tmp_path / "again.html", hexbins=6, max_features=50, seed=7))
        other = read_spec(to_kepler(dets, tmp_path / "other.html", hexbins=6, max_features=50, seed=8))

    def key(s):
        return [(round(r["lon"], 6), round(r["lat"], 6)) for r in rows_of(dataset(s, "detections"))]

    assert key(again) == key(spec) and key(other) != key(spec)
    # under the threshold: no sampling, no note, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small = to_kepler(dets, tmp_path / "small.html", hexbins=6, max_features=300)
    assert not read_spec(small)["meta"]["sampled"] and 'id="geodetect-note"' not in small.read_text()


def test_too_many_h3_cells_are_coarsened(tmp_path):
    dets = toy(n_points=200, n_boxes=0)
    with pytest.warns(UserWarning, match="max_features"):
        spec = read_spec(to_kepler(dets, tmp_path / "m.html", hexbins=9, max_features=20))
    assert spec["meta"]["h3_resolution"] < 9 and spec["meta"]["h3_cells"] <= 20
    assert sum(c["count"] for c in rows_of(dataset(spec, "h3_cells"))) == 200
    assert any("coarsened" in n for n in spec["meta"]["notes"])


def test_geometry_column_not_called_geometry_and_a_second_geometry_column(tmp_path):
    base = toy(n_points=20, n_boxes=10)
    frame = pd.DataFrame(base.drop(columns="geometry"))
    frame["geom"] = base.geometry.values
    frame["footprint"] = gpd.GeoSeries(shapely.buffer(np.asarray(base.geometry.values), 0.001), crs=4326).values
    dets = gpd.GeoDataFrame(frame, geometry="geom", crs=4326)
    assert dets.geometry.name == "geom"
    spec = read_spec(to_kepler(dets, tmp_path / "g.html", hexbins=None))
    meta = spec["meta"]
    assert meta["geometry_column"] == "geom" and meta["wkt_columns"] == ["footprint"]
    assert any("WKT" in n for n in meta["notes"])
    pts = rows_of(dataset(spec, "detections"))
    assert len(pts) == 20 and pts[0]["footprint_wkt"].startswith("POLYGON")
    assert "geom" not in pts[0] and "footprint" not in pts[0]
    feats = dataset(spec, "detection_shapes")["data"]["features"]
    assert len(feats) == 10 and feats[0]["geometry"]["type"] == "Polygon"
    # no active geometry at all: a clear error
    with pytest.raises(ConfigError, match="active geometry"):
        to_kepler(gpd.GeoDataFrame(pd.DataFrame(base.drop(columns="geometry"))), tmp_path / "x.html")


def test_projected_detections_and_extra_columns_are_exported_in_lon_lat(tmp_path):
    utm = toy(n_points=10, n_boxes=0).to_crs(32610)
    utm["when"] = pd.Timestamp("2024-05-01T12:00:00")
    utm["tags"] = [["a"]] * 10  # not JSON-able as such: exported as text
    utm["score_nan"] = np.nan
    spec = read_spec(to_kepler(utm, tmp_path / "utm.html", hexbins=None))
    pts = rows_of(dataset(spec, "detections"))
    assert all(-123 < p["lon"] < -121 and 37 < p["lat"] < 39 for p in pts)
    assert pts[0]["when"].startswith("2024-05-01T12:00:00") and pts[0]["tags"] == "['a']" and pts[0]["score_nan"] is None


def test_regions_without_by_use_an_id_column_and_density(tmp_path):
    spec = read_spec(to_kepler(toy(), tmp_path / "d.html", regions=grid_regions(), hexbins=None,
                               choropleth="density", heatmap=False))
    assert spec["meta"]["regions"] == {"by": "fips", "name_col": "name", "count": 9, "choropleth": "density"}
    lay = layers(spec)
    assert "heatmap" not in lay and "h3" not in lay
    assert lay["regions"]["visualChannels"]["colorField"] == {"name": "density_per_km2", "type": "real"}
    regs = rows_of(dataset(spec, "regions"))
    for r in regs:
        assert r["density_per_km2"] == pytest.approx(r["count"] / r["region_area_km2"])


def test_regions_file_and_detections_file(tmp_path):
    from geodetect.frames import write

    dets_path = write(toy(), tmp_path / "dets.parquet")
    grid_regions().to_file(tmp_path / "regions.geojson")
    spec = read_spec(to_kepler(dets_path, tmp_path / "f.html", regions=tmp_path / "regions.geojson", by="fips"))
    assert spec["meta"]["detections"] == 150 and spec["meta"]["regions"]["count"] == 9


def test_no_detections_still_makes_a_map_of_the_regions(tmp_path):
    from geodetect.frames import empty_detections

    spec = read_spec(to_kepler(empty_detections(), tmp_path / "e.html", regions=grid_regions()))
    assert spec["meta"]["detections"] == 0
    assert list(layers(spec)) == ["regions"]
    ms = spec["config"]["config"]["mapState"]
    assert -122.6 < ms["longitude"] < -121.7 and 37.2 < ms["latitude"] < 38.1


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"path": "map.png"}, ConfigError, r"\.html"),
        ({"hexbins": 16}, ConfigError, "hexbins"),
        ({"max_features": 0}, ConfigError, "max_features"),
        ({"choropleth": "area"}, ConfigError, "choropleth"),
        ({"basemap": "mapbox-streets"}, ConfigError, "basemap"),
        ({"by": "fips"}, ConfigError, "regions="),
        ({"regions": "REGIONS", "by": "nope"}, ConfigError, "no column 'nope'.*fips"),
        ({"regions": "MISSING"}, GeodetectError, "no such file"),
    ],
)
def test_bad_arguments_are_one_line_errors(tmp_path, kwargs, err, match):
    grid_regions().to_file(tmp_path / "regions.geojson")
    kwargs = dict(kwargs)
    path = tmp_path / kwargs.pop("path", "map.html")
    if kwargs.get("regions") == "REGIONS":
        kwargs["regions"] = tmp_path / "regions.geojson"
    elif kwargs.get("regions") == "MISSING":
        kwargs["regions"] = tmp_path / "missing.geojson"
    with pytest.raises(err, match=match) as e:
        to_kepler(toy(20, 0), path, **kwargs)
    assert "\n" not in str(e.value)
    assert not path.exists() and not list(tmp_path.glob(".*tmp*"))


def test_detections_without_crs_or_class_are_refused(tmp_path):
    d = toy(5, 0)
    with pytest.raises(ConfigError, match="no CRS"):
        to_kepler(d.set_crs(None, allow_override=True), tmp_path / "a.html")
    with pytest.raises(ConfigError, match="class_name"):
        to_kepler(d.drop(columns="class_name"), tmp_path / "a.html")
    with pytest.raises(ConfigError, match="GeoDataFrame"):
        to_kepler([1, 2], tmp_path / "a.html")


def test_data_cannot_break_out_of_the_script_element(tmp_path):
    d = toy(3, 0)
    d["note"] = ["</script><script>alert(1)</script>", "<!--", "ok"]
    out = to_kepler(d, tmp_path / "x.html", hexbins=None)
    text = out.read_text()
    assert "<script>alert(1)" not in text and text.count("</script>") == text.count("<script")
    assert rows_of(dataset(read_spec(out), "detections"))[0]["note"] == "</script><script>alert(1)</script>"


def test_write_is_atomic_and_output_errors_are_clear(tmp_path, monkeypatch):
    out = tmp_path / "m.html"
    out.write_text("old map")
    import geodetect.viz.kepler as kmod

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kmod.os, "replace", boom)
    with pytest.raises(OutputError, match="m.html.*No space left"):
        to_kepler(toy(5, 0), out, hexbins=None)
    assert out.read_text() == "old map" and not list(tmp_path.glob(".*tmp*"))
    monkeypatch.undo()
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(OutputError, match="is a directory"):
        to_kepler(toy(5, 0), tmp_path / "dir.html")


# --------------------------------------------------------------------------- assets: online pins, offline inlining


def test_online_map_references_exactly_the_pinned_versions_with_integrity(tmp_path):
    from geodetect.viz.assets import ASSETS, KEPLER_GL_VERSION

    text = to_kepler(toy(5, 0), tmp_path / "o.html", hexbins=None).read_text()
    urls = re.findall(r'(?:src|href)="(https://[^"]+)"', text)
    assert urls == [a.url for a in ASSETS if a.kind == "css"] + [a.url for a in ASSETS if a.kind == "js"]
    assert all(re.match(r"https://unpkg\.com/[a-z.@/-]+@\d+\.\d+\.\d+/", u) for u in urls)  # exact versions, no ranges
    for a in ASSETS:
        assert f'integrity="{a.integrity}"' in text
    assert f"https://unpkg.com/kepler.gl@{KEPLER_GL_VERSION}/umd/keplergl.min.js" in urls
    # nothing else is loaded from anywhere (no esm.sh, jspm, fonts...)
    assert set(re.findall(r'(?:src|href)="([a-z]+:)', text)) == {"https:"}


def test_pinned_versions_match_tests_browser_package_json():
    from geodetect.viz.assets import ASSETS

    pkg = json.loads((BROWSER / "package.json").read_text())
    pinned = dict(pkg["dependencies"])
    pinned.update({k: v["version"] for k, v in pkg["geodetect"]["packs"].items()})
    for a in ASSETS:
        assert pinned[a.package] == a.version, a.package
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned[a.package])
    lock = json.loads((BROWSER / "package-lock.json").read_text())
    for name in pkg["dependencies"]:
        assert lock["packages"][f"node_modules/{name}"]["version"] == pkg["dependencies"][name]


def _fake_assets(text_for=lambda a: None):
    from geodetect.viz.assets import ASSETS

    out = {}
    for a in ASSETS:
        t = text_for(a)
        if t is None:
            t = f"/* {a.package}@{a.version} {a.path} */ window.__fake = (window.__fake || 0) + 1;" if a.kind == "js" \
                else f"/* {a.package} */ .x {{ color: red; }}"
        out[a] = t.encode()
    return out


def gz_blocks(text) -> dict:
    """The gzipped + base64 asset blocks of an offline map, decoded: {asset name: bytes}."""
    import base64
    import gzip

    return {m.group(1): gzip.decompress(base64.b64decode(re.sub(r"\s+", "", m.group(2))))
            for m in re.finditer(r'<script type="application/x-geodetect-gzip-base64" data-asset="([^"]+)">(.*?)</script>',
                                 text, re.S)}


def test_offline_map_inlines_every_asset_and_references_no_url(tmp_path, monkeypatch):
    import base64

    import geodetect.viz.assets as amod

    def text_for(a):
        if a.package == "redux":
            return "var s = '</script>';"  # would end its <script> element early
        if a.package == "maplibre-gl":
            return ".x::after { content: '</style>'; }"
        return None

    fake = _fake_assets(text_for)
    monkeypatch.setattr(amod, "find_assets", lambda assets=None, verify=True: fake)
    out = to_kepler(toy(10, 5), tmp_path / "off.html", offline=True)
    text = out.read_text()
    assert not re.search(r'(?:src|href)="https?:', text) and "unpkg.com/" not in text.split('id="geodetect-map"')[0]
    by_name = {f"{a.package}@{a.version}/{a.path}": a for a in fake}
    blocks = gz_blocks(text)  # every JS asset, gzipped, in load order; a loader runs them one after the other
    assert list(blocks) == [n for n, a in by_name.items() if a.kind == "js"]
    assert all(blocks[n] == fake[by_name[n]] for n in blocks)
    assert f"<!-- kepler.gl@3.2.6/umd/keplergl.min.css -->" in text and fake[
        by_name["kepler.gl@3.2.6/umd/keplergl.min.css"]].decode() in text  # CSS verbatim
    css = fake[by_name["maplibre-gl@3.6.2/dist/maplibre-gl.css"]]
    assert f'href="data:text/css;base64,{base64.b64encode(css).decode()}"' in text
    assert "window.__geodetectAssets" in text  # the loader that inflates the gzipped blocks
    # load order: CSS, the jsx shim, react, react-dom, redux, react-redux, styled-components, kepler.gl, loader
    order = [text.index(k) for k in ("maplibre-gl", "<!-- kepler.gl@3.2.6/umd/keplergl.min.css", "react/jsx-runtime",
                                     'data-asset="react@', 'data-asset="react-dom@', 'data-asset="redux@',
                                     'data-asset="react-redux@', 'data-asset="styled-components@',
                                     'data-asset="kepler.gl@', "window.__geodetectAssets =")]
    assert order == sorted(order)
    assert read_spec(out)["meta"]["mode"] == "offline"


def test_offline_without_assets_fails_first_with_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("GEODETECT_KEPLER_ASSETS", str(tmp_path / "empty"))
    with pytest.raises(MissingDependencyError) as e:
        to_kepler(toy(5, 0), tmp_path / "off.html", offline=True)
    msg = str(e.value)
    assert "\n" not in msg and "scripts/install_browser_deps.sh" in msg and str(tmp_path / "empty") in msg
    assert "GEODETECT_KEPLER_ASSETS" in msg and not (tmp_path / "off.html").exists()
    # a stale version is named as such
    root = tmp_path / "nm"
    (root / "maplibre-gl" / "dist").mkdir(parents=True)
    (root / "maplibre-gl" / "package.json").write_text('{"version": "3.0.0"}')
    (root / "maplibre-gl" / "dist" / "maplibre-gl.css").write_text("x")
    with pytest.raises(MissingDependencyError, match=r"maplibre-gl@3\.0\.0.*needs maplibre-gl@3\.6\.2"):
        to_kepler(toy(5, 0), tmp_path / "off.html", offline=True, assets=root)
    # altered bytes are refused
    (root / "maplibre-gl" / "package.json").write_text('{"version": "3.6.2"}')
    with pytest.raises(MissingDependencyError, match="integrity"):
        to_kepler(toy(5, 0), tmp_path / "off.html", offline=True, assets=root)


def _assets_installed() -> bool:
    from geodetect.viz.assets import ASSETS, default_assets_dir

    return all((default_assets_dir() / a.package / a.path).is_file() for a in ASSETS)


@pytest.mark.skipif(not _assets_installed(), reason="browser assets not installed: run scripts/install_browser_deps.sh")
def test_offline_map_with_the_installed_assets(tmp_path):
    from geodetect.viz.assets import ASSETS, find_assets

    found = find_assets()  # checks each file's pinned sha384
    assert {a.package for a in found} == {a.package for a in ASSETS}
    out = to_kepler(toy(10, 5), tmp_path / "off.html", offline=True)
    text = out.read_text()
    assert not re.search(r'(?:src|href)="https?:', text)
    blocks = gz_blocks(text)  # the JS, gzipped (kepler.gl: 15 MB -> ~5.2 MB of base64); the CSS verbatim
    for a in ASSETS:
        name = f"{a.package}@{a.version}/{a.path}"
        assert blocks[name] == found[a] if a.kind == "js" else found[a].decode() in text
    assert 4_000_000 < out.stat().st_size < 8_000_000


# --------------------------------------------------------------------------- Spark: aggregate there, never collect


@pytest.mark.slow
def test_spark_dataframe_is_aggregated_on_spark_and_only_a_sample_collected(spark, tmp_path, monkeypatch):
    dets = toy(n_points=400, n_boxes=40)
    regions = grid_regions()
    rows = [(str(d), str(v), str(s), str(c), float(sc), bytes(w), float(a)) for d, v, s, c, sc, w, a in zip(
        dets["detector"], dets["detector_version"], dets["scene_id"], dets["class_name"], dets["score"],
        shapely.to_wkb(np.asarray(dets.geometry.values, dtype=object)), dets["area_m2"])]
    sdf = spark.createDataFrame(rows, "detector string, detector_version string, scene_id string, class_name string, "
                                      "score float, geometry binary, area_m2 double")
    collected = []  # rows of every table brought to the driver
    cls = type(sdf)
    real_pandas, real_collect = cls.toPandas, cls.collect

    def spy_pandas(self):
        out = real_pandas(self)
        collected.append(len(out))
        return out

    def spy_collect(self):
        out = real_collect(self)
        collected.append(len(out))
        return out

    monkeypatch.setattr(cls, "toPandas", spy_pandas)
    monkeypatch.setattr(cls, "collect", spy_collect)
    with pytest.warns(UserWarning, match="max_features=100"):
        out = to_kepler(sdf, tmp_path / "spark.html", regions=regions, by="fips", hexbins=7, max_features=100)
    spec = read_spec(out)
    meta = spec["meta"]
    assert meta["source"] == "Spark DataFrame" and meta["detections"] == 440 and meta["sampled"]
    # nothing bigger than 4 x max_features rows (the H3 cell x class counts, before coarsening) reached the driver
    assert meta["shown"] <= 100 and max(collected) <= 4 * 100
    assert sum(c["count"] for c in rows_of(dataset(spec, "h3_cells"))) == 440
    with pytest.warns(UserWarning, match="max_features=100"):  # same aggregates as the GeoDataFrame path
        local = read_spec(to_kepler(dets, tmp_path / "local.html", regions=regions, by="fips", hexbins=7,
                                    max_features=100))
    assert meta["h3_resolution"] == local["meta"]["h3_resolution"] < 7  # 300-odd cells coarsened to fit 100
    assert {r["fips"]: r["count"] for r in rows_of(dataset(spec, "regions"))} == \
        {r["fips"]: r["count"] for r in rows_of(dataset(local, "regions"))}
    assert sorted((c["h3_cell"], c["count"]) for c in rows_of(dataset(spec, "h3_cells"))) == \
        sorted((c["h3_cell"], c["count"]) for c in rows_of(dataset(local, "h3_cells")))


# --------------------------------------------------------------------------- quicklooks


def write_scene(path, w=300, h=200, bands=3, crs="EPSG:32610", seed=0, dtype="uint16"):
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    arr = (rng.normal(1000, 50, (bands, h, w))).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=dtype, crs=crs,
                       transform=from_origin(500000, 4200000, 1.0, 1.0)) as dst:
        dst.write(arr)
    return path


def png(path):
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def scene_dets(crs="EPSG:32610"):
    """Two points and two boxes in the scene of write_scene (pixel (c, r) = (500000 + c, 4200000 - r))."""
    pts = [shapely.Point(500000 + 60.5, 4200000 - 120.5), shapely.Point(500000 + 200.5, 4200000 - 50.5)]
    boxes = [shapely.box(500000 + 100, 4200000 - 180, 500000 + 140, 4200000 - 150),
             shapely.box(500000 + 230, 4200000 - 160, 500000 + 280, 4200000 - 100)]
    d = dets_from(pts + boxes, ["seal", "seal", "rock", "rock"], crs=crs)
    return d.to_crs(4326)


def test_quicklook_png_size_and_detections_drawn(tmp_path):
    pytest.importorskip("matplotlib")
    from geodetect.frames import empty_detections
    from geodetect.viz import quicklook
    from geodetect.viz._style import class_colors, hex_to_rgb

    scene = write_scene(tmp_path / "scene.tif")
    dets = scene_dets()
    a = quicklook(scene, dets, tmp_path / "dets.png")
    b = quicklook(scene, empty_detections(), tmp_path / "plain.png")
    ia, ib = png(a), png(b)
    assert ia.shape == ib.shape == (200, 300, 3)
    diff = np.abs(ia - ib).sum(axis=2) > 30
    # where the detections are, the pictures differ: markers on the points, outlines on the boxes
    for c, r in ((60, 120), (200, 50)):
        assert diff[r - 2:r + 3, c - 2:c + 3].any()
    assert diff[150, 100:141].mean() > 0.5 and diff[165:175, 120].sum() == 0  # outline, interior left as is
    # far from any detection, the legend and the caption, nothing changed
    assert not diff[60:100, 5:40].any()
    # class colours are the maps' colours
    col = np.array(hex_to_rgb(class_colors(["seal", "rock"])["rock"]))
    assert (np.abs(ia[150, 100:141] - col).sum(axis=1) < 60).mean() > 0.5


def test_quicklook_reads_decimated_and_picks_bands(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import rasterio

    from geodetect.viz import quicklook

    scene = write_scene(tmp_path / "wide.tif", w=3000, h=500, bands=4)
    shapes = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *a, **k):
        shapes.append(k.get("out_shape"))
        return real_read(self, *a, **k)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    out = quicklook(scene, scene_dets(), tmp_path / "wide.png", bands="4,3,2", max_size=600)
    assert png(out).shape == (100, 600, 3)
    assert shapes == [(3, 100, 600)]  # one decimated read, never the full 3000 x 500
    out = quicklook(scene, scene_dets(), tmp_path / "grey.png", bands=(2,), max_size=600)
    g = png(out)
    assert (g[80:95, 5:40, 0] == g[80:95, 5:40, 1]).all()  # grey


def test_quicklook_fills_classification_footprints(tmp_path):
    pytest.importorskip("matplotlib")
    from geodetect.frames import empty_detections
    from geodetect.viz import quicklook
    from geodetect.viz.quicklook import _looks_like_tiles

    scene = write_scene(tmp_path / "scene.tif")
    tiles = [shapely.box(500000 + x, 4200000 - y - 50, 500000 + x + 50, 4200000 - y) for x in range(0, 300, 50)
             for y in range(0, 200, 50)]
    d = dets_from(tiles, ["water" if i % 3 == 0 else "land" for i in range(len(tiles))], crs="EPSG:32610")
    assert _looks_like_tiles(np.asarray(tiles, dtype=object))
    assert not _looks_like_tiles(np.asarray(list(scene_dets(crs="EPSG:32610").to_crs(32610).geometry[2:]), dtype=object))
    a = png(quicklook(scene, d, tmp_path / "tiles.png", legend=False, title=""))
    b = png(quicklook(scene, empty_detections(), tmp_path / "plain.png", legend=False, title=""))
    diff = np.abs(a - b).sum(axis=2) > 20
    assert diff[10:40, 10:40].mean() > 0.9  # tile interiors tinted
    o = png(quicklook(scene, d, tmp_path / "outlines.png", legend=False, title="", fill=False))
    assert (np.abs(o - b).sum(axis=2) > 20)[10:40, 10:40].mean() < 0.05


def test_quicklook_errors(tmp_path):
    pytest.importorskip("matplotlib")
    from geodetect.errors import BandError, GeoreferenceError, RasterReadError
    from geodetect.viz import quicklook

    scene = write_scene(tmp_path / "scene.tif")
    with pytest.raises(RasterReadError, match="missing.tif: no such file"):
        quicklook(tmp_path / "missing.tif", scene_dets(), tmp_path / "a.png")
    with pytest.raises(BandError, match="1 band .* or 3 bands"):
        quicklook(scene, scene_dets(), tmp_path / "a.png", bands="1,2")
    with pytest.raises(BandError, match="band 5"):
        quicklook(scene, scene_dets(), tmp_path / "a.png", bands="5,2,1")
    with pytest.raises(ConfigError, match=r"\.png"):
        quicklook(scene, scene_dets(), tmp_path / "a.jpg")
    nocrs = write_scene(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(GeoreferenceError, match="no CRS"):
        quicklook(nocrs, scene_dets(), tmp_path / "a.png")
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*tmp*"))


def test_quicklook_write_is_atomic(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from geodetect.viz import quicklook

    scene = write_scene(tmp_path / "scene.tif")
    out = tmp_path / "q.png"
    out.write_bytes(b"old")

    def boom(self, fname, **k):
        Path(fname).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(OutputError, match="q.png.*No space left"):
        quicklook(scene, scene_dets(), out)
    assert out.read_bytes() == b"old" and not list(tmp_path.glob(".*tmp*"))


def test_quicklook_counts_bar_chart(tmp_path):
    pytest.importorskip("matplotlib")
    from geodetect.analytics import aggregate
    from geodetect.viz import quicklook_counts

    counts = aggregate(toy(), grid_regions(), by="fips", engine="geopandas")
    out = quicklook_counts(counts, tmp_path / "bars.png", top=5)
    img = png(out)
    assert img.shape[1] == 900 and img.shape[0] == int(round((1.6 + 0.28 * 5) * 100))
    counts.to_csv(tmp_path / "counts.csv", index=False)
    assert png(quicklook_counts(tmp_path / "counts.csv", tmp_path / "bars2.png")).shape[0] > img.shape[0]
    with pytest.raises(ConfigError, match="class_name"):
        quicklook_counts(counts.drop(columns="class_name"), tmp_path / "x.png")
    with pytest.raises(ConfigError, match="no such file"):
        quicklook_counts(tmp_path / "none.csv", tmp_path / "x.png")


# --------------------------------------------------------------------------- CLI


def run_cli(argv, capsys):
    """The viz subcommands through their register() hook, with the main CLI's error handling."""
    import argparse

    from geodetect import cli
    from geodetect._cli_viz import register

    parser = argparse.ArgumentParser(prog="geodetect")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except GeodetectError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=__import__("sys").stderr)
        code = cli.EXIT_ERROR
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_map_and_quicklook(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from geodetect.frames import write

    dets = write(toy(), tmp_path / "dets.parquet")
    grid_regions().to_file(tmp_path / "counties.geojson")
    code, _, err = run_cli(["map", str(dets), "--regions", str(tmp_path / "counties.geojson"), "--by", "fips",
                            "--out", str(tmp_path / "map.html"), "--hexbins", "6"], capsys)
    assert code == 0 and "wrote" in err and "online" in err
    spec = read_spec(tmp_path / "map.html")
    assert spec["meta"]["h3_resolution"] == 6 and spec["meta"]["regions"]["by"] == "fips"
    code, _, err = run_cli(["map", str(dets), "--out", str(tmp_path / "s.html"), "--max-features", "10",
                            "--no-hexbins"], capsys)
    assert code == 0 and "note:" in err and "sample of 10" in err
    code, _, err = run_cli(["map", str(dets), "--out", str(tmp_path / "s.html"), "--hexbins", "5", "--no-hexbins"],
                           capsys)
    assert code == 2 and err.startswith("error:") and err.count("\n") == 1

    scene = write_scene(tmp_path / "scene.tif")
    write(scene_dets(), tmp_path / "sd.geojson")
    code, _, err = run_cli(["quicklook", str(scene), str(tmp_path / "sd.geojson"), "--out",
                            str(tmp_path / "q.png"), "--bands", "3,2,1"], capsys)
    assert code == 0 and png(tmp_path / "q.png").shape == (200, 300, 3)
    code, _, err = run_cli(["quicklook", str(scene), "--out", str(tmp_path / "plain.png")], capsys)
    assert code == 0 and (tmp_path / "plain.png").exists()
    code, _, err = run_cli(["quicklook", str(tmp_path / "nope.tif"), str(tmp_path / "sd.geojson"), "--out",
                            str(tmp_path / "z.png")], capsys)
    assert code == 2 and "nope.tif" in err and err.count("\n") == 1 and not (tmp_path / "z.png").exists()

    from geodetect.analytics import aggregate

    aggregate(toy(), grid_regions(), by="fips", engine="geopandas").to_csv(tmp_path / "c.csv", index=False)
    code, _, err = run_cli(["quicklook-counts", str(tmp_path / "c.csv"), "--out", str(tmp_path / "bars.png")], capsys)
    assert code == 0 and (tmp_path / "bars.png").exists()


def test_cli_offline_without_assets_is_one_line(tmp_path, capsys, monkeypatch):
    from geodetect.frames import write

    monkeypatch.setenv("GEODETECT_KEPLER_ASSETS", str(tmp_path / "nothing"))
    dets = write(toy(5, 0), tmp_path / "dets.parquet")
    code, _, err = run_cli(["map", str(dets), "--out", str(tmp_path / "m.html"), "--offline"], capsys)
    assert code == 2 and err.count("\n") == 1 and "scripts/install_browser_deps.sh" in err
    assert not (tmp_path / "m.html").exists()


def test_cli_is_wired_into_geodetect_main(tmp_path, capsys):
    from geodetect import cli

    choices = cli._parser()._subparsers._group_actions[0].choices
    assert {"map", "quicklook", "quicklook-counts"} <= set(choices)  # wired: a missing command is a failure
    from geodetect.frames import write

    dets = write(toy(5, 0), tmp_path / "dets.parquet")
    assert cli.main(["map", str(dets), "--out", str(tmp_path / "m.html"), "--no-hexbins"]) == 0
    assert read_spec(tmp_path / "m.html")["meta"]["detections"] == 5


def test_import_geodetect_viz_stays_light():
    import subprocess
    import sys

    code = ("import sys, geodetect; before = set(sys.modules); import geodetect.viz, geodetect._cli_viz; "
            "new = set(sys.modules) - before; "
            "print(sorted(m for m in ('matplotlib', 'geopandas', 'pandas', 'rasterio', 'pyspark', 'keplergl', 'h3', "
            "'shapely', 'pyproj') if m in new))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
