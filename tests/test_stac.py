"""STAC Items and ItemCollections as scenes: a static catalogue written by pystac over the real Landsat scene
(San Francisco Bay, in the localtileserver package) split into single-band COGs."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

import geodetect as gd
from geodetect.errors import BandError

pystac = pytest.importorskip("pystac")

#: the Landsat file's bands, in order (tagged RGB in the file, they are not)
LANDSAT_BANDS = ("nir", "red", "green")
WHEN = dt.datetime(2001, 6, 15, 18, 30, tzinfo=dt.timezone.utc)


def _landsat_window(dst: Path, rows=(600, 1112), cols=(700, 1340)) -> str:
    from geodetect_plugins.water_segmenter.data import landsat_path, write_rows

    return write_rows(landsat_path(), dst, rows, cols)


def write_cog(src: str, dst: Path, band: int | None = None, decimate: int = 1) -> str:
    """A COG of one band (or all) of ``src``, optionally ``decimate`` times coarser."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(src) as ds:
        idx = [band] if band else list(range(1, ds.count + 1))
        h, w = ds.height // decimate, ds.width // decimate
        data = ds.read(idx, out_shape=(len(idx), h, w), resampling=Resampling.average)
        t = ds.transform * ds.transform.scale(ds.width / w, ds.height / h)
        prof = dict(driver="COG", width=w, height=h, count=len(idx), dtype=data.dtype, crs=ds.crs, transform=t,
                    blocksize=256, compress="deflate")
        with rasterio.open(dst, "w", **prof) as out:
            out.write(data)
    return str(dst)


def _item(item_id: str, assets: dict, when=WHEN, bbox=(-122.6, 37.4, -122.0, 37.9)) -> "pystac.Item":
    from shapely.geometry import box, mapping

    item = pystac.Item(item_id, mapping(box(*bbox)), list(bbox), when, {})
    for key, (href, bands) in assets.items():
        a = pystac.Asset(href, media_type=pystac.MediaType.COG, roles=["data"])
        a.extra_fields["eo:bands"] = [{"name": b.upper(), "common_name": b} for b in bands]
        item.add_asset(key, a)
    return item


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    """A self-contained static catalogue: item 'bay-split' (three single-band COGs), item 'bay-stacked'
    (one three-band COG), item 'bay-no-nir' (red and green only)."""
    root = tmp_path_factory.mktemp("stac")
    stacked = _landsat_window(root / "src" / "bay.tif")
    split = {b: write_cog(stacked, root / "src" / f"bay_{b}.tif", band=i + 1) for i, b in enumerate(LANDSAT_BANDS)}
    cat = pystac.Catalog("bay", "Landsat SF Bay, test catalogue")
    cat.add_item(_item("bay-split", {f"B_{b}": (split[b], [b]) for b in LANDSAT_BANDS}))
    cat.add_item(_item("bay-stacked", {"visual": (write_cog(stacked, root / "src" / "bay_cog.tif"), LANDSAT_BANDS)},
                       when=WHEN + dt.timedelta(days=16)))
    cat.add_item(_item("bay-no-nir", {f"B_{b}": (split[b], [b]) for b in ("red", "green")}))
    cat.normalize_hrefs(str(root / "catalog"))
    cat.make_all_asset_hrefs_relative()
    cat.save(pystac.CatalogType.SELF_CONTAINED)
    return {"root": root, "stacked": stacked, "catalog": root / "catalog" / "catalog.json",
            "items": {i.id: Path(i.get_self_href()) for i in cat.get_items(recursive=True)}}


def _same(a, b):
    import shapely

    assert len(a) == len(b) > 0
    ua, ub = shapely.union_all(a.geometry.values), shapely.union_all(b.geometry.values)
    assert ua.symmetric_difference(ub).area == pytest.approx(0.0, abs=1e-14)
    assert sorted(a.area_m2.round(3)) == sorted(b.area_m2.round(3))


def test_item_of_single_band_cogs_gives_the_stacked_file_detections(catalogue):
    item_json = catalogue["items"]["bay-split"]
    assert json.loads(item_json.read_text())["assets"]["B_nir"]["href"].startswith("../")  # relative hrefs
    got = gd.detect(str(item_json), detector="water-expert-optical", progress=False)  # no bands given
    want = gd.detect(catalogue["stacked"], detector="water-expert-optical", bands="nir=1,green=3", progress=False)
    _same(got, want)
    assert set(got.scene_id) == {"bay-split"}
    assert (got["datetime"] == WHEN).all() and str(got["datetime"].dt.tz) == "UTC"
    st = got.attrs["geodetect"][0]
    assert st["grid"] == (640, 512) and st["status"] == "ok" and st["path"] == str(item_json)


def test_pystac_objects_item_collection_and_multiband_asset(catalogue):
    cat = pystac.Catalog.from_file(str(catalogue["catalog"]))
    items = {i.id: i for i in cat.get_items(recursive=True)}
    ic = pystac.ItemCollection([items["bay-split"], items["bay-stacked"]])
    dets = gd.detect(ic, detector="water-expert-optical", progress=False)
    assert set(dets.scene_id) == {"bay-split", "bay-stacked"}
    by = {sid: g for sid, g in dets.groupby("scene_id")}
    _same(by["bay-split"], by["bay-stacked"])  # the three-band asset chosen by its eo:bands common names
    assert (by["bay-stacked"]["datetime"] == WHEN + dt.timedelta(days=16)).all()
    one = gd.detect(items["bay-stacked"], detector="water-expert-optical", progress=False)  # a single pystac Item
    _same(one, by["bay-stacked"])
    # an ItemCollection as a JSON file (asset hrefs made absolute: the file lives elsewhere)
    path = catalogue["root"] / "items.json"
    for i in ic:
        i.make_asset_hrefs_absolute()
    path.write_text(json.dumps(ic.to_dict(transform_hrefs=False)))
    assert set(gd.detect(str(path), detector="water-expert-optical", progress=False).scene_id) == {"bay-split",
                                                                                                   "bay-stacked"}


def test_assets_of_different_resolutions_are_stacked_on_the_finest_grid(catalogue, tmp_path):
    src = catalogue["root"] / "src"
    nir60 = write_cog(catalogue["stacked"], tmp_path / "nir60.tif", band=1, decimate=2)
    item = _item("bay-mixed", {"green": (str(src / "bay_green.tif"), ["green"]), "nir": (nir60, ["nir"])})
    dets = gd.detect(item, detector="water-expert-optical", progress=False)
    assert dets.attrs["geodetect"][0]["grid"] == (640, 512)  # the 30 m green band's grid; nir resampled to it
    want = gd.detect(catalogue["stacked"], detector="water-expert-optical", bands="nir=1,green=3", progress=False)
    a, b = dets.to_crs(3857).union_all(), want.to_crs(3857).union_all()
    assert a.intersection(b).area / a.union(b).area > 0.9  # the same water, nir at half the resolution


def test_missing_band_is_named(catalogue):
    with pytest.raises(BandError, match=r"no asset has a band named 'nir'.*the item's bands: green, red"):
        gd.detect(str(catalogue["items"]["bay-no-nir"]), detector="water-expert-optical", progress=False)


def test_detector_with_band_indexes_takes_names(catalogue):
    from geodetect.plugins import Detector, DetectorSpec, Mask, Task

    class Bright(Detector):
        spec = DetectorSpec(name="bright-by-index", version="1", task=Task.SEGMENTATION, classes=("bright",),
                            bands=(1, 2, 3), tile_size=128, overlap=16)

        def predict(self, tiles):
            return [Mask((t[..., :1] > 0.3).astype(np.float32)) for t in tiles]

    item = str(catalogue["items"]["bay-split"])
    with pytest.raises(BandError, match="bands by index.*--bands red,green,blue"):
        gd.detect(item, Bright, progress=False)
    a = gd.detect(item, Bright, bands="nir,red,green", progress=False)
    b = gd.detect(catalogue["stacked"], Bright, progress=False)
    _same(a, b)


def test_cli_detects_an_item_collection(catalogue, tmp_path, capsys):
    import geopandas as gpd

    from geodetect.cli import main

    items = [pystac.Item.from_file(str(catalogue["items"][k])) for k in ("bay-split", "bay-stacked")]
    for i in items:
        i.make_asset_hrefs_absolute()  # the collection file lives elsewhere than the items
    path = tmp_path / "items.json"
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))
    out = tmp_path / "water.parquet"
    assert main(["detect", str(path), "--detector", "water-expert-optical", "--out", str(out), "--no-progress"]) == 0
    dets = gpd.read_parquet(out)
    assert set(dets.scene_id) == {"bay-split", "bay-stacked"} and "datetime" in dets.columns
    # GeoJSON on stdout, with the datetime as ISO text
    capsys.readouterr()
    assert main(["detect", str(catalogue["items"]["bay-split"]), "--detector", "water-expert-optical",
                 "--no-progress", "-q"]) == 0
    feats = json.loads(capsys.readouterr().out)["features"]
    assert feats and feats[0]["properties"]["datetime"].startswith("2001-06-15 18:30:00")
    # a resumable run over the same collection: one part per item, the second run skips both
    run = str(tmp_path / "run") + "/"
    args = ["detect", str(path), "--detector", "water-expert-optical", "--out", run, "--no-progress"]
    assert main(args) == 0 and main(args + ["--resume"]) == 0
    assert len(gpd.read_parquet(tmp_path / "run" / "detections.parquet")) == len(dets)


@pytest.mark.slow
def test_spark_detect_on_stac_items_equals_gd_detect(spark, catalogue):
    """gds.detect takes what gd.detect takes: an item JSON file and a pystac ItemCollection, each item one scene
    (its bands stacked from single-band COGs on the workers), split in blocks, with the item's datetime."""
    gds = pytest.importorskip("geodetect.spark")
    import shapely

    from geodetect.stac import StacScene, scene_of_token
    from geodetect.testing import assert_detections_equal

    cat = pystac.Catalog.from_file(str(catalogue["catalog"]))
    items = {i.id: i for i in cat.get_items(recursive=True)}
    for scenes, ids in ((str(catalogue["items"]["bay-split"]), {"bay-split"}),
                        (pystac.ItemCollection([items["bay-split"], items["bay-stacked"]]), {"bay-split", "bay-stacked"})):
        units = gds.plan(scenes, "water-expert-optical", block_rows=1)
        assert {u[1] for u in units} == ids and len(units) > len(ids)  # each 640 x 512 item split in tile-row blocks
        assert all(isinstance(scene_of_token(u[0]), StacScene) for u in units)
        want = gd.detect(scenes, detector="water-expert-optical", progress=False)
        got = gds.to_geopandas(gds.detect(spark, scenes, "water-expert-optical", block_rows=1))
        assert set(got.scene_id) == ids
        for g in (got, want):  # polygons joined across block borders: same vertices, ring starts may differ
            g["geometry"] = shapely.normalize(g.geometry.values)
        assert_detections_equal(got, want, tolerance=0)
        assert dict(zip(got.scene_id, got["datetime"])) == dict(zip(want.scene_id, want["datetime"]))
        assert str(got["datetime"].dt.tz) == "UTC"
