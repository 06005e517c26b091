import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './support/paths.js';

/** scripts/check-unawaited.mjs, which scripts/test.sh runs on the whole tree, finds what it is for and nothing else. */
describe('the check for unawaited Promises', () => {
  it('finds a dropped Promise, one given to an assertion, one compared and one tested, one held across an await in the server, and passes the awaited, voided, caught and null-checked', () => {
    const run = spawnSync(process.execPath, [join(ROOT, 'scripts', 'check-unawaited.mjs'), join(ROOT, 'test', 'fixtures', 'unawaited', 'tsconfig.json')], { encoding: 'utf8' });
    assert.equal(run.status, 1, run.stderr);
    const found = run.stderr.split('\n').filter((line) => line.startsWith('dropped.ts:'));
    assert.deepEqual(found, [
      "dropped.ts:9: a Promise nobody awaits: get('a');",
      "dropped.ts:10: a Promise given to assert.equal: get('b')",
      "dropped.ts:11: a Promise compared: get('c')",
      "dropped.ts:18: a Promise tested as a condition: get('i')",
    ]);
    const held = run.stderr.split('\n').filter((line) => line.startsWith('src/held.ts:'));
    assert.deepEqual(held, ["src/held.ts:15: a Promise held across an await before anything handles it: early = get('a')"]);
  });
});
