// `npm install` skips onnxruntime-node's install script (it downloads CUDA binaries, which fails
// offline) by package.json's allowScripts, not by the .npmrc key the next npm major stops reading.
// A project holding only onnxruntime-node, with this package's allowScripts and no .npmrc, is
// installed with the installer's network shut (global-agent's proxy on a closed port): it succeeds
// and fetches nothing; then, the denial taken away, the installer runs and fails, as it would have.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './support/paths.js';

const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' }).stdout.trim();
const [major, minor] = npmVersion.split('.').map(Number) as [number, number];
const honoursAllowScripts = major > 11 || (major === 11 && minor >= 16);
// The installer downloads something (CUDA binaries) only on linux/x64.
const skip =
  process.platform !== 'linux' || process.arch !== 'x64'
    ? `onnxruntime-node's installer fetches nothing on ${process.platform}/${process.arch}`
    : honoursAllowScripts
      ? false
      : `npm ${npmVersion} does not honour allowScripts (11.16 and later do); the .npmrc key covers it`;

/** The lockfile's entries for onnxruntime-node and what it depends on, for a project of its own. */
function lockFor(name: string): Record<string, unknown> {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dependencies?: Record<string, string>; version: string }> };
  const packages: Record<string, unknown> = {};
  const pending = [name];
  while (pending.length > 0) {
    const key = `node_modules/${pending.pop()!}`;
    if (key in packages) continue;
    const entry = lock.packages[key];
    assert.ok(entry, `${key} is in package-lock.json`);
    packages[key] = { ...entry, dev: undefined, peer: undefined };
    pending.push(...Object.keys(entry.dependencies ?? {}));
  }
  return { name: 'ort-install', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'ort-install', version: '1.0.0', dependencies: { [name]: lock.packages[`node_modules/${name}`]!.version } }, ...packages } };
}

describe('npm install and onnxruntime-node', () => {
  it("skips its CUDA download by package.json's allowScripts, without the .npmrc key", { skip }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'marquee-ort-install-'));
    const ours = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { allowScripts: Record<string, boolean>; dependencies: Record<string, string> };
    const project = (allowScripts: Record<string, boolean>) =>
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'ort-install', version: '1.0.0', private: true, dependencies: { 'onnxruntime-node': ours.dependencies['onnxruntime-node'] }, allowScripts }));
    project({ 'onnxruntime-node': ours.allowScripts['onnxruntime-node']! });
    writeFileSync(join(dir, 'package-lock.json'), JSON.stringify(lockFor('onnxruntime-node')));
    // No npm configuration from outside (npm test passes the project's .npmrc on as npm_config_*), and no way out for the installer.
    const env: NodeJS.ProcessEnv = { GLOBAL_AGENT_HTTP_PROXY: 'http://127.0.0.1:9' };
    for (const [name, value] of Object.entries(process.env)) if (!/^(npm_|ONNXRUNTIME_NODE_INSTALL)/i.test(name)) env[name] ??= value;
    const npm = (...args: string[]) => spawnSync('npm', [...args, '--no-audit', '--no-fund', '--prefer-offline', '--foreground-scripts'], { cwd: dir, env, encoding: 'utf8' });

    const installed = npm('ci');
    assert.equal(installed.status, 0, installed.stderr);
    const bin = join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
    assert.ok(existsSync(join(bin, 'onnxruntime_binding.node')), 'the CPU binaries come with the package');
    assert.ok(!existsSync(join(bin, 'libonnxruntime_providers_cuda.so')), 'no CUDA binaries were fetched');

    // The same installer, allowed: it reaches for the network, and fails.
    project({ 'onnxruntime-node': true });
    const allowed = npm('rebuild', 'onnxruntime-node');
    assert.notEqual(allowed.status, 0, 'the installer ran and failed without a network');
    assert.match(allowed.stdout + allowed.stderr, /127\.0\.0\.1:9|ECONNREFUSED/);
  });
});
