"""The pinned browser assets of geodetect's kepler.gl maps, and where offline exports find them.

An online map (the default) references these files on the unpkg CDN, at exactly these
versions, each with a Subresource Integrity hash so the browser refuses any other bytes.
An offline map (``offline=True``, CLI ``--offline``) inlines the same files, read from a
local ``node_modules`` folder that ``scripts/install_browser_deps.sh`` fills from the npm
registry at build time. geodetect never downloads anything at run time.

Where the offline assets are looked for, first hit wins:

1. the ``assets=`` argument of :func:`geodetect.to_kepler` (CLI: ``--assets DIR``);
2. the environment variable ``GEODETECT_KEPLER_ASSETS``;
3. ``tests/browser/node_modules`` of the source checkout geodetect runs from.

Each is a ``node_modules``-style folder: ``<dir>/kepler.gl/umd/keplergl.min.js`` and so on.

>>> [a.package for a in ASSETS][-1], KEPLER_GL_VERSION
('kepler.gl', '3.2.6')
>>> [a.url for a in ASSETS if a.package == "react"]
['https://unpkg.com/react@18.3.1/umd/react.production.min.js']
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from geodetect.errors import MissingDependencyError

__all__ = ["ASSETS", "KEPLER_GL_VERSION", "CDN", "ENV_VAR", "INSTALL_HINT", "Asset", "find_assets", "default_assets_dir"]

KEPLER_GL_VERSION = "3.2.6"
CDN = "https://unpkg.com"
ENV_VAR = "GEODETECT_KEPLER_ASSETS"
INSTALL_HINT = "scripts/install_browser_deps.sh --no-chromium"


@dataclass(frozen=True)
class Asset:
    package: str
    version: str
    path: str  # inside the npm package
    kind: str  # "js" | "css"
    integrity: str  # SRI (sha384) of the file in the npm tarball, which unpkg serves unchanged
    size: int  # bytes

    @property
    def url(self) -> str:
        return f"{CDN}/{self.package}@{self.version}/{self.path}"


# Load order matters: the kepler.gl UMD bundle expects React, ReactDOM, Redux, ReactRedux and
# styled (styled-components) as globals. maplibre-gl 3.6.2 is bundled inside kepler.gl; only its CSS is
# separate. Keep in step with tests/browser/package.json (tests/test_viz.py checks).
ASSETS: tuple[Asset, ...] = (
    Asset("maplibre-gl", "3.6.2", "dist/maplibre-gl.css", "css",
          "sha384-p5cy4wHtKSqjnLUNjQ+8ffCwUp0vlLS+6lg1lc3qqXax2E1EmVCMCAimU+R0MOZH", 63722),
    Asset("kepler.gl", KEPLER_GL_VERSION, "umd/keplergl.min.css", "css",
          "sha384-u8qEnz9ltEEh5MmHMTKZ2g+/pjPg1fI4Jgnmpu/UocZD3zCuGfldxCPCNdA6N9LS", 255315),
    Asset("react", "18.3.1", "umd/react.production.min.js", "js",
          "sha384-DGyLxAyjq0f9SPpVevD6IgztCFlnMF6oW/XQGmfe+IsZ8TqEiDrcHkMLKI6fiB/Z", 10751),
    Asset("react-dom", "18.3.1", "umd/react-dom.production.min.js", "js",
          "sha384-gTGxhz21lVGYNMcdJOyq01Edg0jhn/c22nsx0kyqP0TxaV5WVdsSH1fSDUf5YJj1", 131835),
    Asset("redux", "4.2.1", "dist/redux.min.js", "js",
          "sha384-rG4GKxh/ojcHqPD0zvAWGoTbdtGOR9jTH1oeTQ5pnRNDgts3oclAi9EI63TxXfMb", 4332),
    Asset("react-redux", "8.1.3", "dist/react-redux.min.js", "js",
          "sha384-SolceUhVnIawRDbgCOJYlDOxNY288CfgrFwenvmpC4S9ucmE/Sd+rBLIKeoI/3u1", 16104),
    Asset("styled-components", "6.1.8", "dist/styled-components.min.js", "js",
          "sha384-kVzFUnoDFb5otuQ40F8HfY1/VWy+z4vDBuws9bxMLWv60gu1KlsJb49KJqwnqJvI", 30010),
    Asset("kepler.gl", KEPLER_GL_VERSION, "umd/keplergl.min.js", "js",
          "sha384-suBnOQlWyunpE4xAsqdwCES/aBXIO+ufS/S7pOauvSrbpHGqntRQkKFMRXQlfP1B", 15031519),
)


def default_assets_dir() -> Path:
    """``tests/browser/node_modules`` of the checkout this geodetect was imported from."""
    return Path(__file__).resolve().parents[2] / "tests" / "browser" / "node_modules"


def _candidates(assets) -> list[tuple[Path, str]]:
    if assets is not None:
        return [(Path(os.fspath(assets)), "assets=")]
    env = os.environ.get(ENV_VAR)
    if env:
        return [(Path(env), f"${ENV_VAR}")]
    checkout = default_assets_dir()
    if checkout.is_dir():
        return [(checkout, "the checkout's tests/browser/node_modules")]
    from geodetect.viz.install_assets import user_assets_dir  # a pip-installed geodetect

    return [(user_assets_dir(), "the user folder `python -m geodetect.viz.install_assets` fills")]


def _installed_version(root: Path, package: str) -> str | None:
    try:
        return str(json.loads((root / package / "package.json").read_text(encoding="utf-8")).get("version"))
    except (OSError, ValueError):
        return None


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def find_assets(assets=None, *, verify: bool = True) -> dict[Asset, bytes]:
    """The pinned assets' bytes, read from the first assets folder (see the module docstring).

    Raises :class:`~geodetect.errors.MissingDependencyError` with a one-line message naming
    the folder, the first missing or different file and the command that installs them.
    With ``verify`` each file is checked against its pinned SRI hash.
    """
    (root, source), = _candidates(assets)
    out: dict[Asset, bytes] = {}
    for a in ASSETS:
        f = root / a.package / a.path
        have = _installed_version(root, a.package)
        if not f.is_file() or have is None:
            raise MissingDependencyError(
                f"offline map assets not found: {f} is missing (looked in {root}, from {source}); install them "
                f"with `python -m geodetect.viz.install_assets` (a pip-installed geodetect) or `{INSTALL_HINT}` in the geodetect checkout, or set {ENV_VAR} to a node_modules folder holding "
                f"{a.package}@{a.version}"
            )
        if have != a.version:
            raise MissingDependencyError(
                f"offline map assets in {root} have {a.package}@{have}, geodetect needs {a.package}@{a.version}; "
                f"run `{INSTALL_HINT}` again"
            )
        data = f.read_bytes()
        if verify and _sri(data) != a.integrity:
            raise MissingDependencyError(
                f"offline map asset {f} is not the pinned {a.package}@{a.version} file (integrity differs); "
                f"run `{INSTALL_HINT}` again"
            )
        out[a] = data
    return out
