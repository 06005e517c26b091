import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../src/errors.js';
import { MicroBatcher } from '../src/model/batcher.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('micro-batcher', () => {
  it('runs concurrent submissions together, up to the batch size, in order', async () => {
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, number>(
      async (inputs) => {
        batches.push(inputs);
        await sleep(20);
        return inputs.map((x) => x * 10);
      },
      { maxBatchSize: 4, maxWaitMs: 5, maxQueue: 100 },
    );
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((x) => batcher.submit(x)));
    assert.deepEqual(results, [10, 20, 30, 40, 50, 60]);
    assert.deepEqual(batches, [[1, 2, 3, 4], [5, 6]]);
  });

  it('waits at most maxWaitMs for a batch to fill', async () => {
    const batcher = new MicroBatcher<number, number>(async (inputs) => inputs, { maxBatchSize: 8, maxWaitMs: 30, maxQueue: 8 });
    const started = Date.now();
    assert.equal(await batcher.submit(7), 7);
    const waited = Date.now() - started;
    assert.ok(waited >= 25, `a lone request waits for company: ${waited} ms`);
  });

  it('refuses with 503 and Retry-After when the queue is full, and recovers', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const batcher = new MicroBatcher<number, number>(
      async (inputs) => {
        await gate;
        return inputs;
      },
      { maxBatchSize: 1, maxWaitMs: 0, maxQueue: 2 },
    );
    const running = batcher.submit(1); // in flight, not queued
    const queued = [batcher.submit(2), batcher.submit(3)];
    await assert.rejects(batcher.submit(4), (error: ApiError) => {
      assert.equal(error.statusCode, 503);
      assert.equal(error.headers['retry-after'], '1');
      return true;
    });
    release();
    assert.deepEqual(await Promise.all([running, ...queued]), [1, 2, 3]);
    assert.equal(await batcher.submit(5), 5);
  });

  it('rejects every request of a failed batch and keeps serving', async () => {
    let fail = true;
    const batcher = new MicroBatcher<number, number>(
      async (inputs) => {
        if (fail) throw new Error('boom');
        return inputs;
      },
      { maxBatchSize: 4, maxWaitMs: 1, maxQueue: 10 },
    );
    const outcomes = await Promise.allSettled([batcher.submit(1), batcher.submit(2)]);
    assert.deepEqual(outcomes.map((o) => o.status), ['rejected', 'rejected']);
    fail = false;
    assert.equal(await batcher.submit(3), 3);
  });
});
