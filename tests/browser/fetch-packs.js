#!/usr/bin/env node
// Unpack the pinned npm tarballs listed under "geodetect.packs" in package.json into
// node_modules/<name>/, keeping only the listed files, after checking each tarball against
// its pinned sha512 integrity. Run by scripts/install_browser_deps.sh (build time only).
//
//   node fetch-packs.js            fetch what is missing or stale
//   node fetch-packs.js --check    exit 1 (and say what) if anything is missing; fetch nothing
'use strict';

const {execFileSync} = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

const here = __dirname;
const pkg = JSON.parse(fs.readFileSync(path.join(here, 'package.json'), 'utf8'));
const packs = (pkg.geodetect && pkg.geodetect.packs) || {};
const checkOnly = process.argv.includes('--check');

function installedVersion(name) {
  try {
    return JSON.parse(fs.readFileSync(path.join(here, 'node_modules', name, 'package.json'), 'utf8')).version;
  } catch (e) {
    return null;
  }
}

function complete(name, spec) {
  if (installedVersion(name) !== spec.version) return false;
  return spec.keep.every(f => fs.existsSync(path.join(here, 'node_modules', name, f.replace(/^package\//, ''))));
}

let missing = 0;
for (const [name, spec] of Object.entries(packs)) {
  if (complete(name, spec)) {
    console.log(`${name}@${spec.version}: present`);
    continue;
  }
  if (checkOnly) {
    console.log(`${name}@${spec.version}: MISSING`);
    missing += 1;
    continue;
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'geodetect-pack-'));
  try {
    const out = execFileSync('npm', ['pack', `${name}@${spec.version}`, '--pack-destination', tmp, '--silent'],
      {cwd: tmp, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop();
    const tgz = path.join(tmp, out);
    const digest = 'sha512-' + crypto.createHash('sha512').update(fs.readFileSync(tgz)).digest('base64');
    if (digest !== spec.integrity) {
      console.error(`${name}@${spec.version}: integrity mismatch (got ${digest}, pinned ${spec.integrity})`);
      process.exit(1);
    }
    execFileSync('tar', ['xzf', tgz, '-C', tmp, ...spec.keep], {stdio: 'inherit'});
    const dest = path.join(here, 'node_modules', name);
    fs.rmSync(dest, {recursive: true, force: true});
    fs.mkdirSync(path.dirname(dest), {recursive: true});
    fs.cpSync(path.join(tmp, 'package'), dest, {recursive: true});  // tmp may be another filesystem
    console.log(`${name}@${spec.version}: unpacked ${spec.keep.length} files into node_modules/${name}`);
  } finally {
    fs.rmSync(tmp, {recursive: true, force: true});
  }
}
process.exit(missing ? 1 : 0);
