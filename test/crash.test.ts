import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCrashes, STAGES } from './support/crash.js';

// The quick form of bench/crash.ts: a kill in every stage (live adds and deletes too), each followed by a restart checked
// for integrity, completeness and leftovers. Many kills per stage, at many moments, are the long form's
// (bench/results/crash.md: 230 kills); a second round here took as long again, for moments that form covers.
describe('killed at any moment, the server restarts whole', () => {
  it('survives SIGKILL in every stage of a first start, a retrain and a swap', { timeout: 20 * 60_000 }, async (t) => {
    const kills = await runCrashes({
      kills: STAGES.length,
      seed: 7,
      onKill: (kill) => t.diagnostic(`kill ${kill.n}: ${kill.target} +${kill.delayMs} ms, landed in ${kill.landed}; ready again in ${kill.restartMs} ms${kill.problems.length ? `: ${kill.problems.join('; ')}` : ''}`),
    });
    assert.deepEqual(
      kills.map((k) => k.target),
      [...STAGES],
    );
    assert.deepEqual(kills.filter((k) => k.problems.length > 0), []);
  });
});
