// The event loop's lag is on /metrics (prom-client's default metrics, under the marquee_process_ prefix).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Metrics } from '../src/metrics.js';

describe('metrics', () => {
  it("export the event loop's lag, and a stall shows in it", async () => {
    const metrics = new Metrics();
    await new Promise((resolve) => setTimeout(resolve, 50)); // the lag monitor times from its first tick
    const stalled = Date.now();
    while (Date.now() - stalled < 300) {
      /* the event loop held for 300 ms */
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const text = await metrics.registry.metrics();
    for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p50_seconds', 'nodejs_eventloop_lag_p99_seconds', 'nodejs_eventloop_lag_max_seconds']) {
      assert.match(text, new RegExp(`^marquee_process_${name} [0-9.e+-]+$`, 'm'), name);
    }
    const max = Number(/^marquee_process_nodejs_eventloop_lag_max_seconds (\S+)$/m.exec(text)![1]);
    assert.ok(max >= 0.25, `lag max ${max} s after a 300 ms stall`);
  });
});
