import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CursorError, type NewPoster } from '../src/state/catalog.js';
import { JobConflictError } from '../src/state/jobs.js';
import type { PosterTitles, TitleFilter } from '../src/state/titles.js';
import { titlePhrases } from '../src/search/title-query.js';
import type { EmbeddingSource } from '../src/search/vector-index.js';
import { RowsSource } from '../src/state/embedding-snapshot.js';
import type { EmbeddingSpace } from '../src/state/embeddings.js';
import type { ModelVersion, VariantPolicy } from '../src/state/models.js';
import { isDatabaseUnavailable } from '../src/errors.js';
import { openPool } from '../src/state/postgres/db.js';
import { PostgresJobStore } from '../src/state/postgres/jobs.js';
import { State } from '../src/state/state.js';
import { ROOT } from './support/paths.js';
import { startCluster, type TestCluster } from './support/postgres.js';

/**
 * The stores, held to one contract: the same calls give the same answers on SQLite (a database in
 * memory) and on PostgreSQL (a throwaway cluster on loopback, a database per test).
 */
let cluster: TestCluster;
before(async () => {
  cluster = await startCluster();
});
after(async () => {
  await cluster?.stop();
});

const backends: { name: string; open(policy?: VariantPolicy): Promise<State>; gainADigit?(): Promise<void> }[] = [
  { name: 'SQLite', open: async (policy) => State.inMemory(policy) },
  {
    name: 'PostgreSQL',
    open: async (policy) => State.connect({ dataDir: '', databaseUrl: (lastDatabase = await cluster.database()) }, policy),
    gainADigit: () => transactionIdsGainADigit(lastDatabase),
  },
];
let lastDatabase = '';

/** Transaction ids used up (one per subtransaction that writes) until the next one has a digit more. */
async function transactionIdsGainADigit(url: string): Promise<void> {
  const pool = await openPool(url);
  try {
    const client = await pool.connect();
    try {
      const current = (await client.query<{ x: string }>('SELECT pg_current_xact_id()::text AS x')).rows[0]!.x;
      await client.query('CREATE TEMP TABLE burnt (n INTEGER)');
      const needed = 10 ** current.length - Number(current) + 2;
      await client.query(`DO $$ BEGIN FOR i IN 1..${needed} LOOP BEGIN INSERT INTO burnt VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END $$`);
    } finally {
      client.release();
    }
  } finally {
    await pool.end();
  }
}

const model = (version: string, createdAt: string): Omit<ModelVersion, 'variants'> => ({
  version, precision: 'fp32', filePath: `models/${version}.onnx`, fileSha256: 'a'.repeat(64), dims: 4, inputWidth: 16, inputHeight: 24,
  inputName: 'image', outputName: 'embedding', preprocessing: { width: 16, height: 24 } as unknown as ModelVersion['preprocessing'],
  source: { format: 'marquee-model/1', note: 'ü' }, metrics: null, checkpointPath: `models/${version}.pt`, createdAt,
}); // prettier-ignore

const poster = (id: string, fields: Partial<NewPoster> = {}): NewPoster => ({
  id, title: `Title ${id}`, year: null, releaseDate: null, genres: ['Drama'], singleGenre: fields.genres?.[0] ?? 'Drama', split: null,
  imagePath: `images/${id}.jpg`, imageSha256: 'a'.repeat(64), pixelSha256: `pixels-${id}`, width: 2, height: 3, source: null, ...fields,
}); // prettier-ignore
const hashOf = (digit: string) => ({ whole: digit.repeat(64), trimmed: digit.repeat(64), crop95: digit.repeat(64), crop85: digit.repeat(63) + 'd' });

for (const backend of backends) {
  describe(`stores on ${backend.name}`, () => {
    it('catalog: keys that never change nor come back, counters of what derived figures depend on, pages by id, deletes remembered', async () => {
      const state = await backend.open();
      const { catalog } = state;
      try {
        const added = await catalog.upsert(poster('b', { genres: ['Drama', 'War'], year: 1999 }), 'now');
        assert.equal(added.change, 'added');
        const start = await catalog.changes();
        assert.deepEqual(await catalog.upsert(poster('b', { genres: ['Drama', 'War'], year: 1999, source: { y: 1, x: [2, { b: 1, a: 0 }] } }), 'now'), { key: added.key, change: 'updated' });
        assert.deepEqual(await catalog.upsert(poster('b', { genres: ['Drama', 'War'], year: 1999, source: { x: [2, { a: 0, b: 1 }], y: 1 } }), 'later'), { key: added.key, change: 'unchanged' }, 'the same source, its keys in another order');
        assert.deepEqual(await catalog.changes(), start, 'a source or a title moves no counter');
        const before = await catalog.fingerprint();
        await catalog.upsert(poster('b', { genres: ['War'], year: 1999 }), 'now');
        assert.deepEqual(await catalog.changes(), { changes: start.changes + 1, pictures: start.pictures });
        assert.notEqual(await catalog.fingerprint(), before);
        await catalog.upsert(poster('b', { genres: ['War'], year: 1999, pixelSha256: 'other pixels' }), 'now');
        assert.deepEqual(await catalog.changes(), { changes: start.changes + 2, pictures: start.pictures + 1 });

        for (const [id, year, genres] of [['a', 2001, ['Comedy']], ['c', 1999, ['War', 'Comedy']], ['d', null, ['War']], ['é', 1990, ['War']]] as const) {
          await catalog.upsert(poster(id, { year, genres: [...genres] }), 'now');
        }
        assert.equal(await catalog.count(), 5);
        const b = (await catalog.get('b'))!;
        assert.deepEqual([b.key, b.genres, b.singleGenre, b.pixelSha256, b.source], [added.key, ['War'], 'War', 'other pixels', null]);
        assert.equal((await catalog.byPixelSha256('other pixels'))?.id, 'b');
        assert.equal(await catalog.byPixelSha256('none'), null);
        const all = await catalog.all();
        assert.deepEqual(all.map((p) => p.id), ['b', 'a', 'c', 'd', 'é'], 'by key: the order of adding');
        assert.deepEqual([...(await catalog.getMany([all[1]!.key, all[4]!.key, 999_999])).values()].map((p) => p.id).sort(), ['a', 'é']);
        const byIds = await catalog.getByIds(['é', 'none', 'b', 'é']);
        assert.deepEqual([...byIds.keys()].sort(), ['b', 'é']);
        assert.deepEqual(byIds.get('b'), b);
        assert.equal((await catalog.getByIds([])).size, 0);
        assert.deepEqual((await catalog.filterFieldsAfter(all[1]!.key, 2)).map((f) => [f.key, f.year, f.genres]), [[all[2]!.key, 1999, ['War', 'Comedy']], [all[3]!.key, null, ['War']]]);

        const pages: string[][] = [];
        let cursor: string | undefined;
        do {
          const page = await catalog.browse({ genre: 'War', yearFrom: 1990, limit: 2, cursor });
          pages.push(page.posters.map((p) => p.id));
          cursor = page.nextCursor ?? undefined;
        } while (cursor);
        assert.deepEqual(pages, [['b', 'c'], ['é']], 'by id, byte by byte (é after the ASCII letters)');
        assert.deepEqual((await catalog.browse({ yearTo: 1995, limit: 10 })).posters.map((p) => p.id), ['é']);
        await assert.rejects(catalog.browse({ limit: 1, cursor: 'made-up' }), CursorError);

        const gone = (await catalog.delete('c', 'now'))!;
        assert.equal(gone.id, 'c');
        assert.equal(await catalog.delete('c', 'now'), null);
        assert.equal(await catalog.get('c'), null);
        assert.ok(await catalog.isDeleted('c'));
        assert.ok(!(await catalog.isDeleted('a')));
        assert.equal(await catalog.importPoster(poster('c'), 'now'), 'deleted', 'an import does not bring back a deleted poster');
        assert.equal(await catalog.importPoster(poster('f'), 'now'), 'added');
        assert.equal(await catalog.importPoster(poster('f'), 'now'), 'unchanged');
        const again = await catalog.upsert(poster('c'), 'now');
        assert.ok(again.key > Math.max(...all.map((p) => p.key)), 'a deleted key is never handed out again');
        assert.deepEqual((await catalog.browse({ genre: 'War', limit: 10 })).posters.map((p) => p.id), ['b', 'd', 'é'], 'the deleted poster left its genres');
      } finally {
        await state.close();
      }
    });

    it('hashes: of the current picture only (all, or some by key), stale ones listed for hashing again', async () => {
      const state = await backend.open();
      const { catalog, hashes } = state;
      try {
        const keys: number[] = [];
        for (const id of ['a', 'b', 'c', 'd', 'e']) keys.push((await catalog.upsert(poster(id), 'now')).key);
        await hashes.put(keys[0]!, 'pixels-a', hashOf('1'));
        await hashes.put(keys[1]!, 'pixels-b', hashOf('2'));
        await hashes.put(keys[2]!, 'a picture it no longer has', hashOf('3'));
        await hashes.putIfCurrent(keys[3]!, 'a picture it no longer has', hashOf('4'));
        await hashes.putIfCurrent(keys[4]!, 'pixels-e', hashOf('5'));
        const current: [number, string][] = [];
        for await (const { key, hash } of hashes.current()) current.push([key, hash.crop85]);
        assert.deepEqual(current.sort((x, y) => x[0] - y[0]), [[keys[0]!, '1'.repeat(63) + 'd'], [keys[1]!, '2'.repeat(63) + 'd'], [keys[4]!, '5'.repeat(63) + 'd']]);
        for (const pageSize of [1, 2, 10]) assert.deepEqual((await hashes.missing(pageSize)).map((p) => [p.key, p.pixelSha256]), [[keys[2]!, 'pixels-c'], [keys[3]!, 'pixels-d']]);
        const some = await hashes.getMany([keys[0]!, keys[2]!, keys[4]!, 999]);
        assert.deepEqual([...some.keys()].sort((x, y) => x - y), [keys[0]!, keys[4]!], "a stale hash is not the poster's");
        assert.deepEqual(some.get(keys[4]!), hashOf('5'));
        await catalog.delete('b', 'now');
        await hashes.put(keys[0]!, 'pixels-a', hashOf('6'));
        const after: number[] = [];
        for await (const { key, hash } of hashes.current()) if (key === keys[0]) after.push(Number(hash.whole[0]));
        assert.deepEqual(after, [6]);
        await assert.rejects(hashes.put(keys[1]!, 'pixels-b', hashOf('7')), 'no hash for a poster that is gone');
      } finally {
        await state.close();
      }
    });

    it('embeddings: one per poster and variant, gone with its poster or its picture', async () => {
      const state = await backend.open();
      const { catalog, models, embeddings } = state;
      try {
        const space = await models.register({ ...model('m1', 'now'), dims: 2 });
        const other = { version: 'm1', precision: 'int8' as const };
        await models.addVariant('m1', 'int8', 'models/m1.int8.onnx', 'c'.repeat(64), {}, 'now');
        const [a, b, c, d] = await Promise.all(['a', 'b', 'c', 'd'].map(async (id) => (await catalog.upsert(poster(id), 'now')).key));
        await embeddings.putMany(space, [{ key: a!, vector: new Float32Array([1, 0]) }, { key: c!, vector: new Float32Array([0, 1]) }]);
        await embeddings.putMany(other, [{ key: b!, vector: new Float32Array([0.5, 0.5]) }]);
        await embeddings.putMany(space, [{ key: a!, vector: new Float32Array([0.6, 0.8]) }]);
        assert.equal(await embeddings.count(space), 2);
        assert.deepEqual(await embeddings.embeddedKeys(space), [a, c].sort((x, y) => x! - y!));
        const missing = [b, d].sort((x, y) => x! - y!);
        assert.deepEqual((await embeddings.missing(space)).map((m) => m.key), missing);
        for (const pageSize of [1, 3]) assert.deepEqual(await embeddings.missingInPages(space, pageSize), await embeddings.missing(space));
        assert.deepEqual([...(await embeddings.get(space, a!))!], [0.6000000238418579, 0.800000011920929], 'replaced, float32');
        assert.equal(await embeddings.get(space, b!), null);
        assert.deepEqual([...(await embeddings.getMany(space, [a!, b!, c!])).keys()].sort(), [a, c].sort());
        const loaded = await embeddings.load(space, 2);
        assert.deepEqual([...loaded.keys].map(Number), [a, c].sort((x, y) => x! - y!));
        assert.equal(loaded.vectors.length, 4);
        await assert.rejects(embeddings.load(space, 3), /expected 3/);

        await catalog.upsert(poster('a', { pixelSha256: 'a new picture' }), 'now');
        assert.equal(await embeddings.get(space, a!), null, "a new picture's embedding is not the old one's");
        await catalog.delete('c', 'now');
        assert.equal(await embeddings.count(space), 0);
        assert.equal(await embeddings.count(other), 1);
        await embeddings.deleteSpace(other);
        assert.equal(await embeddings.count(other), 0);
      } finally {
        await state.close();
      }
    });

    it('embeddings as an index reads them: a snapshot whole, then what changed after its position, each poster once with its vector now', async () => {
      const state = await backend.open();
      const { catalog, models, embeddings } = state;
      try {
        const space = await models.register({ ...model('m1', 'now'), dims: 2 });
        const [a, b, c] = await Promise.all(['a', 'b', 'c'].map(async (id) => (await catalog.upsert(poster(id), 'now')).key));
        await embeddings.putMany(space, [a, b, c].map((key, i) => ({ key: key!, vector: new Float32Array([i, 1]) })));
        const first = await embeddings.snapshot(space, 2);
        assert.deepEqual(rowsOf(first.source), new Map([[a, [0, 1]], [b, [1, 1]], [c, [2, 1]]]));
        const position = first.source.lastChange();
        assert.deepEqual([...first.source.changedSince(position)], [], 'nothing after its own position');

        await embeddings.putMany(space, [{ key: b!, vector: new Float32Array([5, 5]) }]);
        await catalog.delete('c', 'now');
        const second = await embeddings.snapshot(space, 2);
        assert.ok(second.source.lastChange() > position);
        const changed = new Map([...second.source.changedSince(position)].map(({ key, vector }) => [key, vector && [...vector]]));
        assert.deepEqual(changed, new Map([[b, [5, 5]], [c, null]]), 'the replaced vector as it is now, the deleted poster as none');
        assert.equal(second.source.changesSince(position) >= 2, true);
        assert.deepEqual([...second.source.changedSince(second.source.lastChange())], []);
        assert.equal(second.source.prunedThrough() <= position, true, 'a checkpoint at the first position can still be replayed');
        second.release?.();

        // Since a checkpoint's position (a restart): the same changes; every row only when a build asks.
        const since = await embeddings.snapshot(space, 2, position);
        const changedSince = () => new Map([...since.source.changedSince(position)].map(({ key, vector }) => [key, vector && [...vector]]));
        assert.deepEqual(changedSince(), changed);
        assert.equal(since.source.lastChange(), second.source.lastChange());
        // SQLite reads its file as a build asks; PostgreSQL has read only the changed posters' rows.
        if (backend.name === 'PostgreSQL') assert.deepEqual(rowsOf(since.source), new Map([[b, [5, 5]]]));
        const reader = await since.reader();
        if ('rows' in reader) {
          assert.deepEqual(rowsOf(new RowsSource(reader.rows, reader.lastChange)), new Map([[a, [0, 1]], [b, [5, 5]]]), 'a build reads every row');
          assert.equal(reader.lastChange, second.source.lastChange());
        }
        assert.deepEqual(changedSince(), changed, 'and the changes after the position stay');
        since.release?.();
      } finally {
        await state.close();
      }
    });

    if (backend.name === 'PostgreSQL') {
      it('a connection the database ends while a snapshot holds it between queries fails the next query (503), not the process', async () => {
        const state = await backend.open();
        const { catalog, models, embeddings } = state;
        const pool = await openPool(lastDatabase);
        try {
          const space = await models.register({ ...model('m1', 'now'), dims: 2 });
          const key = (await catalog.upsert(poster('a'), 'now')).key;
          await embeddings.putMany(space, [{ key, vector: new Float32Array([1, 0]) }]);
          // Since a position, the snapshot's transaction stays open (idle) until a build reads every row or it is released.
          const held = await embeddings.snapshot(space, 2, 0);
          const ended = await pool.query<{ pid: number }>(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'",
          );
          assert.equal(ended.rowCount, 1, 'the snapshot held one connection, idle in its transaction');
          await new Promise((resolve) => setTimeout(resolve, 300)); // the client hears the end, with no query to reject
          await assert.rejects(held.reader(), (error: Error) => isDatabaseUnavailable(error), 'the next query on it: the database is unavailable');
          held.release?.();
          assert.equal(await embeddings.count(space), 1, 'and the stores go on with other connections');
        } finally {
          await pool.end();
          await state.close();
        }
      });
    }

    it("a poster's latest change is its newest, whatever the digits of the positions (PostgreSQL's transaction ids: numbers, not text)", async () => {
      const state = await backend.open();
      const { catalog, models, embeddings } = state;
      try {
        const space = await models.register({ ...model('m1', 'now'), dims: 2 });
        const key = (await catalog.upsert(poster('a'), 'now')).key;
        await embeddings.putMany(space, [{ key, vector: new Float32Array([1, 0]) }]);
        const before = await embeddings.snapshot(space, 2);
        const position = before.source.lastChange();
        before.release?.();
        const first = await embeddings.latestChange([key]);
        await backend.gainADigit?.();
        await embeddings.putMany(space, [{ key, vector: new Float32Array([0, 1]) }]);
        const second = await embeddings.latestChange([key]);
        if (first !== null) assert.equal(second!.length, first.length + 1, `${first}, then ${second}`);
        for (const since of [null, position]) {
          const after = await embeddings.snapshot(space, 2, since);
          assert.deepEqual([...after.source.changedSince(position)].map(({ key, vector }) => [key, vector && [...vector]]), [[key, [0, 1]]], `snapshot since ${since}`);
          after.release?.();
        }
      } finally {
        await state.close();
      }
    });

    it('savePoster: the poster, its embedding and its hash together, its id no longer deleted; none of them when one fails', async () => {
      const state = await backend.open();
      const { catalog, models, embeddings, hashes } = state;
      try {
        const space: EmbeddingSpace = await models.register({ ...model('m1', 'now'), dims: 2 });
        const hash = hashOf('7');
        await catalog.upsert(poster('p'), 'now');
        await catalog.delete('p', 'now');
        const saved = await state.savePoster(poster('p'), 'later', { space, vector: new Float32Array([0.6, 0.8]) }, hash);
        assert.equal(saved.id, 'p');
        assert.equal(await catalog.isDeleted('p'), false);
        assert.deepEqual([...(await embeddings.get(space, saved.key))!], [0.6000000238418579, 0.800000011920929]);
        assert.deepEqual(await toArray(hashes.current()), [{ key: saved.key, hash }]);

        const unknown = { version: 'no-such-model', precision: 'fp32' as const };
        await assert.rejects(state.savePoster(poster('q'), 'later', { space: unknown, vector: new Float32Array([1, 0]) }, hash));
        assert.equal(await catalog.get('q'), null, 'the poster is not written without its embedding');
        assert.equal(await catalog.count(), 1);
      } finally {
        await state.close();
      }
    });

    it('titles: every word required, the last a prefix while typed, diacritics folded, filtered, paged, kept up to date', async () => {
      const state = await backend.open();
      const { catalog, titles } = state;
      try {
        const rows: [string, string | null, number, string[]][] = [
          ['a', 'Amélie', 2001, ['Comedy']], ['b', 'The Star Wars', 1977, ['Action']], ['c', 'Star Trek', 1979, ['Action']],
          ['d', 'Stardust', 2007, ['Fantasy']], ['e', 'War of the Worlds', 2005, ['Action']], ['f', null, 2000, ['Drama']],
        ]; // prettier-ignore
        for (const [id, title, year, genres] of rows) await catalog.upsert(poster(id, { title, year, genres }), 'now');
        const idOf = new Map((await catalog.all()).map((p) => [p.key, p.id]));
        const find = async (q: string, filter: TitleFilter = {}, limit = 50) => {
          const found: string[] = [];
          let after = null;
          do {
            const page: Awaited<ReturnType<PosterTitles['search']>> = await titles.search(titlePhrases(q)!, filter, limit, after);
            found.push(...page.keys.map((key) => idOf.get(key)!));
            after = page.next;
          } while (after);
          return found;
        };
        assert.deepEqual(await find('amelie'), ['a']);
        assert.deepEqual(await find('AMÉL'), ['a']);
        assert.deepEqual(await find('star wa'), ['b']);
        assert.deepEqual((await find('star')).sort(), ['b', 'c', 'd']);
        assert.deepEqual((await find('star ')).sort(), ['b', 'c'], 'a word typed whole is no prefix');
        assert.deepEqual((await find('star', {}, 1)).sort(), ['b', 'c', 'd'], 'pages of one: each once');
        assert.deepEqual((await find('star', { genre: 'Action' })).sort(), ['b', 'c']);
        assert.deepEqual(await find('star', { yearFrom: 1978, yearTo: 2006 }), ['c']);
        assert.deepEqual(await find('the wor'), ['e']);
        assert.deepEqual(await find('nothing'), []);
        await catalog.delete('c', 'now');
        await catalog.upsert(poster('d', { title: 'Moon', year: 2007, genres: ['Fantasy'] }), 'now');
        assert.deepEqual(await find('star'), ['b']);
        assert.deepEqual(await find('moo'), ['d']);
      } finally {
        await state.close();
      }
    });

    it('jobs: one unfinished at a time, progress merged, the end recorded once, the interrupted failed (PostgreSQL: once their lease expires)', async () => {
      const state = await backend.open();
      const { jobs } = state;
      try {
        const first = await jobs.create('retrain', { epochs: 2 });
        assert.equal(first.state, 'queued');
        assert.deepEqual(first.params, { epochs: 2 });
        await assert.rejects(jobs.create('retrain', {}), JobConflictError);
        assert.equal((await jobs.unfinished())?.id, first.id);

        await jobs.mergeProgress(first.id, { stage: 'training', epoch: 1 }, 'line 1');
        await jobs.mergeProgress(first.id, { epoch: 2, loss: 0.5 }, 'line 2');
        const training = await jobs.update(first.id, { state: 'training' });
        assert.deepEqual(training.progress, { stage: 'training', epoch: 2, loss: 0.5 });
        assert.equal(training.logTail, 'line 2');
        assert.equal(training.finishedAt, null);

        const done = await jobs.update(first.id, { state: 'succeeded', modelVersion: 'ft-1', metrics: { recall: 0.3 } });
        assert.ok(done.finishedAt);
        const again = await jobs.update(first.id, { error: 'a note after the end' });
        assert.equal(again.finishedAt, done.finishedAt, 'the end is recorded once');
        assert.deepEqual([again.state, again.modelVersion, again.metrics], ['succeeded', 'ft-1', { recall: 0.3 }]);
        assert.equal(await jobs.unfinished(), null);

        const second = await jobs.create('retrain', {});
        await jobs.update(second.id, { state: 'indexing' });
        await jobs.renewLease(second.id, 60_000);
        if (backend.name === 'PostgreSQL') {
          assert.deepEqual(await jobs.failInterrupted(), [], "a live lease holds the job: another server's start does not fail it");
          await jobs.renewLease(second.id, -1); // its runner stopped renewing
        }
        const interrupted = await jobs.failInterrupted();
        assert.deepEqual(interrupted.map((j) => [j.id, j.state]), [[second.id, 'failed']]);
        assert.match(interrupted[0]!.error!, /^interrupted: .* while the job was indexing$/);
        assert.deepEqual(await jobs.failInterrupted(), []);
        assert.equal((await jobs.list()).length, 2);
        assert.equal((await jobs.list(1)).length, 1);
        assert.equal(await jobs.get('job-none'), null);
        await assert.rejects(jobs.update('job-none', { state: 'failed' }), /no job job-none/);
      } finally {
        await state.close();
      }
    });

    it('models: registered once, each variant handed out by the policy, the active one recorded', async () => {
      const faithful = { quantization: { parity: { top8_overlap: 0.95 } } };
      const unfaithful = { quantization: { parity: { top8_overlap: 0.5 } } };
      for (const [details, served] of [[faithful, 'int8'], [unfaithful, 'fp32']] as const) {
        const state = await backend.open({ preferred: 'int8', faithfulOnly: true });
        const { models } = state;
        try {
          const registered = await models.register(model('m1', '2026-01-01T00:00:00.000Z'));
          assert.deepEqual([registered.precision, registered.variants], ['fp32', ['fp32']]);
          assert.deepEqual(await models.register({ ...model('m1', '2026-01-02T00:00:00.000Z'), dims: 99 }), registered, 'a second registration is a no-op');
          await models.addVariant('m1', 'int8', 'models/m1.int8.onnx', 'b'.repeat(64), details, 'now');
          assert.equal((await models.get('m1'))?.precision, served);
          assert.deepEqual((await models.list()).map((m) => [m.version, m.precision, m.variants]), [['m1', served, ['fp32', 'int8']]], 'list hands out as get does');
          assert.deepEqual((await models.get('m1', 'int8'))?.variants, ['fp32', 'int8']);
          assert.equal((await models.get('m1', 'int8'))?.filePath, 'models/m1.int8.onnx');
          assert.deepEqual(await models.variantDetails('m1', 'int8'), details);
          assert.equal(await models.variantDetails('m1', 'nope' as 'int8'), null);
        } finally {
          await state.close();
        }
      }
      const state = await backend.open();
      const { models } = state;
      try {
        await models.register(model('m2', '2026-01-02T00:00:00.000Z'));
        await models.register({ ...model('m1', '2026-01-01T00:00:00.000Z'), checkpointPath: null });
        assert.deepEqual((await models.list()).map((m) => m.version), ['m1', 'm2'], 'oldest first');
        assert.deepEqual((await models.files()).sort(), ['models/m1.onnx', 'models/m2.onnx', 'models/m2.pt']);
        await models.setGenreHead('m2', { genres: ['Drama'], weights: [[1, 2]] });
        await models.setMetrics('m2', { validation: { map: 0.2 } });
        const m2 = (await models.get('m2'))!;
        assert.deepEqual(m2.source, { format: 'marquee-model/1', note: 'ü', genre_head: { genres: ['Drama'], weights: [[1, 2]] } });
        assert.deepEqual(m2.metrics, { validation: { map: 0.2 } });
        assert.equal(await models.active(), null);
        await models.activate('m2', 'now');
        await models.activate('m1', 'later');
        assert.equal((await models.active())?.version, 'm1');
        assert.equal(await models.get('none'), null);
      } finally {
        await state.close();
      }
    });

    it('evaluations: the latest of each version, its document kept byte for byte', async () => {
      const state = await backend.open();
      const { models, evaluations } = state;
      try {
        await models.register(model('m1', 'now'));
        assert.equal(await evaluations.latest('m1'), null);
        const document = '{"b": 1,  "a": 0.10000000000000001}\n';
        await evaluations.put('m1', 'first', '{}', '# one', 'fp-1');
        await evaluations.put('m1', 'second', document, '# two', 'fp-2');
        assert.deepEqual(await evaluations.latest('m1'), { modelVersion: 'm1', createdAt: 'second', document, markdown: '# two', catalogFingerprint: 'fp-2' });
        await assert.rejects(evaluations.put('unknown', 'now', '{}', '', 'fp'), 'an evaluation of a version that does not exist is refused');
      } finally {
        await state.close();
      }
    });
  });
}

/** A source's every row, by key. */
function rowsOf(source: EmbeddingSource): Map<number, number[]> {
  const out = new Map<number, number[]>();
  for (const batch of source.batches(2)) batch.keys.forEach((key, i) => out.set(Number(key), [...batch.vectors.subarray(i * batch.dims, (i + 1) * batch.dims)]));
  return out;
}

async function toArray<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe("following another server's writes", () => {
  it('SQLite has no other writer; on PostgreSQL each committed change reaches the follower, metadata changes too, with its poster key', async () => {
    const sqlite = State.inMemory();
    assert.equal(await sqlite.embeddings.follow({ version: 'm1', precision: 'fp32' }, 0, async () => {}), null);
    await sqlite.close();

    const url = await cluster.database();
    const [writer, reader] = [await State.connect({ dataDir: '', databaseUrl: url }), await State.connect({ dataDir: '', databaseUrl: url })];
    try {
      const space = await writer.models.register({ ...model('m1', 'now'), dims: 2 });
      const { key } = await writer.catalog.upsert(poster('a'), 'now');
      const from = (await reader.embeddings.snapshot(space, 2)).source.lastChange();
      const seen: number[][] = [];
      let arrived = () => {};
      const follower = (await reader.embeddings.follow(space, from, async (keys) => {
        seen.push(keys);
        arrived();
      }))!;
      try {
        const next = () => new Promise<void>((resolve) => (arrived = resolve));
        let wait = next();
        await writer.embeddings.putMany(space, [{ key, vector: new Float32Array([1, 0]) }]);
        await wait;
        assert.deepEqual(seen, [[key]]);
        wait = next();
        await writer.catalog.upsert(poster('a', { title: 'A new title' }), 'now');
        await wait;
        assert.deepEqual(seen, [[key], [key]], 'a metadata change is a change of each of its embeddings');
        wait = next();
        await writer.embeddings.putMany({ version: 'm1', precision: 'fp32' }, [{ key, vector: new Float32Array([0, 1]) }]);
        await wait;
        assert.equal(seen.length, 3);
      } finally {
        await follower.stop();
      }
    } finally {
      await Promise.all([writer.close(), reader.close()]);
    }
  });
});

describe('PostgreSQL migrations', () => {
  it('run once when several servers open the same database at once', async () => {
    const url = await cluster.database();
    const pools = await Promise.all(Array.from({ length: 4 }, () => openPool(url)));
    try {
      const { rows } = await pools[0]!.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      const files = readdirSync(join(ROOT, 'migrations', 'postgres')).filter((f) => /^\d+_.*\.sql$/.test(f));
      assert.deepEqual(rows.map((r) => r.version), files.map((f) => Number.parseInt(f, 10)).sort((a, b) => a - b));
      assert.ok(files.length >= 2);
      assert.equal((await new PostgresJobStore(pools[1]!).create('retrain', {})).state, 'queued');
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});
