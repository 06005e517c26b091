// Creating the Python environment is an async step: the server keeps answering while pip runs,
// and a retrain reports the step's progress. pip and python are played by a stand-in script.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { ensurePython, type EnvironmentProgress } from '../src/model/python.js';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { adminRequest, startServer } from './support/server.js';

const PACKAGES = 63; // training/requirements.lock's

/**
 * Plays `python3 -m venv DIR` (DIR/bin/python becomes a copy of it) and the venv's `python -m pip
 * install -r LOCK` (a "Collecting" line per package, 20 ms apart); it cannot run the training package.
 */
function standInPython(): string {
  const file = join(mkdtempSync(join(tmpdir(), 'marquee-python-')), 'python3');
  writeFileSync(
    file,
    `#!/usr/bin/env bash
if [[ "$1 $2" == "-m venv" ]]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
if [[ "$1 $2" == "-m pip" ]]; then
  lock="\${@: -1}"
  grep -vE '^[[:space:]]*(#|$)' "$lock" | while read -r line; do echo "Collecting \${line%%=*}"; sleep 0.02; done
  echo "Installing collected packages: all of them"; sleep 0.3; exit 0
fi
echo "a stand-in interpreter: it cannot run $*" >&2; exit 3
`,
  );
  chmodSync(file, 0o755);
  return file;
}

describe('the Python environment', () => {
  it('is created in a child process, with progress, the event loop free', async () => {
    const venv = join(mkdtempSync(join(tmpdir(), 'marquee-venv-')), 'venv');
    const saved = { venv: process.env.MARQUEE_VENV, python: process.env.PYTHON };
    process.env.MARQUEE_VENV = venv;
    process.env.PYTHON = standInPython();
    try {
      const progress: EnvironmentProgress[] = [];
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      await new Promise((resolve) => setTimeout(resolve, 50)); // the monitor times from its first tick: a stall before it goes unseen
      const started = performance.now();
      const python = await ensurePython(null, pino({ level: 'silent' }), { onProgress: (p) => progress.push({ ...p }) });
      const ms = performance.now() - started;
      await new Promise((resolve) => setTimeout(resolve, 50)); // and records a stall at its next tick
      delay.disable();
      assert.equal(python, join(venv, 'bin', 'python'));
      assert.ok(existsSync(join(venv, '.marquee-lock.sha256')), 'the stamp of a finished install');
      assert.ok(ms > 1000, `it took ${ms.toFixed(0)} ms`);
      // Run on this thread (spawnSync), the loop stood still for all of it; on a busy machine it waits for a core now and then.
      assert.ok(delay.max / 1e6 < ms / 4, `the event loop stood still for ${(delay.max / 1e6).toFixed(0)} ms of ${ms.toFixed(0)} ms`);
      assert.equal(progress[0]?.step, 'creating the venv');
      assert.deepEqual(
        progress.filter((p) => p.done === PACKAGES).map((p) => p.total),
        [PACKAGES, PACKAGES],
        'every package collected, then installed',
      );
      assert.equal(progress.at(-1)?.step, 'installing the collected packages');
      // Up to date: nothing to do, no step to report.
      const again: EnvironmentProgress[] = [];
      assert.equal(await ensurePython(null, pino({ level: 'silent' }), { onProgress: (p) => again.push(p) }), python);
      assert.deepEqual(again, []);
    } finally {
      process.env.MARQUEE_VENV = saved.venv;
      process.env.PYTHON = saved.python;
      if (saved.venv === undefined) delete process.env.MARQUEE_VENV;
      if (saved.python === undefined) delete process.env.PYTHON;
    }
  });

  it('is a retrain step with progress, while the server answers', async () => {
    const token = 'env-token';
    const server = await startServer({
      MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 20, val: 8, test: 0 })),
      MARQUEE_BASE_MODEL: testModelDir(),
      MARQUEE_ADMIN_TOKEN: token,
      MARQUEE_PYTHON: '',
      MARQUEE_VENV: join(mkdtempSync(join(tmpdir(), 'marquee-venv-')), 'venv'),
      PYTHON: standInPython(),
    });
    try {
      const { status, body: job } = await adminRequest(server.url, token, 'POST', '/admin/retrain', { epochs: 1 });
      assert.equal(status, 202, JSON.stringify(job));
      const seen: { state: string; stage?: string; done?: number; total?: number }[] = [];
      const health: number[] = [];
      for (;;) {
        const { body } = await adminRequest(server.url, token, 'GET', `/admin/jobs/${job.id}`);
        seen.push({ state: body.state, ...(body.progress ?? {}) });
        if (['succeeded', 'failed', 'cancelled', 'rejected'].includes(body.state)) break;
        const started = performance.now();
        assert.equal((await fetch(`${server.url}/health`)).status, 200);
        health.push(performance.now() - started);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      const steps = seen.filter((s) => s.stage === 'python environment');
      assert.ok(steps.length > 0, `the environment step was reported: ${JSON.stringify(seen.slice(-5))}`);
      assert.equal(steps[0]!.state, 'preparing', 'before training');
      assert.ok(steps.some((s) => s.total === PACKAGES && (s.done ?? 0) > 0), JSON.stringify(steps.slice(-3)));
      // The stand-in cannot train: the job fails there, after the environment step.
      assert.equal(seen.at(-1)?.state, 'failed');
      health.sort((a, b) => a - b);
      assert.ok(health.at(-1)! < 500, `GET /health took up to ${health.at(-1)!.toFixed(0)} ms during the job`);
    } finally {
      await server.stop();
    }
  });
});
