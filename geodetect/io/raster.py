"""Opening scenes: band mapping, nodata masks, scaling and resampling to a detector's GSD.

A :class:`Scene` wraps an open rasterio dataset and exposes a *grid*: the
source pixel grid, or a resampled version of it when the scene's ground
sample distance differs from the detector's. Reads are windowed on that grid,
so memory depends on the tile size, never on the scene size.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from geodetect.errors import BandError, ConfigError, GeoreferenceError, RasterReadError
from geodetect.plugins._types import validate_scaling

__all__ = ["Scene", "open_scene", "parse_bands", "check_band_override", "check_bounds", "check_transform",
           "scale_to_float32", "pixel_size_m"]

#: a scene is refused when reaching the detector's GSD would enlarge its pixels more than this
MAX_UPSAMPLING = 64

_COLORINTERP_NAMES = {"red", "green", "blue", "alpha", "gray", "grey", "undefined"}


def parse_bands(text: str | Sequence | Mapping | None):
    """Parse a band override: ``"4,3,2"``, ``"nir=1,red=2"``, a list or a dict.

    Returns ``None``, a tuple of ints/names, or a dict of name -> 1-based index.
    Indexes are 1-based (the first band is 1): 0 and negative indexes are refused.
    """
    if text is None:
        return None
    if isinstance(text, Mapping):
        out = {}
        for k, v in text.items():
            if not isinstance(k, str) or not k.strip():
                raise ConfigError(f"bands={dict(text)!r}: keys must be band names such as 'nir'")
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ConfigError(f"bands={dict(text)!r}: {k!r} must map to a 1-based band index (an int), not {v!r}")
            _check_index(int(v), f"bands={dict(text)!r}")
            if k.strip().lower() in out:
                raise ConfigError(f"bands={dict(text)!r}: the name {k.strip().lower()!r} is given twice")
            out[k.strip().lower()] = int(v)
        return out
    if not isinstance(text, str):
        out = tuple(text)
        for b in out:
            if isinstance(b, bool) or not isinstance(b, (int, np.integer, str)):
                raise ConfigError(f"bands={out!r}: give 1-based band indexes or band names, not {b!r}")
            if isinstance(b, (int, np.integer)):
                _check_index(int(b), f"bands={out!r}")
        return tuple(int(b) if isinstance(b, np.integer) else b for b in out)
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"--bands {text!r} is empty; give indexes like 4,3,2 or names like nir=1,red=2")
    if all("=" in p for p in parts):
        out = {}
        for p in parts:
            k, v = (s.strip() for s in p.split("=", 1))
            if not k:
                raise ConfigError(f"--bands {text!r}: {p!r} has no band name; write name=index, like nir=4")
            if not _INT.match(v):
                raise ConfigError(f"--bands {text!r}: {p!r} must map a name to a 1-based index, like nir=4")
            _check_index(int(v), f"--bands {text!r}")
            if k.lower() in out:
                raise ConfigError(f"--bands {text!r}: the name {k!r} is given twice")
            out[k.lower()] = int(v)
        return out
    if any("=" in p for p in parts):
        raise ConfigError(f"--bands {text!r} mixes indexes and name=index pairs; use one form")
    out = []
    for p in parts:
        if _INT.match(p):
            _check_index(int(p), f"--bands {text!r}")
            out.append(int(p))
        else:
            out.append(p)
    return tuple(out)


_INT = re.compile(r"^[+-]?\d+$")


def _check_index(i: int, where: str) -> None:
    if i < 1:
        raise ConfigError(f"{where}: band indexes are 1-based (the first band is 1), got {i}")


#: band names a map may give although a detector does not read them (they describe the file)
COMMON_BAND_NAMES = frozenset({
    "coastal", "blue", "green", "red", "yellow", "pan", "rededge", "rededge071", "rededge075", "rededge078",
    "nir", "nir08", "nir09", "cirrus", "swir16", "swir22", "lwir", "lwir11", "lwir12",
    "vv", "vh", "hh", "hv",
})


def check_band_override(wanted: Sequence, override, *, detector: str = "the detector", where: str = "") -> None:
    """Refuse a band override that cannot mean what the user wants, before any scene is read.

    A name map (``nir=4,green=3``) may only name bands the detector wants, or other standard band
    names (STAC ``eo:bands`` common names, SAR polarisations), so that one map can describe a
    file for several detectors: an unknown key (a typo such as ``grene``) would otherwise be
    ignored and the band taken from the file's own names.
    """
    if not isinstance(override, dict):
        return
    names = [str(b).lower() for b in wanted if isinstance(b, str) and not str(b).isdigit()]
    unknown = [k for k in override if k not in names and (not names or k not in COMMON_BAND_NAMES)]
    if not unknown:
        return
    shown = ",".join(f"{k}={v}" for k, v in override.items())
    prefix = f"{where}: " if where else ""
    if not names:
        idx = ",".join(map(str, wanted))
        raise BandError(
            f"{prefix}--bands {shown}: {detector} takes its bands by index ({idx}), not by name; "
            f"give indexes instead, e.g. --bands {idx}"
        )
    raise BandError(
        f"{prefix}--bands {shown}: {detector} has no band named {', '.join(map(repr, unknown))}; "
        f"it wants the bands {', '.join(names)} (e.g. --bands {','.join(f'{n}=N' for n in names)})"
    )


def scale_to_float32(arr: np.ndarray, dtype: np.dtype, scaling) -> np.ndarray:
    """Scale raw values to float32 as the detector declares (never per tile statistics)."""
    offset, factor = _affine_scaling(dtype, scaling)
    out = arr.astype(np.float32)
    if offset:
        out -= np.float32(offset)
    if factor != 1.0:
        out *= np.float32(factor)
    return out


def _affine_scaling(dtype, scaling) -> tuple[float, float]:
    """(offset, factor) with scaled = (raw - offset) * factor; the same numbers as :func:`scale_to_float32`."""
    if scaling == "none":
        return 0.0, 1.0
    if scaling == "dtype":
        dt = np.dtype(dtype)
        if np.issubdtype(dt, np.integer):
            info = np.iinfo(dt)
            if info.min == 0:
                return 0.0, 1.0 / info.max
            return float(info.min), 1.0 / (float(info.max) - float(info.min))
        return 0.0, 1.0
    lo, hi = scaling
    return float(lo), 1.0 / (hi - lo)


def pixel_size_m(transform, crs, center_lat: float | None = None, center=None) -> tuple[float, float]:
    """Ground size of one pixel (x, y) in metres, for rotated transforms too.

    In a projected CRS, map metres are divided by the projection's scale factor
    at ``center`` (x, y in the CRS) when it is given: a Web-Mercator (EPSG:3857)
    pixel of 30 map metres is 23.7 m on the ground at 38 deg N, 15 m at 60 deg N.
    """
    sx = math.hypot(transform.a, transform.d)
    sy = math.hypot(transform.b, transform.e)
    if crs is None:
        return sx, sy
    if crs.is_geographic:
        lat = math.radians(center_lat or 0.0)
        return sx * 111_320.0 * max(math.cos(lat), 1e-6), sy * 110_574.0
    factor = crs.linear_units_factor[1] if crs.linear_units_factor else 1.0
    kx = ky = 1.0
    if center is not None:
        kx, ky = _scale_factors(crs, *center)
    return sx * factor / kx, sy * factor / ky


def _scale_factors(crs, x: float, y: float) -> tuple[float, float]:
    """The projection's (parallel, meridional) scale factors at map point (x, y); (1, 1) if unknown."""
    try:
        from pyproj import CRS, Proj, Transformer

        c = CRS.from_user_input(crs)
        lon, lat = Transformer.from_crs(c, c.geodetic_crs, always_xy=True).transform(x, y)
        f = Proj(c).get_factors(lon, lat)
        kx, ky = float(f.parallel_scale), float(f.meridional_scale)
        if math.isfinite(kx) and math.isfinite(ky) and kx > 0 and ky > 0:
            return kx, ky
    except Exception:  # noqa: BLE001 - an exotic CRS: map units as they are
        pass
    return 1.0, 1.0


@dataclass
class Scene:
    """An open scene, ready for windowed reads on its (possibly resampled) grid."""

    path: str
    scene_id: str
    dataset: object  # rasterio DatasetReader
    indexes: tuple[int, ...]
    scaling: object
    crs: object  # rasterio CRS
    transform: object  # affine of the grid (after resampling)
    width: int
    height: int
    factor: tuple[float, float]  # grid pixels per source pixel (x, y)

    @property
    def resampled(self) -> bool:
        return self.factor != (1.0, 1.0)

    @property
    def _all_valid(self) -> bool:
        """No nodata value, mask band or alpha on the bands read: masks need not be read."""
        v = self.__dict__.get("_all_valid_cache")
        if v is None:
            from rasterio.enums import MaskFlags

            flags = self.dataset.mask_flag_enums
            v = all(flags[i - 1] == [MaskFlags.all_valid] for i in self.indexes)
            self.__dict__["_all_valid_cache"] = v
        return v

    def read(self, col_off: int, row_off: int, width: int, height: int, pad_to: int | None = None):
        """Read a grid window: float32 (h, w, C) and a boolean validity mask (h, w).

        With ``pad_to`` the arrays are padded to ``pad_to`` x ``pad_to`` with
        invalid pixels (for grids smaller than one tile).
        """
        data, valid = self._read(col_off, row_off, width, height, pad_to)
        if not valid.flags.writeable:  # the shared all-valid mask: the caller gets its own
            valid = valid.copy()
        return data, valid

    def _read(self, col_off: int, row_off: int, width: int, height: int, pad_to: int | None = None, out=None):
        """:meth:`read` for the pipeline: when every pixel is valid the mask is a shared read-only array;
        ``out``: a float32 array of the padded tile's shape to write the pixels into."""
        raw, valid = self._read_raw(col_off, row_off, width, height)
        return self._to_float(raw, valid, pad_to, out)

    def _read_raw(self, col_off: int, row_off: int, width: int, height: int, interleaved: bool = False):
        """The pixels of a grid window as stored, (C, h, w), and the validity mask (``None``: all valid).

        The pipeline reads in one thread and converts (:meth:`_to_float`) in another. ``interleaved``: the
        array is a (C, h, w) view of (h, w, C) memory; GDAL's copy into it costs more than into bands
        apart, and the float32 tile costs less (one contiguous pass): the pipeline, whose strips are
        decoded in GDAL's threads while another thread converts, reads so; a lone :meth:`read` does not.
        """
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        ds = self.dataset
        fx, fy = self.factor
        window = Window(col_off / fx, row_off / fy, width / fx, height / fy)
        out_shape = (len(self.indexes), height, width)
        try:
            if interleaved:
                raw = np.empty((height, width, len(self.indexes)), self._raw_dtype).transpose(2, 0, 1)
            else:
                raw = np.empty((len(self.indexes), height, width), self._raw_dtype)
            if self.resampled:
                ds.read(self.indexes, window=window, out=raw, resampling=Resampling.bilinear)
            else:
                ds.read(self.indexes, window=window, out=raw)
            if self._all_valid:
                valid = None
            else:
                if self.resampled:
                    masks = ds.read_masks(self.indexes, window=window, out_shape=out_shape,
                                          resampling=Resampling.nearest)
                else:
                    masks = ds.read_masks(self.indexes, window=window)
                # GDAL's dataset-mask rule: a pixel is nodata only when every band is (a saturated
                # 255 in one band of an RGB scene with nodata=255 is still a pixel)
                valid = masks.max(axis=0) > 0
        except Exception as exc:  # rasterio raises several kinds for corrupt blocks
            detail = " ".join(str(exc.__cause__ or exc).split())
            raise RasterReadError(
                f"{self.path}: could not read pixels at column {col_off}, row {row_off} "
                f"(truncated or corrupt file?): {detail}; re-download or re-export the scene"
            ) from exc
        if self._scaling_of(raw.dtype)[0]:  # floating-point pixels: NaN and infinity are nodata too
            if valid is None:
                valid = np.ones((height, width), bool)
            valid &= np.all(np.isfinite(raw), axis=0)
        return raw, valid

    @property
    def _raw_dtype(self) -> np.dtype:
        """The dtype the bands read are stored as (GDAL converts to it when the bands differ, as rasterio does)."""
        v = self.__dict__.get("_raw_dtype_cache")
        if v is None:
            v = self.__dict__["_raw_dtype_cache"] = np.result_type(*(self.dataset.dtypes[i - 1] for i in self.indexes))
        return v

    def _scaling_of(self, dtype) -> tuple:
        """(floating, offset, factor) for pixels of ``dtype``: once per scene and dtype, not per tile."""
        scalings = self.__dict__.setdefault("_scalings", {})
        got = scalings.get(dtype)
        if got is None:
            got = scalings[dtype] = (bool(np.issubdtype(dtype, np.floating)), *_affine_scaling(dtype, self.scaling))
        return got

    def _to_float(self, raw, valid, pad_to: int | None = None, out=None):
        """:meth:`_read_raw`'s pixels as the detector gets them: float32 (h, w, C), scaled, nodata filled, padded."""
        _, height, width = raw.shape
        _, offset, factor = self._scaling_of(raw.dtype)
        n = pad_to if pad_to is not None else None
        hh, ww = (max(height, n), max(width, n)) if n else (height, width)
        if out is None:
            data = np.empty((hh, ww, raw.shape[0]), np.float32)  # every element is written below
        elif out.shape != (hh, ww, raw.shape[0]) or out.dtype != np.float32:
            raise ValueError(f"out has shape {out.shape} {out.dtype}; this tile needs {(hh, ww, raw.shape[0])} float32")
        else:
            data = out
        if (hh, ww) != (height, width):
            data[height:] = 0
            data[:height, width:] = 0
        # convert, scale and move bands last: in one contiguous pass when the pixels are interleaved (as the
        # pipeline reads them), else band by band (faster than numpy's strided pass over all three axes)
        hwc = raw.transpose(1, 2, 0)
        interleaved = hwc.strides[2] == hwc.itemsize and hwc.strides[1] == hwc.itemsize * hwc.shape[2]
        pairs = [(hwc, data[:height, :width])] if interleaved else [(raw[k], data[:height, :width, k])
                                                                   for k in range(raw.shape[0])]
        for src, view in pairs:
            if offset:
                np.subtract(src, np.float32(offset), out=view, casting="unsafe")
                view *= np.float32(factor)
            else:
                np.multiply(src, np.float32(factor), out=view, casting="unsafe")
        if valid is None:
            return data, _all_valid_mask(hh, ww, height, width)
        if not valid.all():
            # fill nodata with the tile's valid mean per band, so detectors see no
            # artificial edge at nodata borders (results there are dropped anyway)
            inner = data[:height, :width]
            n_valid = int(np.count_nonzero(valid))
            if n_valid and inner.flags.c_contiguous:  # a matrix product: about 15x faster than inner[valid].mean(0)
                pixels = inner.reshape(-1, inner.shape[-1])
                fill = (valid.ravel().astype(np.float32) @ pixels) / np.float32(n_valid)
                pixels[np.flatnonzero(~valid)] = fill  # rows by index: faster than a boolean mask over (h, w, C)
            else:
                inner[~valid] = inner[valid].mean(axis=0) if n_valid else 0.0
        if (hh, ww) != (height, width):
            pv = np.zeros((hh, ww), bool)
            pv[:height, :width] = valid
            valid = pv
        return data, valid

    def close(self) -> None:
        self.dataset.close()

    def __enter__(self) -> "Scene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_VALID_MASKS: dict = {}


def _all_valid_mask(hh: int, ww: int, height: int, width: int) -> np.ndarray:
    """A read-only (hh, ww) mask, True on the (height, width) corner: shared by every tile of that shape."""
    key = (hh, ww, height, width)
    m = _VALID_MASKS.get(key)
    if m is None:
        if len(_VALID_MASKS) > 64:
            _VALID_MASKS.clear()
        m = np.zeros((hh, ww), bool)
        m[:height, :width] = True
        m.flags.writeable = False
        _VALID_MASKS[key] = m
    return m


def _check_file(path: str) -> None:
    if path.startswith(("http://", "https://", "/vsicurl/")):
        from geodetect.io.remote import check_url

        check_url(path)  # 404, no range support, connection refused: one line each, before GDAL tries
        return
    if "://" in path or path.startswith("/vsi"):
        return  # other remote or virtual paths: let GDAL tell
    p = Path(path)
    if not p.exists():
        raise RasterReadError(f"{path}: no such file; check the path")
    if p.is_dir():
        raise RasterReadError(f"{path}: is a directory, not a raster; pass the image files inside it")
    if p.stat().st_size == 0:
        raise RasterReadError(f"{path}: file is empty (0 bytes); re-download or re-export the scene")


def _band_list(descs, interps) -> str:
    return ", ".join(f"{i + 1}={d or interps[i] or '?'}" for i, d in enumerate(descs)) or "none"


def _resolve_bands(ds, path: str, wanted: tuple, override, detector: str = "the detector") -> tuple[int, ...]:
    count = ds.count
    descs = [(d or "").strip().lower() for d in ds.descriptions]
    try:
        interps = [ci.name.lower() for ci in ds.colorinterp]
    except Exception:  # noqa: BLE001 - some drivers have none
        interps = [""] * count
    try:
        override = parse_bands(override)
    except ConfigError as exc:
        raise BandError(f"{path}: {exc}") from None
    check_band_override(wanted, override, detector=detector, where=path)
    mapping = override if isinstance(override, dict) else {}
    if override is not None and not isinstance(override, dict):
        if len(override) != len(wanted):
            raise BandError(
                f"{path}: --bands gives {len(override)} band(s) but {detector} needs {len(wanted)} "
                f"({', '.join(map(str, wanted))}); the file's bands: {_band_list(descs, interps)}"
            )
        wanted = tuple(override)
    out = []
    for b in wanted:
        if isinstance(b, str):
            key = b.lower()
            if key.isdigit():
                idx = int(key)
            elif key in mapping:
                idx = mapping[key]
            elif key in descs:
                idx = descs.index(key) + 1
            elif key in interps and key in _COLORINTERP_NAMES and interps.count(key) == 1 and not mapping:
                # colour tags only when the user mapped nothing: a partial --bands map means the
                # file's tags are not to be trusted (Landsat NIR/red/green is often tagged RGB)
                idx = interps.index(key) + 1
            else:
                raise BandError(
                    f"{path}: no band named {b!r} (bands: {_band_list(descs, interps)}); map it with --bands {b}=N"
                )
        else:
            idx = int(b)
        if not 1 <= idx <= count:
            hint = (f"; a single-band (panchromatic) image can be given as --bands {','.join(['1'] * len(wanted))}"
                    if count == 1 and len(wanted) > 1 else "")
            raise BandError(
                f"{path}: {detector} needs band {idx} but the file has {count} band(s) "
                f"({_band_list(descs, interps)}); choose bands with --bands{hint}"
            )
        out.append(idx)
    return tuple(out)


def check_bounds(bounds, where: str = "") -> tuple[float, float, float, float]:
    """``bounds`` as four finite floats (left, bottom, right, top) with left < right and bottom < top.

    A mirrored or empty box would place every pixel wrongly (or nowhere) without any other error.
    """
    prefix = f"{where}: " if where else ""
    try:
        vals = tuple(float(v) for v in bounds)
    except (TypeError, ValueError):
        raise GeoreferenceError(f"{prefix}bounds (--bounds) must be four numbers LEFT BOTTOM RIGHT TOP, got {bounds!r}") from None
    if len(vals) != 4:
        raise GeoreferenceError(f"{prefix}bounds (--bounds) must be four numbers LEFT BOTTOM RIGHT TOP, got {len(vals)}")
    shown = " ".join(f"{v:g}" for v in vals)
    if not all(math.isfinite(v) for v in vals):
        raise GeoreferenceError(f"{prefix}--bounds {shown}: every number must be finite (no NaN or infinity)")
    left, bottom, right, top = vals
    if not left < right:
        raise GeoreferenceError(f"{prefix}--bounds {shown}: LEFT ({left:g}) must be less than RIGHT ({right:g}); "
                                "the order is LEFT BOTTOM RIGHT TOP")
    if not bottom < top:
        raise GeoreferenceError(f"{prefix}--bounds {shown}: BOTTOM ({bottom:g}) must be less than TOP ({top:g}); "
                                "the order is LEFT BOTTOM RIGHT TOP")
    return vals


def check_transform(transform, width: int, height: int, path: str, what: str = "geotransform") -> None:
    """Refuse a pixel -> map affine that is not finite, degenerate (zero pixel size) or not invertible.

    Such a transform gives NaN, infinite or collapsed geometries without any other error.
    """
    coefs = tuple(float(v) for v in (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f))
    shown = ", ".join(f"{v:g}" for v in coefs)
    if not all(math.isfinite(v) for v in coefs):
        raise GeoreferenceError(f"{path}: the {what} has a NaN or infinite value ({shown}); fix the file's "
                                "georeferencing, or place it with --bounds and --crs")
    det = coefs[0] * coefs[4] - coefs[1] * coefs[3]
    if not (math.isfinite(det) and det != 0):
        raise GeoreferenceError(f"{path}: the {what} is degenerate (pixel size {math.hypot(coefs[0], coefs[3]):g} x "
                                f"{math.hypot(coefs[1], coefs[4]):g}, determinant {det:g}: no area per pixel); fix the "
                                "file's georeferencing, or place it with --bounds and --crs")
    inv = ~transform
    corners = [transform * (c, r) for c in (0, width) for r in (0, height)]
    if not (all(math.isfinite(v) for v in (inv.a, inv.b, inv.c, inv.d, inv.e, inv.f))
            and all(math.isfinite(v) for xy in corners for v in xy)):
        raise GeoreferenceError(f"{path}: the {what} ({shown}) cannot be inverted or puts the scene's corners at "
                                "infinity; fix the file's georeferencing, or place it with --bounds and --crs")


def check_footprint(transform, width: int, height: int, crs, path: str, dst_crs="EPSG:4326") -> None:
    """Refuse a scene whose corners and centre cannot be placed in ``dst_crs`` (off the Earth, outside the CRS)."""
    from geodetect.georef import _wkt, transformer

    cols = np.array([0, width, 0, width, width / 2], np.float64)
    rows = np.array([0, 0, height, height, height / 2], np.float64)
    t = transform
    xs, ys = t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f
    try:
        key = _wkt(crs)  # once: the CRS is looked up twice below
        with np.errstate(all="ignore"):
            lon, lat = transformer(key, "EPSG:4326").transform(xs, ys, errcheck=False)
            ok = bool(np.all(np.isfinite(lon)) and np.all(np.isfinite(lat)) and np.all(np.abs(lat) <= 90.0 + 1e-9))
            if ok and dst_crs is not None:
                ox, oy = transformer(key, dst_crs).transform(xs, ys, errcheck=False)
                ok = bool(np.all(np.isfinite(ox)) and np.all(np.isfinite(oy)))
    except Exception:  # noqa: BLE001 - pyproj raises for some impossible coordinates
        ok = False
    if not ok:
        corners = ", ".join(f"({x:.6g}, {y:.6g})" for x, y in zip(xs[:4], ys[:4]))
        dst = f" or in {dst_crs}" if dst_crs not in (None, "EPSG:4326") else ""
        raise GeoreferenceError(
            f"{path}: its corners {corners} in {getattr(crs, 'to_string', lambda: crs)()} do not lie on the Earth "
            f"(cannot be placed in longitude/latitude{dst}); check the CRS and the placement (--bounds/--crs)"
        )


def open_scene(
    path,
    *,
    bands: tuple,
    scaling="dtype",
    band_override=None,
    gsd_m: float | None = None,
    gsd_tolerance: float = 0.1,
    crs=None,
    bounds: tuple[float, float, float, float] | None = None,
    scene_id: str | None = None,
    gsd_range: tuple[float, float] | None = None,
    detector: str = "the detector",
) -> Scene:
    """Open a scene for reading by a detector.

    Parameters
    ----------
    path : any GDAL raster (GeoTIFF, COG, VRT, JPEG with world file, ...).
    bands : the detector's bands (indexes or names); ``band_override`` replaces or maps them.
    gsd_m : the detector's GSD; scenes off by more than ``gsd_tolerance`` (relative) are resampled.
    crs, bounds : placement for scenes without one (``crs`` alone for scenes with a geotransform).
    gsd_range : (finest, coarsest) scene GSD in metres ``detector`` accepts; outside it the scene
        is refused (:class:`GeoreferenceError`) before anything is read.
    """
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS
    from rasterio.errors import RasterioIOError
    from rasterio.transform import from_bounds

    path = os.fspath(path)
    _check_file(path)
    scaling = validate_scaling(scaling, lambda m: ConfigError(f"{path}: {m}"))
    try:
        ds = rasterio.open(path)
    except RasterioIOError as exc:
        msg = str(exc).split("\n")[0]
        raise RasterReadError(f"{path}: not a raster GDAL can read ({msg}); check the file is a complete GeoTIFF/COG/VRT") from exc
    except Exception as exc:  # noqa: BLE001
        raise RasterReadError(f"{path}: could not open ({type(exc).__name__}: {exc})") from exc
    try:
        if ds.count == 0 or ds.width == 0 or ds.height == 0:
            raise RasterReadError(f"{path}: has no pixels (bands={ds.count}, size={ds.width}x{ds.height})")
        src_crs = ds.crs
        if crs is not None:
            try:
                user_crs = CRS.from_user_input(crs)
            except Exception as exc:  # noqa: BLE001
                raise GeoreferenceError(f"{path}: crs={crs!r} is not a CRS pyproj/GDAL knows ({exc})") from None
            if src_crs is not None and src_crs != user_crs:
                raise GeoreferenceError(
                    f"{path}: the file's CRS is {src_crs.to_string()} but crs={crs!r} was given; drop crs= or fix the file"
                )
            src_crs = user_crs
        transform = ds.transform
        if bounds is not None:
            transform = from_bounds(*check_bounds(bounds, path), ds.width, ds.height)
            check_transform(transform, ds.width, ds.height, path, what="placement from --bounds")
        elif transform.is_identity:
            raise GeoreferenceError(
                f"{path}: has no geotransform (not georeferenced); add a world file, or place it with "
                "--bounds LEFT BOTTOM RIGHT TOP and --crs (Python: bounds= and crs=)"
            )
        else:
            check_transform(transform, ds.width, ds.height, path)
        if src_crs is None:
            raise GeoreferenceError(f"{path}: has no CRS; pass --crs EPSG:XXXX (Python: crs=) if you know it")
        check_footprint(transform, ds.width, ds.height, src_crs, path, dst_crs=None)
        idx = _resolve_bands(ds, path, tuple(bands), band_override, detector)
        width, height, factor = ds.width, ds.height, (1.0, 1.0)
        if gsd_m is not None or gsd_range is not None:
            cx, cy = transform @ (ds.width / 2, ds.height / 2)
            lat = None
            if src_crs.is_geographic:
                lat = cy
            gx, gy = pixel_size_m(transform, src_crs, lat, center=None if lat is not None else (cx, cy))
        if gsd_range is not None:
            lo, hi = gsd_range
            g = max(gx, gy)
            if not (lo * (1 - gsd_tolerance) <= min(gx, gy) and g <= hi * (1 + gsd_tolerance)):
                raise GeoreferenceError(
                    f"{path}: pixels of {gx:.3g} x {gy:.3g} m are outside the {lo:g}-{hi:g} m {detector} "
                    f"was trained for; it would invent or miss objects. Use imagery in that range, or fix "
                    f"the placement (--bounds/--crs) if the pixel size is wrong"
                )
        if gsd_m is not None:
            if abs(gx / gsd_m - 1) > gsd_tolerance or abs(gy / gsd_m - 1) > gsd_tolerance:
                fw, fh = ds.width * gx / gsd_m, ds.height * gy / gsd_m
                if not (fw >= 1 and fh >= 1):
                    raise GeoreferenceError(
                        f"{path}: the scene covers {ds.width * gx:.3g} x {ds.height * gy:.3g} m, less than one "
                        f"{gsd_m:g} m pixel of {detector}; check the placement (--bounds/--crs) or the pixel size"
                    )
                if max(gx, gy) / gsd_m > MAX_UPSAMPLING:
                    raise GeoreferenceError(
                        f"{path}: pixels of {gx:.3g} x {gy:.3g} m would be enlarged more than {MAX_UPSAMPLING}x to "
                        f"{detector}'s {gsd_m:g} m; that invents detail. Use imagery nearer {gsd_m:g} m, or fix the "
                        "placement (--bounds/--crs) if the pixel size is wrong"
                    )
                width = int(round(fw))
                height = int(round(fh))
                factor = (width / ds.width, height / ds.height)
                transform = transform @ Affine.scale(1 / factor[0], 1 / factor[1])
        sid = scene_id or Path(path).stem
        return Scene(path, sid, ds, idx, scaling, src_crs, transform, width, height, factor)
    except BaseException:
        ds.close()
        raise
