"""The kepler.gl maps opened in a real browser: headless Chromium driven by playwright-core.

``tests/browser/check_map.js`` opens an exported map from disk and answers requests to the
unpkg CDN from the pinned npm copies in ``tests/browser/node_modules`` (only for exactly the
pinned versions); every other request is refused. The page must run with no uncaught error and
no console error from its scripts (the browser's own "Failed to load resource" lines for the
refused basemap are network, not script, errors), kepler.gl must hold the expected layers and
datasets, and the screenshot must show the data. Screenshots go to ``out/test-artifacts/``
(or ``$GEODETECT_TEST_ARTIFACTS``) for CI.

Needs node, Debian's chromium and ``scripts/install_browser_deps.sh``; without them these tests
SKIP saying so, unless ``GEODETECT_REQUIRE_BROWSER=1`` (CI), where they FAIL instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER = ROOT / "tests" / "browser"
ARTIFACTS = Path(os.environ.get("GEODETECT_TEST_ARTIFACTS", ROOT / "out" / "test-artifacts"))
REQUIRED = os.environ.get("GEODETECT_REQUIRE_BROWSER", "") not in ("", "0")
INSTALL = "run scripts/install_browser_deps.sh"


def _chromium() -> str | None:
    for c in (os.environ.get("GEODETECT_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
              "/usr/bin/chromium"):
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return c
    return None


def _missing() -> str | None:
    if shutil.which("node") is None:
        return f"node is not installed (Debian: apt-get install -y nodejs), then {INSTALL}"
    if _chromium() is None:
        return f"chromium is not installed; {INSTALL} (or apt-get install -y chromium)"
    if not (BROWSER / "node_modules" / "playwright-core" / "package.json").is_file():
        return f"tests/browser/node_modules has no playwright-core; {INSTALL}"
    from geodetect.viz.assets import ASSETS

    for a in ASSETS:
        if not (BROWSER / "node_modules" / a.package / a.path).is_file():
            return f"tests/browser/node_modules has no {a.package}/{a.path}; {INSTALL}"
    return None


_REASON = _missing()
if _REASON and REQUIRED:  # CI asked for the browser tests: a missing piece is a failure, not a skip
    pytest.fail(f"GEODETECT_REQUIRE_BROWSER is set but {_REASON}", pytrace=False)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(_REASON is not None, reason=_REASON or "")]

gpd = pytest.importorskip("geopandas")
shapely = pytest.importorskip("shapely")
pytest.importorskip("h3")


def open_in_chromium(html: Path, shot_name: str, *, network_assets: bool = True, timeout_s: int = 240) -> dict:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / shot_name
    cmd = ["node", str(BROWSER / "check_map.js"), "--html", str(html), "--screenshot", str(shot),
           "--chromium", _chromium(), "--timeout", str(timeout_s * 1000 // 2)]
    if not network_assets:
        cmd.append("--no-network-assets")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=BROWSER)
    assert proc.returncode == 0, f"check_map.js failed ({proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    (ARTIFACTS / (Path(shot_name).stem + ".json")).write_text(json.dumps(report, indent=1))
    return report


def script_errors(report) -> list:
    """Uncaught errors, and console errors other than the browser's note about a refused request."""
    refused = set(report["refused"])
    console = [e for e in report["consoleErrors"]
               if not (e["text"].startswith("Failed to load resource") and e["url"] in refused)]
    return report["pageErrors"] + console


def screenshot(report) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(report["screenshot"]).convert("RGB")).astype(np.int16)


def near(img, hex_color, tol=60) -> np.ndarray:
    from geodetect.viz._style import hex_to_rgb

    return np.abs(img - np.array(hex_to_rgb(hex_color))).sum(axis=2) < tol


def toy_map_data(seed=0):
    from test_viz import grid_regions, toy

    return toy(n_points=150, n_boxes=40, seed=seed), grid_regions()


def check_kepler_state(report, spec):
    state = report["state"]
    assert state is not None, f"no kepler.gl store on the page: {report.get('dom')}"
    want = spec["config"]["config"]["visState"]["layers"]
    got = {lay["id"]: lay for lay in state["layers"]}
    assert list(got) == [lay["id"] for lay in want]
    for lay in want:
        g = got[lay["id"]]
        assert g["type"] == lay["type"] and g["dataId"] == lay["config"]["dataId"] and g["isVisible"]
        assert g["label"] == lay["config"]["label"]
        vc = lay["visualChannels"]
        if vc.get("colorField"):
            assert g["colorField"] == vc["colorField"]["name"] and g["colorScale"] == vc["colorScale"]
    # every layer got its data (the heatmap is drawn by the basemap renderer and reports none)
    for lay, n in zip(state["layers"], state["layerDataLengths"]):
        if lay["type"] != "heatmap":
            assert n and n > 0, lay["id"]
    rows = {d["id"]: d["rows"] for d in state["datasets"]}
    for d in spec["datasets"]:
        n = len(d["data"]["features"]) if d["format"] == "geojson" else len(d["data"]["rows"])
        assert rows[d["id"]] == n
    ms, want_ms = state["mapState"], spec["config"]["config"]["mapState"]
    assert ms["latitude"] == pytest.approx(want_ms["latitude"], abs=1e-3)
    assert ms["longitude"] == pytest.approx(want_ms["longitude"], abs=1e-3)
    assert ms["zoom"] == pytest.approx(want_ms["zoom"], abs=1e-2)
    tips = {k: [f["name"] for f in v] for k, v in state["tooltip"].items()}
    want_tips = ["class_name", "score"] + (["region"] if spec["meta"]["regions"] else []) + ["detector"]
    assert [t for t in tips["detections"] if t in want_tips] == want_tips
    dom = report["dom"]
    assert dom["keplerRoot"] and dom["maplibre"] and dom["canvases"] >= 2
    for lay in want:  # the layer panel lists every layer by its label
        assert lay["config"]["label"] in dom["inputs"]


def test_online_map_renders_with_the_pinned_cdn_assets(tmp_path):
    from geodetect.viz import to_kepler
    from geodetect.viz.assets import ASSETS
    from test_viz import read_spec

    dets, regions = toy_map_data()
    out = to_kepler(dets, tmp_path / "online.html", regions=regions, by="fips", hexbins=7)
    spec = read_spec(out)
    report = open_in_chromium(out, "kepler-online.png")
    assert not script_errors(report), script_errors(report)
    assert not report.get("failed") and not report.get("timedOutWaitingForLayers")
    # the page loaded exactly the pinned files from the CDN (served from the npm copies, SRI checked)...
    assert sorted(report["served"]) == sorted(a.url for a in ASSETS)
    # ...and asked for nothing else than the free basemap style (refused here: no network)
    assert report["refused"] and all(u.startswith("https://basemaps.cartocdn.com/") for u in report["refused"])
    check_kepler_state(report, spec)
    assert report["dom"]["title"] == "geodetect: 190 detections"

    img = screenshot(report)
    map_area = img[:, 330:]  # right of kepler.gl's side panel
    colors = spec["meta"]["class_colors"]
    for cls in ("car", "truck", "bus"):  # every class is visible in its colour
        assert near(map_area, colors[cls]).sum() > 30, cls
    assert len(np.unique(map_area.reshape(-1, 3), axis=0)) > 500  # a drawn map, not a blank page


def test_offline_map_renders_with_no_network_at_all(tmp_path):
    from geodetect.viz import to_kepler
    from test_viz import read_spec

    dets, regions = toy_map_data(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the size-guard warning: tested in test_viz
        out = to_kepler(dets, tmp_path / "offline.html", regions=regions, by="fips", hexbins=7, offline=True,
                        max_features=100)
    spec = read_spec(out)
    report = open_in_chromium(out, "kepler-offline.png", network_assets=False)
    assert report["served"] == []
    assert not any("unpkg.com" in u for u in report["refused"])  # everything kepler.gl needs is inside the file
    assert not script_errors(report), script_errors(report)
    check_kepler_state(report, spec)
    # the size guard says so on the page
    assert "sample of 100" in report["dom"]["title"] and "max_features=100" in (report["dom"]["note"] or "")
    img = screenshot(report)
    assert near(img[:, 330:], spec["meta"]["class_colors"]["car"]).sum() > 30


def test_antimeridian_map_draws_both_sides(tmp_path):
    from geodetect.frames import make_detections
    from geodetect.viz import to_kepler
    from test_viz import read_spec

    rng = np.random.default_rng(5)
    lon = np.concatenate([rng.uniform(178.6, 179.95, 60), rng.uniform(-179.95, -178.6, 60)])
    lat = rng.uniform(51.2, 52.4, 120)
    # one class west of the antimeridian, another east of it
    classes = ["west"] * 60 + ["east"] * 60
    geoms = np.asarray(shapely.points(lon, lat), dtype=object)
    dets = make_detections("sea-lion-counter", "1", "aleutians", classes, np.ones(120), geoms, np.zeros(120),
                           "EPSG:4326")
    out = to_kepler(dets, tmp_path / "antimeridian.html", hexbins=None, heatmap=False, basemap="none")
    spec = read_spec(out)
    report = open_in_chromium(out, "kepler-antimeridian.png")
    assert not script_errors(report), script_errors(report)
    assert report["refused"] == []  # basemap none: no request at all beyond the pinned assets
    check_kepler_state(report, spec)
    img = screenshot(report)
    colors = spec["meta"]["class_colors"]
    west, east = near(img, colors["west"]), near(img, colors["east"])
    assert west[:, 330:].sum() > 200 and east[:, 330:].sum() > 200  # both halves drawn
    xw = np.nonzero(west[:, 330:].any(axis=0))[0].mean()
    xe = np.nonzero(east[:, 330:].any(axis=0))[0].mean()
    assert xw < xe  # west of the antimeridian is drawn on the left, next to the east side
