#!/usr/bin/env node
// Builds the native graph walk (binding.gyp) as `npm install`'s install step. node-gyp comes with
// npm; the headers are Node's own where its installation has them (<prefix>/include/node, as
// Debian's and the official images' do), so the build needs no network. A machine that cannot build
// it (no C++ compiler) still installs: its searches then go through usearch's own binding (src/search/graph-walk.ts).
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = resolve(dirname(process.execPath), '..');
const nodeGyp =
  process.env.npm_config_node_gyp ??
  [join(prefix, 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'), join(dirname(process.execPath), 'node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(existsSync);
const args = ['rebuild', '--release', '--loglevel=warn'];
if (existsSync(join(prefix, 'include/node/node_api.h'))) args.push(`--nodedir=${prefix}`);

try {
  if (!nodeGyp) throw new Error('node-gyp not found beside npm');
  execFileSync(process.execPath, [nodeGyp, ...args], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  console.log('marquee: built build/Release/graph_walk.node');
} catch (error) {
  console.warn(`marquee: the native graph walk was not built (${error.message.split('\n')[0]}); best_score's searches go through usearch's binding`);
}
