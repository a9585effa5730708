"""STAC Items and ItemCollections as scenes: assets chosen by band name, single-band assets stacked on read.

``gd.detect`` takes, besides raster paths and URLs: a STAC Item or ItemCollection
as a JSON file or an ``http(s)://`` URL (``.json``), a ``pystac.Item``, a
``pystac.ItemCollection`` or a list of items, or the same as plain dicts. Each
item is one scene; its ``scene_id`` is the item id and its ``datetime`` is
carried into the detections as a column.

Bands are chosen by the names the detector asks for (``red``, ``green``, ``blue``,
``nir``, ``swir16``, ``vv``, ``vh``, ...) among the item's assets: an asset
band's ``eo:bands`` ``common_name`` or ``name`` (STAC 1.0), ``bands``
``eo:common_name`` or ``name`` (STAC 1.1), or, for a one-band asset without
band metadata, the asset's key. An asset holding several of the wanted bands is
preferred (one file read instead of several). The chosen bands are stacked into
one virtual raster (a GDAL VRT held in memory): tiles are windowed reads of each
asset, local or over HTTP, on the grid of the finest asset; coarser assets
(Sentinel-2's 20 m bands beside its 10 m ones) are resampled to it bilinearly.
A detector that wants bands by index (``1, 2, 3``) is given them by name with
``bands=("red", "green", "blue")`` (CLI ``--bands red,green,blue``).

An item that lacks a band is refused with a message naming the band and listing
the bands the item has. Assets of one item must share a CRS.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

from geodetect.errors import BandError, ConfigError, RasterReadError
from geodetect.io.remote import GDAL_HTTP_OPTIONS, check_url, gdal_path, is_remote, read_url

__all__ = ["StacScene", "expand_scenes", "scene_source", "with_item_columns", "item_vrt", "scene_token",
           "scene_of_token"]

_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".nc")


class StacScene(os.PathLike):
    """One STAC item as a scene: its id, datetime and assets (hrefs made absolute)."""

    def __init__(self, item: dict, base: str | None = None, label: str | None = None):
        self.item = item
        self.scene_id = str(item.get("id") or "item")
        props = item.get("properties") or {}
        self.datetime = props.get("datetime") or props.get("start_datetime")
        self.label = label or f"STAC item {self.scene_id}"
        self.assets = {k: dict(a, href=_absolute(a.get("href", ""), base)) for k, a in (item.get("assets") or {}).items()}

    def __fspath__(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"StacScene({self.scene_id!r})"

    def to_json(self) -> str:
        """The item as JSON with its asset hrefs absolute, and its label: :meth:`from_json` rebuilds the scene."""
        return json.dumps({"item": dict(self.item, assets=self.assets), "label": self.label}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "StacScene":
        d = json.loads(text)
        return cls(d["item"], None, d.get("label"))

    def band_table(self) -> dict[str, list[tuple[str, int]]]:
        """name -> [(asset key, 1-based band)] for every raster asset band of the item."""
        table: dict[str, list[tuple[str, int]]] = {}
        for key, a in self.assets.items():
            if not _is_raster(a):
                continue
            bands = a.get("eo:bands") or a.get("bands") or []
            if not bands and len(a.get("raster:bands") or [None]) == 1:
                bands = [{"name": key}]
            for i, b in enumerate(bands, start=1):
                if not isinstance(b, dict):
                    continue
                for n in {b.get("common_name"), b.get("eo:common_name"), b.get("name")}:
                    if n:
                        table.setdefault(str(n).lower(), []).append((key, i))
        return table

    def choose(self, names) -> list[tuple[str, int]]:
        """(asset key, band) for each wanted band name; BandError naming a band no asset has."""
        table = self.band_table()
        names = [str(n).lower() for n in names]
        missing = [n for n in names if n not in table]
        if missing:
            have = ", ".join(sorted(table)) or "none (no asset has eo:bands/raster:bands metadata)"
            raise BandError(
                f"{self.label}: no asset has a band named {', '.join(map(repr, missing))} (eo:bands or bands "
                f"common_name/name); the item's bands: {have}. Choose bands it has with --bands NAME,NAME,..."
            )
        cover = {}
        for n in names:
            for key, _ in table[n]:
                cover[key] = cover.get(key, 0) + 1
        out = []
        for n in names:  # the asset covering most wanted bands, then the first listed
            out.append(max(table[n], key=lambda kb: (cover[kb[0]], -list(self.assets).index(kb[0]))))
        return out


def _is_raster(asset: dict) -> bool:
    roles = asset.get("roles") or []
    if any(r in ("thumbnail", "overview", "metadata", "mlm:model") for r in roles) and "data" not in roles:
        return False
    t = str(asset.get("type", "")).lower()
    href = str(asset.get("href", "")).lower().split("?")[0]
    return "tiff" in t or "jp2" in t or href.endswith(_RASTER_SUFFIXES) or bool(asset.get("eo:bands") or asset.get("bands"))


def _absolute(href: str, base: str | None) -> str:
    if href.startswith("file://"):
        return href[len("file://"):]
    if "://" in href or href.startswith("/") or not base:
        return href
    if is_remote(base):
        from urllib.parse import urljoin

        return urljoin(base, href)
    return str((Path(base).parent / href).resolve())


def _from_dict(doc: dict, base: str | None, label: str | None) -> list[StacScene]:
    kind = doc.get("type")
    if kind == "Feature":
        return [StacScene(doc, base, label)]
    if kind == "FeatureCollection":
        return [StacScene(f, base, label and f"{label} (item {f.get('id')})") for f in doc.get("features") or []]
    if kind in ("Catalog", "Collection"):
        raise ConfigError(f"{label or 'STAC document'}: a STAC {kind}, not an Item or ItemCollection; pass its items "
                          "(e.g. pystac.Catalog.from_file(path).get_all_items())")
    raise ConfigError(f"{label or 'document'}: not a STAC Item (type Feature) or ItemCollection (FeatureCollection)")


def _read_json(path: str) -> dict:
    try:
        raw = read_url(path) if is_remote(path) else Path(path).read_bytes()
    except FileNotFoundError:
        raise RasterReadError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise RasterReadError(f"{path}: is a directory, not a STAC item") from None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise RasterReadError(f"{path}: not a JSON document ({exc}); a STAC Item or ItemCollection was expected") from None


def _is_pystac(obj, name: str) -> bool:
    return any(c.__name__ == name and c.__module__.startswith("pystac") for c in type(obj).__mro__)


def _expand_one(s) -> list:
    if isinstance(s, StacScene):
        return [s]
    if _is_pystac(s, "Item"):
        d = s.to_dict(include_self_link=False, transform_hrefs=False)
        for k, a in s.assets.items():
            d["assets"][k]["href"] = a.get_absolute_href() or a.href
        return [StacScene(d, s.get_self_href())]
    if _is_pystac(s, "ItemCollection"):
        return [x for item in s for x in _expand_one(item)]
    if isinstance(s, dict):
        return _from_dict(s, None, None)
    if isinstance(s, (str, os.PathLike)):
        p = os.fspath(s)
        if p.lower().split("?")[0].endswith((".json", ".geojson")):
            return _from_dict(_read_json(p), p, p)
    return [s]


def expand_scenes(scenes) -> list:
    """The scenes of ``detect``: paths and URLs unchanged, STAC documents and objects as :class:`StacScene`s."""
    if isinstance(scenes, (str, os.PathLike, dict)) or _is_pystac(scenes, "Item"):
        scenes = [scenes]
    return [x for s in scenes for x in _expand_one(s)]


#: how a STAC item is written in a table of scene paths (Spark's work units): this prefix, then its JSON
_TOKEN = "stac-item:"


def scene_token(scene) -> str:
    """A string standing for a scene of :func:`expand_scenes` in a table of paths (Spark's work units): a path or
    URL as it is, a :class:`StacScene` as ``stac-item:`` + :meth:`StacScene.to_json` (hrefs absolute, so a worker
    needs neither the item's file nor its folder). :func:`scene_of_token` turns it back."""
    return _TOKEN + scene.to_json() if isinstance(scene, StacScene) else os.fspath(scene)


def scene_of_token(token: str):
    """The scene a :func:`scene_token` string stands for (a path, a URL or a :class:`StacScene`)."""
    return StacScene.from_json(token[len(_TOKEN):]) if token.startswith(_TOKEN) else token


def item_vrt(scene: StacScene, names) -> str:
    """A VRT (XML) stacking the item's bands ``names`` on the grid of the finest asset."""
    from xml.sax.saxutils import escape  # here: xml.sax costs 10-30 ms, and only STAC items need it

    import numpy as np
    import rasterio

    picks = scene.choose(names)
    info = {}
    for key, _ in picks:
        if key in info:
            continue
        href = scene.assets[key]["href"]
        if is_remote(href):
            check_url(href)
        try:
            with rasterio.open(gdal_path(href)) as ds:
                info[key] = (ds.crs, ds.transform, ds.width, ds.height, ds.dtypes, ds.nodatavals, ds.count)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterReadError(f"{scene.label}: asset {key!r} ({href}) cannot be read: "
                                  f"{str(exc).splitlines()[0]}") from None
    crss = {str(v[0]) for v in info.values()}
    if len(crss) > 1:
        raise RasterReadError(f"{scene.label}: its assets are in different CRSs ({', '.join(sorted(crss))}); "
                              "geodetect stacks assets of one CRS only")
    ref = min(info.values(), key=lambda v: abs(v[1].a))  # the finest grid
    crs, t, w, h = ref[0], ref[1], ref[2], ref[3]
    dtype = np.result_type(*[np.dtype(info[k][4][b - 1]) for k, b in picks]).name
    gdal_type = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
                 "int32": "Int32", "float32": "Float32", "float64": "Float64"}.get(dtype, "Float32")
    parts = [f'<VRTDataset rasterXSize="{w}" rasterYSize="{h}">',
             f"<SRS>{escape(crs.to_wkt()) if crs else ''}</SRS>",
             f"<GeoTransform>{t.c!r}, {t.a!r}, {t.b!r}, {t.f!r}, {t.d!r}, {t.e!r}</GeoTransform>"]
    for i, ((key, band), name) in enumerate(zip(picks, names), start=1):
        scrs, st, sw, sh, _, nodata, count = info[key]
        if band > count:
            raise BandError(f"{scene.label}: asset {key!r} lists band {band} ({name}) but has {count} band(s)")
        # the source's extent in the target grid's pixels
        x0, y0 = ~t * (st.c, st.f)
        x1, y1 = ~t * (st.c + st.a * sw, st.f + st.e * sh)
        nd = nodata[band - 1]
        parts.append(f'<VRTRasterBand dataType="{gdal_type}" band="{i}"><Description>{escape(str(name))}</Description>')
        if nd is not None:
            parts.append(f"<NoDataValue>{nd!r}</NoDataValue>")
        same = abs(x1 - x0 - sw) < 1e-6 and abs(y1 - y0 - sh) < 1e-6
        tag = "ComplexSource" if (nd is not None or not same) else "SimpleSource"
        attrs = "" if same else ' resampling="bilinear"'
        parts.append(f"<{tag}{attrs}><SourceFilename relativeToVRT=\"0\">{escape(gdal_path(scene.assets[key]['href']))}"
                     f"</SourceFilename><SourceBand>{band}</SourceBand>"
                     f'<SrcRect xOff="0" yOff="0" xSize="{sw}" ySize="{sh}"/>'
                     f'<DstRect xOff="{x0!r}" yOff="{y0!r}" xSize="{x1 - x0!r}" ySize="{y1 - y0!r}"/>')
        if nd is not None:
            parts.append(f"<NODATA>{nd!r}</NODATA>")
        parts.append(f"</{tag}></VRTRasterBand>")
    parts.append("</VRTDataset>")
    return "".join(parts)


def _wanted_names(scene: StacScene, bands, override) -> list[str]:
    from geodetect.io.raster import parse_bands

    override = parse_bands(override)
    if isinstance(override, dict):
        raise BandError(f"{scene.label}: a STAC item's bands are chosen by name; give names (--bands red,green,blue), "
                        "not name=index pairs")
    wanted = tuple(override) if override is not None else tuple(bands)
    ints = [b for b in wanted if not isinstance(b, str) or b.isdigit()]
    if ints:
        have = ", ".join(sorted(scene.band_table())) or "none"
        raise BandError(f"{scene.label}: the detector takes bands by index ({', '.join(map(str, wanted))}); a STAC "
                        f"item's bands are chosen by name: pass --bands with names, e.g. --bands red,green,blue "
                        f"(the item's bands: {have})")
    return [str(b).lower() for b in wanted]


@contextmanager
def scene_source(path, bands, override):
    """The GDAL path to open for a scene, inside the GDAL settings it needs.

    A :class:`StacScene` becomes an in-memory VRT of the wanted bands (named so that the
    detector's names find them); a URL gets GDAL's HTTP settings; a file is unchanged.
    """
    import rasterio

    if isinstance(path, StacScene):
        with rasterio.Env(**GDAL_HTTP_OPTIONS):
            names = _wanted_names(path, bands, override)
            xml = item_vrt(path, names)
            from rasterio.io import MemoryFile

            with MemoryFile(xml.encode(), filename=f"{path.scene_id}.vrt") as mem:
                yield mem.name
        return
    p = os.fspath(path)
    if is_remote(p):
        with rasterio.Env(**GDAL_HTTP_OPTIONS):
            yield p
        return
    yield path


def scene_override(path, override, n_bands: int):
    """The band override ``open_scene`` gets: for a STAC item, its VRT's bands 1..n already are the wanted ones."""
    return tuple(range(1, n_bands + 1)) if isinstance(path, StacScene) else override


def with_item_columns(gdf, path, stats=None):
    """Detections of a STAC item get its ``datetime`` (UTC) as a column; its ``stats.path`` becomes the item's label
    (instead of the in-memory VRT's)."""
    if not isinstance(path, StacScene):
        return gdf
    if stats is not None:
        stats.path = path.label
    import pandas as pd

    gdf["datetime"] = pd.Series(pd.to_datetime([path.datetime] * len(gdf), utc=True), index=gdf.index)
    return gdf
