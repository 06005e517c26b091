import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { makeCatalogDir, subsetRows } from './support/catalog.js';
import { fuzzCase, fuzzSeeds, keepInCorpus, readCorpus, rssOf, sendCase } from './support/fuzz.js';
import { testModelDir } from './support/model.js';
import { startServer, type RunningServer } from './support/server.js';

const CASES = Number(process.env.MARQUEE_FUZZ_CASES ?? 500);
const SEED = Number(process.env.MARQUEE_FUZZ_SEED ?? 1);
describe(`upload fuzzing: ${CASES} seeded cases (seed ${SEED}) and the corpus`, () => {
  let server: RunningServer;
  let seeds: { name: string; bytes: Buffer }[];

  before(async () => {
    seeds = await fuzzSeeds();
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 30, val: 5, test: 5 })), MARQUEE_BASE_MODEL: testModelDir() });
  });
  after(async () => {
    assert.equal(await server.stop(), 0);
  });

  it('replays every input that once failed', async () => {
    for (const fuzz of readCorpus()) {
      const outcome = await sendCase(`${server.url}/posters/similar?k=3`, fuzz);
      assert.equal(outcome.problem, null, `${fuzz.id} (${fuzz.mutation})`);
    }
  });

  it('answers every mutated upload within the contract, in time, and stays up with bounded memory', async () => {
    const rssBefore = await rssOf(server.child.pid!);
    const failures: string[] = [];
    const statuses = new Map<number, number>();
    let slowest = 0;
    for (let i = 0; i < CASES; i++) {
      const fuzz = fuzzCase(SEED, i, seeds);
      const route = i % 2 ? '/posters/similar?k=3' : '/posters/genre?k=3';
      const outcome = await sendCase(`${server.url}${route}`, fuzz);
      statuses.set(outcome.status, (statuses.get(outcome.status) ?? 0) + 1);
      slowest = Math.max(slowest, outcome.ms);
      if (outcome.problem) {
        failures.push(`${fuzz.id} ${fuzz.mutation}: ${outcome.problem}`);
        keepInCorpus(fuzz, outcome.problem);
      }
    }
    assert.deepEqual(failures, [], 'cases outside the contract (kept in test/fuzz-corpus)');
    assert.ok(slowest < 10_000, `slowest answer ${slowest} ms`);
    assert.ok((statuses.get(200) ?? 0) > 0 && [...statuses.keys()].some((s) => s >= 400), `statuses: ${JSON.stringify([...statuses])}`);
    assert.equal((await fetch(`${server.url}/health`)).status, 200);
    const rssAfter = await rssOf(server.child.pid!);
    assert.ok(rssAfter - rssBefore < 256 * 2 ** 20, `RSS grew by ${((rssAfter - rssBefore) / 2 ** 20).toFixed(0)} MiB`);
  });
});
