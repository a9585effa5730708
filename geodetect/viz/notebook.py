"""kepler.gl maps in Jupyter: a ``keplergl.KeplerGl`` widget with the datasets, layers and config of the HTML export.

>>> from geodetect.viz.notebook import to_keplergl                       # doctest: +SKIP
>>> to_keplergl(dets, regions="counties.geojson", by="fips")             # doctest: +SKIP

The map is built by :func:`geodetect.to_kepler` (same arguments but ``path``),
so a notebook shows exactly what the HTML file shows: the same datasets (ids,
GeoJSON), the same layer configuration, view and basemap. ``keplergl`` (the
PyPI package kepler.gl users know) is imported only here: ``pip install keplergl``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from geodetect.errors import MissingDependencyError, VectorReadError

__all__ = ["to_keplergl", "read_map_spec"]

_SPEC = re.compile(r'<script type="application/json" id="geodetect-map">(.*?)</script>', re.S)


def read_map_spec(path) -> dict:
    """The map a ``to_kepler`` HTML file carries: ``{"meta", "datasets", "config"}`` as written."""
    p = Path(os.fspath(path))
    m = _SPEC.search(p.read_text(encoding="utf-8"))
    if m is None:
        raise VectorReadError(f"{p}: not a geodetect kepler.gl map (no geodetect-map data); write it with gd.to_kepler")
    return json.loads(m.group(1))


def to_keplergl(dets, *, height: int = 600, **kwargs):
    """A ``keplergl.KeplerGl`` map of ``dets`` for Jupyter, identical in data and config to ``gd.to_kepler``'s HTML.

    ``kwargs`` are :func:`geodetect.to_kepler`'s (regions, by, hexbins, heatmap, choropleth,
    max_features, basemap, ...). The widget's datasets are named by the HTML's dataset ids
    (``detections``, ``detection_shapes``, ``h3_cells``, ``regions``).
    """
    try:
        import keplergl  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("notebook maps need the keplergl package: pip install keplergl") from exc
    from geodetect.viz.kepler import to_kepler

    with tempfile.TemporaryDirectory(prefix="geodetect-map-") as tmp:
        spec = read_map_spec(to_kepler(dets, Path(tmp) / "map.html", **kwargs))
    m = keplergl.KeplerGl(height=height, config=spec["config"])
    for d in spec["datasets"]:
        data = d["data"]
        if d.get("format") == "geojson":
            data = json.dumps(data) if not isinstance(data, str) else data
        else:
            import pandas as pd

            data = pd.DataFrame(data["rows"], columns=data["fields"])  # {"fields": [...], "rows": [[...], ...]}
        m.add_data(data=data, name=d["id"])
    return m
