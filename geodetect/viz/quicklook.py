"""PNG quicklooks: a scene with its detections drawn, and bar charts of counts per region.

>>> import geodetect as gd                                                    # doctest: +SKIP
>>> gd.quicklook("scene.tif", dets, "scene.png", bands="3,2,1")              # doctest: +SKIP
>>> gd.quicklook_counts(gd.aggregate(dets, "counties.geojson", by="fips"), "bars.png")  # doctest: +SKIP

The scene is read decimated (``out_shape``, at most ``max_size`` pixels on the
long side, so GDAL uses the file's overviews when it has them and a huge scene
is never loaded whole), each band stretched between its 2nd and 98th
percentiles over valid pixels (nodata is black). Detections are reprojected to
the scene's CRS and drawn in its pixel grid: points as markers coloured by
class, boxes and polygons as class-coloured outlines, classification
footprints (polygons that tile the scene: no overlaps, each touching another)
as translucent fills; a legend gives each class with its count. Colours are
those of the kepler.gl maps (:mod:`geodetect.viz._style`). Files are written
under a temporary name and renamed into place. Rendering uses matplotlib's Agg
canvas directly (no pyplot, no GUI backend).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from geodetect.errors import BandError, ConfigError, GeoreferenceError, MissingDependencyError, OutputError, RasterReadError

__all__ = ["quicklook", "quicklook_counts", "DEFAULT_MAX_SIZE"]

DEFAULT_MAX_SIZE = 2048


def _matplotlib():
    try:
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise MissingDependencyError("quicklooks need matplotlib: pip install matplotlib") from None
    import matplotlib

    return matplotlib


# --------------------------------------------------------------------------- scene


def _read_scene(path: str, bands, max_size: int):
    """(rgb float image in 0..1 (h, w, 3), valid mask (h, w), full-res transform scaled to the image, crs, size)."""
    import rasterio
    from affine import Affine
    from rasterio.enums import Resampling
    from rasterio.errors import RasterioIOError

    from geodetect.io.raster import _check_file, _resolve_bands, parse_bands

    _check_file(path)
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterReadError(f"{path}: not a raster GDAL can read ({str(exc).splitlines()[0]})") from exc
    with ds:
        if ds.count == 0 or ds.width == 0 or ds.height == 0:
            raise RasterReadError(f"{path}: has no pixels (bands={ds.count}, size={ds.width}x{ds.height})")
        if bands is None:
            wanted = (1, 2, 3) if ds.count >= 3 else (1,)
        else:
            wanted = parse_bands(bands) if isinstance(bands, str) else tuple(bands)
            if isinstance(wanted, dict):
                raise ConfigError(f"{path}: --bands for a quicklook is 1 or 3 band indexes or names, like 3,2,1")
        if len(wanted) not in (1, 3):
            raise BandError(f"{path}: a quicklook shows 1 band (grey) or 3 bands (RGB), not {len(wanted)}; "
                            f"choose them with --bands, e.g. 3,2,1 (the file has {ds.count})")
        idx = _resolve_bands(ds, path, tuple(wanted), None)
        scale = min(1.0, max_size / max(ds.width, ds.height))
        w = max(1, int(round(ds.width * scale)))
        h = max(1, int(round(ds.height * scale)))
        factor = max(ds.width / w, ds.height / h)
        resampling = Resampling.average if factor <= 8 else Resampling.nearest
        try:
            arr = ds.read(list(idx), out_shape=(len(idx), h, w), masked=True, resampling=resampling)
        except Exception as exc:  # noqa: BLE001 - truncated files, bad blocks
            raise RasterReadError(f"{path}: could not read pixels ({type(exc).__name__}: {exc}); the file may be truncated") from exc
        transform = ds.transform * Affine.scale(ds.width / w, ds.height / h)
        crs = ds.crs
        georeferenced = not ds.transform.is_identity
        if georeferenced:
            from geodetect.io.raster import check_transform

            check_transform(ds.transform, ds.width, ds.height, path)
    data = np.ma.getdata(arr).astype(np.float64)
    mask = np.ma.getmaskarray(arr)
    valid = ~mask.any(axis=0)
    img = np.zeros((h, w, len(idx)), np.float64)
    for b in range(len(idx)):
        band = data[b]
        vals = band[valid & np.isfinite(band)]
        if vals.size:
            lo, hi = np.percentile(vals, (2.0, 98.0))
            img[..., b] = np.clip((band - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.where(band > lo, 1.0, 0.5)
    img[~valid] = 0.0
    img = np.nan_to_num(img, nan=0.0)
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    return img, transform, crs, georeferenced, idx


def _to_pixels(dets, transform, crs, path):
    """Detections -> their geometries in the image's pixel space (after reprojection to the scene CRS)."""
    import geopandas as gpd
    import shapely

    from geodetect.georef import crs_to_pixel

    if len(dets) == 0:
        return np.array([], dtype=object), np.array([], dtype=object)
    if crs is None:
        raise GeoreferenceError(f"{path}: the scene has no CRS, so detections cannot be placed on it")
    if dets.crs is None:
        raise ConfigError("the detections have no CRS; set one (dets.set_crs('EPSG:4326') for lon/lat)")
    from geodetect.frames import unplaceable

    g = gpd.GeoSeries(np.asarray(dets.geometry.values, dtype=object), crs=dets.crs)
    keep = ~unplaceable(g.values)
    g = g[keep].to_crs(crs)
    classes = dets["class_name"].astype(str).to_numpy(object)[keep]

    def fn(c):
        col, row = crs_to_pixel(transform, c[:, 0], c[:, 1])
        return np.column_stack([col, row])

    geoms = shapely.transform(np.asarray(g.values, dtype=object), fn)
    ok = np.all(np.isfinite(shapely.bounds(geoms)), axis=1) if len(geoms) else np.zeros(0, bool)
    return geoms[ok], classes[ok]


def _looks_like_tiles(polys) -> bool:
    """Classification footprints: several polygons, none overlapping another, (nearly) each touching one."""
    import shapely

    n = len(polys)
    if n < 2:
        return False
    tree = shapely.STRtree(polys)
    a, b = tree.query(polys, predicate="intersects")
    m = a < b
    a, b = a[m], b[m]
    if len(a):
        inter = shapely.area(shapely.intersection(polys[a], polys[b]))
        if (inter > 1e-6 * np.minimum(shapely.area(polys[a]), shapely.area(polys[b])) + 1e-12).any():
            return False
    touching = np.zeros(n, bool)
    touching[a] = True
    touching[b] = True
    return touching.mean() >= 0.9


def _rings(geoms):
    """Every ring of every polygon as an (k, 2) array."""
    import shapely

    out = []
    for p in shapely.get_parts(geoms):
        if p.geom_type != "Polygon":
            continue
        out.append(np.asarray(p.exterior.coords))
        out.extend(np.asarray(r.coords) for r in p.interiors)
    return out


def quicklook(
    scene,
    dets,
    path,
    *,
    bands=None,
    max_size: int = DEFAULT_MAX_SIZE,
    fill: bool | None = None,
    title: str | None = None,
    legend: bool = True,
) -> Path:
    """Write a PNG of ``scene`` with ``dets`` drawn on it.

    Parameters
    ----------
    scene:
        any GDAL raster with a CRS.
    dets:
        detections (GeoDataFrame with a CRS, any active geometry column, or a vector file);
        an empty frame gives the plain stretched scene.
    path:
        the ``.png`` to write.
    bands:
        1 or 3 bands shown as grey or RGB: ``"3,2,1"``, ``(4, 3, 2)`` or band names
        (descriptions); default 1,2,3 (or 1 for a single-band scene).
    max_size:
        the long side of the PNG in pixels (the scene is read decimated to it; smaller scenes keep their size).
    fill:
        polygons filled (translucent) rather than outlined; default: fill only classification
        footprints (polygons that tile the scene).
    title:
        text in the top-left corner; default: the scene's file name and the number of detections.

    The PNG is exactly the decimated scene's size: ``max_size`` on the long side (or the scene's own size).
    """
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    from geodetect.viz._style import class_colors

    scene = os.fspath(scene)
    path = Path(os.fspath(path))
    if path.suffix.lower() != ".png":
        raise ConfigError(f"{path}: a quicklook is a .png file; name it e.g. {path.with_suffix('.png').name}")
    if isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer)) or not 16 <= max_size <= 16384:
        raise ConfigError(f"max_size must be an integer number of pixels from 16 to 16384, not {max_size!r}")
    dets = _load_dets(dets)
    img, transform, crs, georeferenced, idx = _read_scene(scene, bands, int(max_size))
    h, w = img.shape[:2]
    if len(dets) and not georeferenced:
        raise GeoreferenceError(f"{scene}: the scene has no geotransform, so detections cannot be placed on it")
    geoms, classes = _to_pixels(dets, transform, crs, scene)
    import shapely

    on_scene = (shapely.intersects(geoms, shapely.box(0, 0, w, h)) if len(geoms) else np.zeros(0, bool))
    n_on = int(on_scene.sum())
    if len(dets) and n_on == 0:
        raise GeoreferenceError(
            f"{scene}: none of the {len(dets):,} detections lies on this scene (wrong scene, or detections in another "
            "place or CRS?); a quicklook of it would show nothing"
        )
    if n_on < len(dets):
        import warnings

        warnings.warn(f"{len(dets) - n_on:,} of {len(dets):,} detections are off the scene or have no usable geometry: "
                      "not drawn", UserWarning, stacklevel=2)
    geoms, classes = geoms[on_scene], classes[on_scene]
    colors = class_colors(dets["class_name"].astype(str).unique() if len(dets) else [])

    dpi = 100
    fig = Figure(figsize=(w / dpi, h / dpi), dpi=dpi, facecolor="black")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(img, extent=(0, w, h, 0), interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)

    import shapely

    long_side = max(w, h)
    lw = max(0.8, min(2.0, long_side / 600))
    marker = max(3.0, min(9.0, long_side / 160))
    font = max(5.0, min(10.0, long_side / 90))
    handles = []
    if len(geoms):
        types = shapely.get_type_id(geoms)
        is_pt = np.isin(types, (0, 4))
        is_poly = np.isin(types, (3, 6))
        filled = _looks_like_tiles(geoms[is_poly]) if fill is None else bool(fill)
        for cls in sorted(colors):
            col = colors[cls]
            sel = classes == cls
            n = int(sel.sum())
            polys = geoms[sel & is_poly]
            if len(polys):
                rings = _rings(polys)
                if filled:
                    ax.add_collection(PolyCollection([r for r in rings], facecolors=col, edgecolors=col, alpha=0.35,
                                                     linewidths=lw * 0.5))
                else:
                    ax.add_collection(LineCollection(rings, colors=col, linewidths=lw))
            pts = geoms[sel & is_pt]
            if len(pts):
                xy = shapely.get_coordinates(pts)
                ax.plot(xy[:, 0], xy[:, 1], linestyle="none", marker="o", markersize=marker, markerfacecolor=col,
                        markeredgecolor="black", markeredgewidth=0.6)
            label = f"{cls} ({n:,})"
            if len(pts) or not len(polys):
                handles.append(Line2D([], [], linestyle="none", marker="o", markersize=font * 0.8, markerfacecolor=col,
                                      markeredgecolor="black", label=label))
            elif filled:
                handles.append(Patch(facecolor=col, edgecolor=col, alpha=0.6, label=label))
            else:
                handles.append(Patch(facecolor="none", edgecolor=col, linewidth=lw, label=label))
    if legend and handles:
        leg = ax.legend(handles=handles, loc="upper right", fontsize=font, framealpha=0.75, facecolor="#202020",
                        edgecolor="#808080", labelcolor="white", borderpad=0.4, handletextpad=0.4)
        leg.set_zorder(10)
    if title is None:
        shown = f"{len(dets):,}" if n_on == len(dets) else f"{n_on:,} of {len(dets):,}"
        title = f"{Path(scene).name}  bands {','.join(map(str, idx))}  {shown} detections"
    if title:
        ax.text(0.01 * w, 0.01 * h, title, color="white", fontsize=font, va="top", ha="left", zorder=11,
                bbox={"facecolor": "#202020", "alpha": 0.7, "edgecolor": "none", "pad": 2})
    _save(fig, path, dpi)
    return path


def _load_dets(dets):
    import geopandas as gpd

    if isinstance(dets, (str, os.PathLike)):
        from geodetect.frames import read

        dets = read(dets)
    if not isinstance(dets, gpd.GeoDataFrame):
        raise ConfigError(f"detections must be a GeoDataFrame or a path to a vector file, not {type(dets).__name__}")
    try:
        dets.geometry  # noqa: B018 - the active geometry column must exist
    except AttributeError:
        raise ConfigError("the detections have no active geometry column; choose one with .set_geometry('<column>')") from None
    if "class_name" not in dets.columns:
        raise ConfigError(f"detections have no 'class_name' column; columns are: {', '.join(map(str, dets.columns))}")
    return dets


def _save(fig, path: Path, dpi: int) -> None:
    from geodetect._atomic import atomic_output

    if path.is_dir():
        raise OutputError(f"{path}: is a directory; give a file name such as {path / 'quicklook.png'}")
    with atomic_output(path, what="the PNG") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", facecolor=fig.get_facecolor())


# --------------------------------------------------------------------------- counts


def quicklook_counts(counts, path, *, by: str | None = None, top: int = 30, title: str | None = None) -> Path:
    """Write a PNG bar chart of detections per region, stacked by class.

    ``counts`` is the table of :func:`geodetect.aggregate` (or a ``.csv`` / ``.parquet`` of it):
    a region id column (``by``, default the first column), optionally ``name``, then
    ``class_name`` and ``count``. The ``top`` regions by total count are shown, largest
    first; the title says how many regions there are in all.
    """
    _matplotlib()
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from geodetect.viz._style import class_colors

    path = Path(os.fspath(path))
    if path.suffix.lower() != ".png":
        raise ConfigError(f"{path}: a bar chart is a .png file; name it e.g. {path.with_suffix('.png').name}")
    if isinstance(counts, (str, os.PathLike)):
        counts = _read_table(Path(os.fspath(counts)))
    if not isinstance(counts, pd.DataFrame):
        raise ConfigError(f"counts must be a DataFrame (geodetect.aggregate's result) or a .csv/.parquet, not {type(counts).__name__}")
    need = [c for c in ("class_name", "count") if c not in counts.columns]
    if need:
        raise ConfigError(f"the counts table has no {', '.join(need)} column (columns: {', '.join(map(str, counts.columns))}); "
                          "give geodetect.aggregate's result")
    if by is None:
        by = next((c for c in counts.columns if c not in ("class_name", "count")), None)
        if by is None:
            raise ConfigError("the counts table has no region id column; give by=")
    elif by not in counts.columns:
        raise ConfigError(f"the counts table has no column {by!r}; columns are: {', '.join(map(str, counts.columns))}")
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ConfigError(f"top must be a positive integer, not {top!r}")
    df = counts.assign(class_name=counts["class_name"].astype(str), _key=counts[by].astype(str))
    label = df["_key"]
    if "name" in df.columns and by != "name":
        label = df["name"].astype(str).where(df["name"].notna(), "") + " (" + df["_key"] + ")"
    df = df.assign(_label=label)
    wide = df.pivot_table(index="_label", columns="class_name", values="count", aggfunc="sum", fill_value=0)
    n_regions = len(wide)
    wide = wide.assign(_total=wide.sum(axis=1)).sort_values("_total", ascending=False, kind="mergesort").head(int(top))
    total = wide.pop("_total")
    wide = wide.iloc[::-1]  # largest at the top of a horizontal bar chart
    colors = class_colors(wide.columns)

    n = max(1, len(wide))
    dpi = 100
    fig = Figure(figsize=(9, 1.6 + 0.28 * n), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    left = np.zeros(len(wide))
    for cls in wide.columns:
        vals = wide[cls].to_numpy(np.float64)
        ax.barh(np.arange(len(wide)), vals, left=left, color=colors[str(cls)], edgecolor="white", linewidth=0.4,
                label=str(cls))
        left += vals
    ax.set_yticks(np.arange(len(wide)))
    ax.set_yticklabels(list(wide.index), fontsize=8)
    ax.set_xlabel("detections")
    for y, t in enumerate(total.iloc[::-1].to_numpy()):
        ax.text(left[y], y, f" {int(t):,}", va="center", fontsize=7)
    ax.spines[["top", "right"]].set_visible(False)
    if len(wide.columns):
        ax.legend(title="class", fontsize=8, title_fontsize=8, loc="lower right", frameon=False)
    shown = f"top {len(wide)} of {n_regions:,} regions" if n_regions > len(wide) else f"{n_regions:,} regions"
    ax.set_title(title or f"Detections per region and class ({shown})", fontsize=10, loc="left")
    ax.set_xlim(0, max(1.0, float(left.max()) * 1.12) if len(left) else 1.0)
    fig.tight_layout()
    _save(fig, path, dpi)
    return path


def _read_table(p: Path):
    import pandas as pd

    if not p.exists():
        raise ConfigError(f"{p}: no such file; check the path")
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as exc:  # noqa: BLE001
        raise ConfigError(f"{p}: not a table geodetect can read ({type(exc).__name__}: {exc}); give a .csv or .parquet") from exc
