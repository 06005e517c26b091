// The Python child (the training package) gets an allow-list of the server's environment: never the
// admin token or TMDB's credentials. A stand-in interpreter prints the environment it was given.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runTraining, type TrainingEvent } from '../src/model/python.js';

describe("the Python child's environment", () => {
  it('holds the allowed variables and what the server sets, never the admin token or TMDB credentials', async () => {
    const python = join(mkdtempSync(join(tmpdir(), 'marquee-python-')), 'python');
    writeFileSync(python, `#!${process.execPath}\nprocess.stdout.write(JSON.stringify({ event: 'env', args: process.argv.slice(2), env: process.env }) + '\\n');\n`);
    chmodSync(python, 0o755);
    const secrets = { MARQUEE_ADMIN_TOKEN: 'admin-secret', TMDB_API_KEY: 'tmdb-key', TMDB_BEARER_TOKEN: 'tmdb-token', AWS_SECRET_ACCESS_KEY: 'aws', DATABASE_URL: 'postgres://u:p@h/db' };
    const allowed = { CUDA_VISIBLE_DEVICES: '0', OMP_NUM_THREADS: '2', PYTHONHASHSEED: '0', LC_ALL: 'C.UTF-8', HTTPS_PROXY: 'http://proxy:3128', MARQUEE_CACHE: '/cache', MASTER_ADDR: '10.0.0.1' };
    const saved = { ...process.env };
    Object.assign(process.env, secrets, allowed);
    const events: TrainingEvent[] = [];
    try {
      await runTraining(python, ['export-base', '--out', 'x'], (event) => events.push(event));
    } finally {
      for (const name of Object.keys({ ...secrets, ...allowed })) if (!(name in saved)) delete process.env[name];
    }
    const { args, env } = events.find((e) => e.event === 'env') as unknown as { args: string[]; env: Record<string, string> };
    assert.deepEqual(args, ['-m', 'training', 'export-base', '--out', 'x']);
    for (const name of Object.keys(secrets)) assert.equal(env[name], undefined, `${name} is not passed`);
    for (const [name, value] of Object.entries(allowed)) assert.equal(env[name], value, `${name} is passed`);
    assert.equal(env.PATH, process.env.PATH);
    assert.equal(env.HOME, process.env.HOME);
    assert.equal(env.PYTHONUNBUFFERED, '1');
    assert.equal(env.MARQUEE_PARENT_PID, String(process.pid));
    const unexpected = Object.keys(env).filter((name) => name.startsWith('MARQUEE_') && !['MARQUEE_CACHE', 'MARQUEE_PARENT_PID', 'MARQUEE_NSFWJS', 'MARQUEE_VENV'].includes(name));
    assert.deepEqual(unexpected, [], 'no other setting of the server reaches the child');
  });
});
