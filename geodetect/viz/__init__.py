"""Maps and pictures of detections: kepler.gl HTML exports and PNG quicklooks.

>>> import geodetect.viz as gv
>>> sorted(gv.__all__)
['quicklook', 'quicklook_counts', 'to_kepler']

Importing this is cheap: matplotlib, rasterio, geopandas and the analytics are
imported inside the functions that need them.
"""

from __future__ import annotations

from geodetect.viz.kepler import to_kepler
from geodetect.viz.quicklook import quicklook, quicklook_counts

__all__ = ["to_kepler", "quicklook", "quicklook_counts"]
