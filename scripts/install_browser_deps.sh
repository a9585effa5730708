#!/usr/bin/env bash
# Install the browser-side dependencies of geodetect's kepler.gl maps, at BUILD time:
#   * tests/browser/node_modules: the pinned JS assets that `geodetect map --offline` inlines
#     (kepler.gl UMD bundle + CSS, react, react-dom, redux, react-redux, styled-components,
#     maplibre-gl CSS) and playwright-core for the browser test (tests/test_browser.py);
#   * Debian's chromium, which the browser test drives headless (skipped with --no-chromium,
#     or when it is already installed).
# Everything comes from the npm registry (exact versions: tests/browser/package.json and
# package-lock.json) and Debian. geodetect itself never downloads anything at run time.
#
#   scripts/install_browser_deps.sh [--no-chromium]
set -euo pipefail
cd "$(dirname "$0")/../tests/browser"

with_chromium=1
for arg in "$@"; do
  case "$arg" in
    --no-chromium) with_chromium=0 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "install_browser_deps.sh: unknown option $arg" >&2; exit 2 ;;
  esac
done

command -v npm >/dev/null || { echo "install_browser_deps.sh: npm is needed (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }

# npm ci replaces node_modules wholesale, so it runs only when the lock changed since the last run.
stamp=node_modules/.geodetect-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi
node fetch-packs.js   # kepler.gl umd/ and maplibre-gl CSS: npm pack + sha512 check, only the files needed

if [ "$with_chromium" = 1 ] && ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "install_browser_deps.sh: chromium is missing; install it (Debian: apt-get install -y chromium)" >&2
    exit 1
  fi
fi
echo "browser deps ready: $(pwd)/node_modules ($(du -sh node_modules | cut -f1)); chromium: $(command -v chromium || command -v chromium-browser || echo 'not installed')"
