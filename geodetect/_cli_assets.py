"""``geodetect map-assets install``: the pinned kepler.gl assets for offline maps, into a user folder."""

from __future__ import annotations

import sys


def register(sub) -> None:
    """Add the ``map-assets`` command to the CLI's subparsers."""
    p = sub.add_parser(
        "map-assets", help="install the pinned kepler.gl assets that offline maps inline (no checkout needed)",
        description="Download the pinned kepler.gl, React, Redux, styled-components and maplibre CSS files from the "
        "npm registry, check each against its pinned integrity hash, and write them into a user folder that "
        "`geodetect map --offline --assets DIR` (or $GEODETECT_KEPLER_ASSETS) reads. Needs no npm and no checkout.",
    )
    p.add_argument("action", choices=["install"], help="install (idempotent)")
    p.add_argument("--dir", help="target folder (default: $XDG_DATA_HOME/geodetect/kepler-assets, "
                   "~/.local/share/geodetect/kepler-assets)")
    p.add_argument("--registry", default=None, help="npm registry or mirror (default: https://registry.npmjs.org)")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    from geodetect.viz.install_assets import REGISTRY, install_assets

    root = install_assets(args.dir, registry=args.registry or REGISTRY)
    print(f"offline map assets in {root}; use them with: export GEODETECT_KEPLER_ASSETS={root} "
          f"(or geodetect map ... --offline --assets {root})", file=sys.stderr)
    return 0
