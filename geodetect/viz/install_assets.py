"""Offline kepler.gl maps without a checkout: install the pinned browser assets into a user folder.

``scripts/install_browser_deps.sh`` fills ``tests/browser/node_modules`` of a source
checkout, which a pip-installed geodetect does not have. One command does the same for
any install, with Python alone (no npm), into a user folder:

    python -m geodetect.viz.install_assets          # into ~/.local/share/geodetect/kepler-assets
    export GEODETECT_KEPLER_ASSETS=~/.local/share/geodetect/kepler-assets
    geodetect map dets.parquet --out map.html --offline

It downloads, at install time and never at run time, the npm tarballs of the pinned
packages (:data:`geodetect.viz.assets.ASSETS`) from the npm registry, keeps only the files
an offline map inlines, checks each against its pinned Subresource Integrity hash (a file
with other bytes is refused and nothing is written for it) and writes them as a
``node_modules``-style folder: ``<dir>/<package>/<path>`` and ``<dir>/<package>/package.json``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from geodetect.errors import ConfigError, OutputError

__all__ = ["install_assets", "user_assets_dir", "REGISTRY"]

REGISTRY = "https://registry.npmjs.org"


def user_assets_dir() -> Path:
    """``$XDG_DATA_HOME/geodetect/kepler-assets`` (``~/.local/share/...`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "geodetect" / "kepler-assets"


def _sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def _fetch(url: str, timeout: float) -> bytes:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - the npm registry (or a mirror)
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"{url}: HTTP {exc.code} {exc.reason}; check --registry") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ConfigError(f"{url}: cannot download ({getattr(exc, 'reason', exc)}); check your network or --registry") \
            from None


def install_assets(dest=None, *, registry: str = REGISTRY, timeout: float = 120.0) -> Path:
    """Download, check and write the pinned offline-map assets into ``dest``; return it.

    Packages already present with the pinned bytes are left as they are.
    """
    from geodetect.viz.assets import ASSETS

    root = Path(os.fspath(dest)) if dest is not None else user_assets_dir()
    by_pkg: dict[tuple[str, str], list] = {}
    for a in ASSETS:
        by_pkg.setdefault((a.package, a.version), []).append(a)
    for (pkg, ver), assets in by_pkg.items():
        target = root / pkg
        if all((target / a.path).is_file() and _sri((target / a.path).read_bytes()) == a.integrity for a in assets) \
                and (target / "package.json").is_file():
            continue
        name = pkg.split("/")[-1]
        url = f"{registry.rstrip('/')}/{pkg}/-/{name}-{ver}.tgz"
        blob = _fetch(url, timeout)
        try:
            tar = tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")
        except tarfile.TarError as exc:
            raise ConfigError(f"{url}: not an npm tarball ({exc})") from None
        files = {}
        with tar:
            for a in assets + [None]:
                member = f"package/{a.path}" if a is not None else "package/package.json"
                try:
                    data = tar.extractfile(member).read()
                except (KeyError, AttributeError):
                    raise ConfigError(f"{url}: has no {member}; is {pkg}@{ver} the right package?") from None
                if a is not None and _sri(data) != a.integrity:
                    raise ConfigError(f"{url}: {a.path} does not match its pinned integrity {a.integrity[:20]}...; "
                                      "refusing it (a changed or corrupt package)")
                files[a.path if a is not None else "package.json"] = data
        if json.loads(files["package.json"]).get("version") != ver:
            raise ConfigError(f"{url}: package.json says version {json.loads(files['package.json']).get('version')}, "
                              f"expected {ver}")
        for rel, data in files.items():
            out = target / rel
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
                tmp = out.with_name(out.name + ".part")
                tmp.write_bytes(data)
                os.replace(tmp, out)
            except OSError as exc:
                raise OutputError(f"{out}: cannot write ({exc.strerror or exc}); choose another --dir") from None
    return root


def main(argv=None) -> int:
    """``python -m geodetect.viz.install_assets [--dir DIR] [--registry URL]``."""
    import argparse
    import sys

    from geodetect.errors import GeodetectError

    ap = argparse.ArgumentParser(prog="python -m geodetect.viz.install_assets",
                                 description="Install the pinned kepler.gl assets that offline maps inline "
                                 "into a user folder (no npm, no checkout).")
    ap.add_argument("--dir", help="target folder (default: $XDG_DATA_HOME/geodetect/kepler-assets, "
                    "~/.local/share/geodetect/kepler-assets)")
    ap.add_argument("--registry", default=REGISTRY, help=f"npm registry or mirror (default: {REGISTRY})")
    args = ap.parse_args(argv)
    try:
        root = install_assets(args.dir, registry=args.registry)
    except GeodetectError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"offline map assets in {root}; use them with: export GEODETECT_KEPLER_ASSETS={root} "
          f"(or geodetect map ... --offline --assets {root})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
