"""Offline maps without a checkout: `python -m geodetect.viz.install_assets` fills a user folder from an npm registry.

The registry here is a local one on 127.0.0.1 serving tarballs made from the checkout's
tests/browser/node_modules (scripts/install_browser_deps.sh fills it; CI sets
GEODETECT_REQUIRE_BROWSER=1, which makes its absence a failure).
"""

from __future__ import annotations

import functools
import http.server
import io
import os
import re
import tarfile
import threading
from pathlib import Path

import pytest

NODE_MODULES = Path(__file__).resolve().parent / "browser" / "node_modules"
REQUIRE = os.environ.get("GEODETECT_REQUIRE_BROWSER", "") not in ("", "0")


def _tgz(pkg_dir: Path, files: list[str], tamper: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rel in files + ["package.json"]:
            data = (pkg_dir / rel).read_bytes()
            if rel == tamper:
                data = data + b"/* changed */"
            info = tarfile.TarInfo(f"package/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def registry(tmp_path):
    """A directory served on 127.0.0.1 laid out like the npm registry: /<pkg>/-/<pkg>-<version>.tgz."""
    from geodetect.viz.assets import ASSETS

    if not (NODE_MODULES / "kepler.gl" / "umd" / "keplergl.min.js").is_file():
        reason = f"{NODE_MODULES} is not filled (bash scripts/install_browser_deps.sh --no-chromium)"
        if REQUIRE:
            pytest.fail(f"GEODETECT_REQUIRE_BROWSER is set but {reason}", pytrace=False)
        pytest.skip(reason)
    root = tmp_path / "registry"
    by_pkg: dict = {}
    for a in ASSETS:
        by_pkg.setdefault((a.package, a.version), []).append(a.path)

    def publish(tamper=None):
        for (pkg, ver), paths in by_pkg.items():
            out = root / pkg / "-" / f"{pkg}-{ver}.tgz"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(_tgz(NODE_MODULES / pkg, paths, tamper if pkg == "redux" else None))

    publish()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", publish
    finally:
        srv.shutdown()
        srv.server_close()


def test_install_then_offline_map_without_a_checkout(registry, tmp_path, monkeypatch, capsys):
    import geopandas as gpd
    from shapely.geometry import Point

    import geodetect as gd
    from geodetect.viz.assets import find_assets
    from geodetect.viz.install_assets import main
    from geodetect.viz.notebook import read_map_spec

    url, _ = registry
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert main(["--registry", url]) == 0
    dest = tmp_path / "data" / "geodetect" / "kepler-assets"
    assert f"GEODETECT_KEPLER_ASSETS={dest}" in capsys.readouterr().err
    assert len(find_assets(dest)) > 0  # every pinned file, integrity-checked
    assert main(["--registry", url]) == 0  # idempotent
    dets = gpd.GeoDataFrame({"detector": "t", "detector_version": "1", "scene_id": "s", "class_name": ["car"],
                             "score": [0.9], "area_m2": [0.0]}, geometry=[Point(-122.4, 37.7)], crs=4326)
    monkeypatch.setenv("GEODETECT_KEPLER_ASSETS", str(dest))
    html = gd.to_kepler(dets, tmp_path / "map.html", offline=True)
    text = Path(html).read_text()
    assert not re.search(r'(?:src|href)="https?:', text)  # nothing is loaded from the network
    assert 'data-asset="kepler.gl@' in text and len(text) > 5_000_000  # the kepler.gl bundle is inlined (gzipped)
    assert read_map_spec(html)["meta"]["mode"] == "offline"


def test_tampered_package_is_refused(registry, tmp_path):
    from geodetect.errors import ConfigError
    from geodetect.viz.install_assets import install_assets

    url, publish = registry
    publish(tamper="dist/redux.min.js")
    with pytest.raises(ConfigError, match="redux.min.js does not match its pinned integrity"):
        install_assets(tmp_path / "assets", registry=url)
    assert not (tmp_path / "assets" / "redux").exists()
