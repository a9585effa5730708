#!/usr/bin/env node
// Open a geodetect kepler.gl map in headless Chromium and report what the page did, as JSON on stdout.
//
//   node check_map.js --html map.html --screenshot shot.png [--timeout 90000] [--settle 3000]
//                     [--chromium /usr/bin/chromium] [--width 1280] [--height 800] [--no-network-assets]
//
// Network: requests to https://unpkg.com/<package>@<version>/<path> are answered from this folder's
// node_modules when that exact version is installed (the pinned npm copies of what the CDN serves);
// every other request (basemap styles and tiles, fonts, anything) is refused and listed in the report.
// With --no-network-assets the CDN is refused too (for offline exports, which must need nothing).
// Used by tests/test_browser.py; exit code 0 when the report was written, 2 on usage errors, 1 on crashes.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');

function parseArgs(argv) {
  const out = {timeout: 90000, settle: 3000, chromium: '/usr/bin/chromium', width: 1280, height: 800, networkAssets: true};
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => { if (i + 1 >= argv.length) usage(`${a} needs a value`); return argv[++i]; };
    if (a === '--html') out.html = next();
    else if (a === '--screenshot') out.screenshot = next();
    else if (a === '--timeout') out.timeout = Number(next());
    else if (a === '--settle') out.settle = Number(next());
    else if (a === '--chromium') out.chromium = next();
    else if (a === '--width') out.width = Number(next());
    else if (a === '--height') out.height = Number(next());
    else if (a === '--no-network-assets') out.networkAssets = false;
    else usage(`unknown option ${a}`);
  }
  if (!out.html) usage('--html is required');
  return out;
}

function usage(msg) {
  process.stderr.write(`check_map.js: ${msg}\n`);
  process.exit(2);
}

const MIME = {'.js': 'application/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.wasm': 'application/wasm'};

function installedVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(__dirname, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch (e) {
    return null;
  }
}

// https://unpkg.com/react@18.3.1/umd/x.js -> node_modules/react/umd/x.js when react 18.3.1 is installed
function localCopy(url) {
  const m = /^https:\/\/unpkg\.com\/((?:@[^/]+\/)?[^/@]+)@([^/]+)\/(.+)$/.exec(url.split('?')[0]);
  if (!m) return null;
  const [, name, version, rel] = m;
  if (installedVersion(name) !== version) return null;
  const file = path.join(__dirname, 'node_modules', name, rel);
  if (!file.startsWith(path.join(__dirname, 'node_modules', name) + path.sep) || !fs.existsSync(file)) return null;
  return file;
}

async function main() {
  const args = parseArgs(process.argv);
  const {chromium} = require('playwright-core');
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'geodetect-chromium-'));
  const report = {html: path.resolve(args.html), pageErrors: [], consoleErrors: [], consoleWarnings: [],
    served: [], refused: [], failedRequests: []};
  const t0 = Date.now();
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: args.chromium,
    headless: true,
    viewport: {width: args.width, height: args.height},
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  try {
    await context.route('**/*', async route => {
      const url = route.request().url();
      if (url.startsWith('file:') || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      const file = args.networkAssets ? localCopy(url) : null;
      if (file) {
        report.served.push(url);
        return route.fulfill({status: 200, body: fs.readFileSync(file),
          headers: {'content-type': MIME[path.extname(file)] || 'application/octet-stream',
            'access-control-allow-origin': '*'}});
      }
      report.refused.push(url);
      return route.abort('blockedbyclient');
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('pageerror', e => report.pageErrors.push(String(e && e.stack ? e.stack.split('\n')[0] : e)));
    page.on('console', msg => {
      const entry = {text: msg.text(), url: (msg.location() || {}).url || ''};
      if (msg.type() === 'error') report.consoleErrors.push(entry);
      else if (msg.type() === 'warning') report.consoleWarnings.push(entry);
    });
    page.on('requestfailed', r => report.failedRequests.push({url: r.url(), error: (r.failure() || {}).errorText}));

    await page.goto('file://' + path.resolve(args.html), {waitUntil: 'load', timeout: args.timeout});
    report.loadMs = Date.now() - t0;
    await page.waitForFunction(() => window.__geodetectReady === true || !!window.__geodetectFailed, null,
      {timeout: args.timeout});
    // every layer has been given its data, and deck.gl has a canvas
    await page.waitForFunction(() => {
      const s = window.__keplerStore && window.__keplerStore.getState().keplerGl.map;
      if (!s) return !!window.__geodetectFailed;
      return s.visState.layers.length > 0 && s.visState.layerData.length === s.visState.layers.length &&
        !!document.querySelector('canvas');
    }, null, {timeout: args.timeout}).catch(() => { report.timedOutWaitingForLayers = true; });
    await page.waitForTimeout(args.settle);
    report.readyMs = Date.now() - t0;

    report.failed = await page.evaluate(() => window.__geodetectFailed || null);
    report.state = await page.evaluate(() => {
      const s = window.__keplerStore && window.__keplerStore.getState().keplerGl.map;
      if (!s) return null;
      const col = c => (c && typeof c === 'object' && 'value' in c ? c.value : c);
      return {
        layers: s.visState.layers.map(l => ({
          id: l.id, type: l.type, label: l.config.label, dataId: l.config.dataId, isVisible: l.config.isVisible,
          colorField: l.config.colorField ? l.config.colorField.name : null, colorScale: l.config.colorScale,
          strokeColorField: l.config.strokeColorField ? l.config.strokeColorField.name : null,
          weightField: l.config.weightField ? l.config.weightField.name : null,
          columns: Object.fromEntries(Object.entries(l.config.columns || {}).map(([k, v]) => [k, col(v)])),
        })),
        layerOrder: s.visState.layerOrder,
        layerDataLengths: s.visState.layerData.map(d => (d && d.data && d.data.length !== undefined ? d.data.length : null)),
        datasets: Object.values(s.visState.datasets).map(d => ({
          id: d.id, label: d.label, rows: d.dataContainer ? d.dataContainer.numRows() : null,
          fields: d.fields.map(f => f.name)})),
        tooltip: s.visState.interactionConfig.tooltip.config.fieldsToShow,
        mapState: {latitude: s.mapState.latitude, longitude: s.mapState.longitude, zoom: s.mapState.zoom},
        mapStyle: s.mapStyle.styleType,
      };
    });
    report.dom = await page.evaluate(() => ({
      title: document.title,
      keplerRoot: !!document.querySelector('.kepler-gl'),
      maplibre: !!document.querySelector('.maplibregl-map'),
      canvases: document.querySelectorAll('canvas').length,
      inputs: Array.from(document.querySelectorAll('input')).map(i => i.value).filter(Boolean),
      note: (document.getElementById('geodetect-note') || {}).textContent || null,
      fallback: (document.getElementById('geodetect-fallback') || {}).textContent || null,
      text: document.body.innerText.slice(0, 4000),
    }));
    if (args.screenshot) {
      fs.mkdirSync(path.dirname(path.resolve(args.screenshot)), {recursive: true});
      await page.screenshot({path: args.screenshot});
      report.screenshot = path.resolve(args.screenshot);
    }
    report.totalMs = Date.now() - t0;
  } finally {
    await context.close();
    fs.rmSync(userDataDir, {recursive: true, force: true});
  }
  process.stdout.write(JSON.stringify(report) + '\n');
}

main().catch(e => {
  process.stderr.write(`check_map.js: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
