import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { titlePhrases } from '../src/search/title-query.js';
import type { Catalog, NewPoster } from '../src/state/catalog.js';
import { PostgresCatalog } from '../src/state/postgres/catalog.js';
import { openPool } from '../src/state/postgres/db.js';
import { PostgresEmbeddingStore } from '../src/state/postgres/embeddings.js';
import { fillTitleTerms, PostgresPosterTitles } from '../src/state/postgres/titles.js';
import { SqliteCatalog } from '../src/state/sqlite/catalog.js';
import { openDb } from '../src/state/sqlite/db.js';
import { SqlitePosterTitles } from '../src/state/sqlite/titles.js';
import type { PosterTitles, TitlePage } from '../src/state/titles.js';
import { testDatabase } from './support/backend.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows, type Row } from './support/catalog.js';
import { testModelDir } from './support/model.js';
import { ROOT } from './support/paths.js';
import { adminRequest, startServer, type RunningServer } from './support/server.js';

/**
 * GET /posters?q=: title search over the real catalog's titles, checked against bm25 computed here
 * from the titles as FTS5 defines it (k1 = 1.2, b = 0.75, idf floored at 1e-6; tokens are runs of
 * letters and digits with diacritics folded), so that the expectations come from the data.
 */

const TOKEN = 'titles-token';
const hasDiacritic = (title: string) => /\p{M}/u.test(title.normalize('NFD'));
const base = subsetRows({ train: 60, val: 10, test: 10 });
const taken = new Set(base.map((r) => r.id));
// A few real titles with diacritics, so that folding is tested on what the catalog holds.
const accented = sharedRows().filter((r) => !taken.has(r.id) && hasDiacritic(r.title)).slice(0, 3);
const rows = [...base, ...accented];
const outsider = sharedRows().find((r) => r.split === 'test' && !taken.has(r.id) && !accented.includes(r))!;

const tokens = (title: string): string[] =>
  title
    .normalize('NFD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .match(/[\p{L}\p{N}]+/gu) ?? [];

interface Doc {
  id: string;
  tokens: string[];
  row: Row;
}

/** bm25 as FTS5 computes it (higher is better here), with the query's phrases as titlePhrases makes them. */
function bm25Ranking(docs: Doc[], query: string): { id: string; score: number }[] {
  const typing = !/\s$/u.test(query);
  const phrases = tokens(query).map((term, i, all) => ({ term, prefix: typing && i === all.length - 1 }));
  const hits = (doc: Doc, p: { term: string; prefix: boolean }) => doc.tokens.filter((t) => (p.prefix ? t.startsWith(p.term) : t === p.term)).length;
  const avg = docs.reduce((n, d) => n + d.tokens.length, 0) / docs.length;
  const idf = phrases.map((p) => {
    const n = docs.filter((d) => hits(d, p) > 0).length;
    const value = Math.log((docs.length - n + 0.5) / (n + 0.5));
    return value <= 0 ? 1e-6 : value;
  });
  return docs
    .filter((d) => phrases.every((p) => hits(d, p) > 0))
    .map((d) => ({
      id: d.id,
      score: phrases.reduce((sum, p, i) => {
        const f = hits(d, p);
        return sum + (idf[i]! * f * 2.2) / (f + 1.2 * (0.25 + (0.75 * d.tokens.length) / avg));
      }, 0),
    }));
}

/** Asserts that `ids` is every match of the query among `docs`, best first by bm25 (ties in any order). */
function assertRanked(ids: string[], docs: Doc[], query: string): void {
  const expected = bm25Ranking(docs, query);
  assert.deepEqual([...ids].sort(), expected.map((e) => e.id).sort(), `the posters matching "${query}"`);
  assertOrdered(ids, new Map(expected.map((e) => [e.id, e.score])), query);
}

function assertOrdered(ids: string[], score: Map<string, number>, query: string): void {
  for (let i = 1; i < ids.length; i++) assert.ok(score.get(ids[i - 1]!)! >= score.get(ids[i]!)! - 1e-9, `"${query}": ${ids[i - 1]} before ${ids[i]}`);
}

const titled = (list: Row[]): Doc[] => list.filter((r) => r.title.trim()).map((r) => ({ id: r.id, tokens: tokens(r.title), row: r }));

/** The word most titles share, and other queries taken from the titles themselves. */
function queriesFrom(docs: Doc[]): { common: string; twoWords: string; prefix: string } {
  const counts = new Map<string, number>();
  for (const d of docs) for (const t of new Set(d.tokens)) counts.set(t, (counts.get(t) ?? 0) + 1);
  const common = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]![0];
  const long = docs.find((d) => d.tokens.length >= 3 && d.tokens[1]!.length >= 4)!;
  // A word of one title whose first four letters are no word of any title.
  const rare = [...counts].filter(([t, n]) => n === 1 && t.length >= 6 && !counts.has(t.slice(0, 4))).map(([t]) => t).sort()[0]!;
  return { common, twoWords: `${long.tokens[0]} ${long.tokens[1]!.slice(0, 3)}`, prefix: rare.slice(0, 4) };
}

async function search(server: RunningServer, query: Record<string, string | number>): Promise<{ status: number; body: any }> {
  const params = new URLSearchParams(Object.entries(query).map(([k, v]) => [k, String(v)]));
  const response = await fetch(`${server.url}/posters?${params}`);
  return { status: response.status, body: await response.json() };
}

async function allPages(server: RunningServer, query: Record<string, string | number>): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await search(server, { ...query, ...(cursor ? { cursor } : {}) });
    assert.equal(page.status, 200, JSON.stringify(page.body));
    ids.push(...page.body.posters.map((p: { id: string }) => p.id));
    cursor = page.body.next_cursor;
  } while (cursor);
  return ids;
}

describe('title search through the API', () => {
  let server: RunningServer;
  const docs = titled(rows);
  const queries = queriesFrom(docs);
  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(rows), MARQUEE_BASE_MODEL: testModelDir(), MARQUEE_ADMIN_TOKEN: TOKEN });
  });
  after(async () => {
    await server.stop();
  });

  it('finds every poster whose title has all the words, the last as a prefix, best first by bm25', async () => {
    assert.ok(docs.length >= 0.85 * rows.length, `${docs.length} of ${rows.length} posters have a title`);
    for (const q of [queries.common, queries.twoWords, queries.prefix, `${queries.common} `]) {
      const page = await search(server, { q, limit: 500 });
      assert.equal(page.status, 200, JSON.stringify(page.body));
      assert.ok(page.body.posters.length > 0, `"${q}" finds something`);
      assertRanked(page.body.posters.map((p: { id: string }) => p.id), docs, q);
      assert.equal(page.body.next_cursor, null);
    }
    // Typed with a space after it, a word is whole: the four letters that find a title as a prefix find none.
    assert.equal((await search(server, { q: `${queries.prefix} ` })).body.posters.length, 0);
  });

  it('folds diacritics and case both ways', async () => {
    assert.ok(accented.length > 0);
    for (const row of accented) {
      const word = row.title.split(/\s+/).find(hasDiacritic)!.replace(/[^\p{L}\p{M}\p{N}]/gu, '');
      const folded = tokens(word).join(' ');
      for (const q of [word, folded, word.toUpperCase(), folded.toUpperCase()]) {
        const ids = (await search(server, { q, limit: 500 })).body.posters.map((p: { id: string }) => p.id);
        assert.ok(ids.includes(row.id), `"${q}" finds "${row.title}"`);
      }
    }
  });

  it('takes the genre and year filters, and pages with a cursor to the same list', async () => {
    const q = queries.common;
    const full = (await search(server, { q, limit: 500 })).body.posters.map((p: { id: string }) => p.id) as string[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    const genreCounts = new Map<string, number>();
    for (const id of full) for (const g of byId.get(id)!.genres.split('|')) genreCounts.set(g, (genreCounts.get(g) ?? 0) + 1);
    const genre = [...genreCounts].sort((a, b) => b[1] - a[1])[0]![0];
    const years = full.map((id) => Number(byId.get(id)!.year)).filter(Number.isFinite).sort((a, b) => a - b);
    const [from, to] = [years[Math.floor(years.length / 4)]!, years[Math.floor((3 * years.length) / 4)]!];
    const filtered = (await search(server, { q, genre, year_from: from, year_to: to, limit: 500 })).body.posters.map((p: { id: string }) => p.id);
    const expected = full.filter((id) => {
      const row = byId.get(id)!;
      return row.genres.split('|').includes(genre) && Number(row.year) >= from && Number(row.year) <= to;
    });
    assert.ok(expected.length > 0 && expected.length < full.length, `${expected.length} of ${full.length}`);
    assert.deepEqual(filtered, expected, 'the filters leave the matches in their order');
    assert.deepEqual(await allPages(server, { q, limit: 2 }), full, 'pages of 2 make the same list');
    assert.deepEqual(await allPages(server, { q, genre, year_from: from, year_to: to, limit: 1 }), expected);
    // Browse takes the year filters too.
    const browsed = await allPages(server, { year_from: from, year_to: to, limit: 50 });
    assert.deepEqual(browsed, rows.filter((r) => Number(r.year) >= from && Number(r.year) <= to).map((r) => r.id).sort());
  });

  it('answers 400 empty_query for a q with no word, and never an FTS5 error for any input', async () => {
    for (const q of ['', '   ', '!!!', '"', '¿? -- *', '()', '\u0301']) {
      const page = await search(server, { q });
      assert.equal(page.status, 400, `q=${JSON.stringify(q)}`);
      assert.deepEqual(Object.keys(page.body.error).sort(), ['code', 'message']);
      assert.equal(page.body.error.code, 'empty_query', `q=${JSON.stringify(q)}`);
    }
    const word = queries.common;
    for (const q of ['AND', `NOT ${word}`, `"${word}`, `${word} OR (`, `NEAR(${word} a)`, `title:${word}`, `${word}*`, `^${word}`, `-${word}`, `${word} AND`, "l'", 'a\u0000b']) {
      const page = await search(server, { q });
      assert.equal(page.status, 200, `q=${JSON.stringify(q)}: ${JSON.stringify(page.body)}`);
      assertRanked(page.body.posters.map((p: { id: string }) => p.id), docs, q);
    }
    const tooLong = await search(server, { q: 'a'.repeat(201) });
    assert.equal(tooLong.status, 400);
    assert.equal(tooLong.body.error.code, 'invalid_request');
  });

  it('refuses a damaged cursor, and a browse cursor for a search', async () => {
    const browse = await search(server, { limit: 1 });
    for (const cursor of ['t1.garbage', 't1.' + Buffer.from('{"score":"x"}').toString('base64url'), browse.body.next_cursor]) {
      const page = await search(server, { q: queries.common, cursor });
      assert.equal(page.status, 400, cursor);
      assert.equal(page.body.error.code, 'invalid_cursor');
    }
  });

  it('finds an added poster at once, and its new title after a change, and nothing after its delete', async () => {
    const title = 'Zwölf Überwald Nights';
    const form = new FormData();
    form.append('id', outsider.id);
    form.append('title', title);
    form.append('genres', outsider.genres);
    form.append('image', new Blob([new Uint8Array(readFileSync(posterPath(outsider.id)))], { type: 'image/jpeg' }), 'poster.jpg');
    const added = await fetch(`${server.url}/admin/posters`, { method: 'POST', body: form, headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(added.status, 201, await added.text());
    const found = async (q: string) => (await search(server, { q })).body.posters.map((p: { id: string }) => p.id) as string[];
    assert.deepEqual(await found('uberwald'), [outsider.id]);
    assert.deepEqual(await found('zwolf nig'), [outsider.id]);
    const patched = await adminRequest(server.url, TOKEN, 'PATCH', `/admin/posters/${outsider.id}`, { title: 'Ploughmarsh' });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    assert.deepEqual(await found('uberwald'), []);
    assert.deepEqual(await found('ploughm'), [outsider.id]);
    const deleted = await adminRequest(server.url, TOKEN, 'DELETE', `/admin/posters/${outsider.id}`);
    assert.equal(deleted.status, 204);
    assert.deepEqual(await found('ploughm'), []);
  });
});

const fields = (row: Row): NewPoster => ({
  id: row.id,
  title: row.title.trim() || null,
  year: Number(row.year) || null,
  releaseDate: null,
  genres: row.genres.split('|'),
  singleGenre: row.single_genre,
  split: null,
  imagePath: row.file,
  imageSha256: row.id,
  pixelSha256: row.id,
  width: 1,
  height: 1,
});

/** A title index on each backend (PostgreSQL with MARQUEE_TEST_BACKEND=postgres), its catalog, and the index searched with another window. */
interface TitleBackend {
  name: string;
  open(): Promise<{ catalog: Catalog; titles(window?: number): PosterTitles; check(): void; close(): Promise<void> }>;
}
const titleBackends: TitleBackend[] = [
  {
    name: 'SQLite',
    open: async () => {
      const db = openDb(join(mkdtempSync(join(tmpdir(), 'marquee-titles-')), 'marquee.db'));
      return {
        catalog: new SqliteCatalog(db),
        titles: (window) => new SqlitePosterTitles(db, window),
        check: () => {
          db.prepare("INSERT INTO poster_titles (poster_titles) VALUES ('integrity-check')").run();
        },
        close: async () => {
          db.close();
        },
      };
    },
  },
  ...(process.env.MARQUEE_TEST_BACKEND === 'postgres'
    ? [
        {
          name: 'PostgreSQL',
          open: async () => {
            const pool = await openPool(testDatabase()!);
            return { catalog: new PostgresCatalog(pool), titles: (window?: number) => new PostgresPosterTitles(pool, window), check: () => {}, close: () => pool.end() };
          },
        },
      ]
    : []),
];

for (const backend of titleBackends) {
  describe(`the title index on ${backend.name}`, () => {
    it('lists a query with more matches than the window by word count, then key, and ranks one with fewer by bm25', async () => {
      const { catalog, titles: titlesWith, check, close } = await backend.open();
      try {
        const common = queriesFrom(titled(rows)).common;
        // A long title with the word three times: bm25 ranks it first, word count late.
        const repeated = { ...rows[0]!, id: 'repeated', title: `${common} Quill ${common} Quill ${common} Marsh` };
        // Two shorter ones that share a rarer word with it.
        const quills = ['Quill Song Dance', 'Quill Song Dance Night'].map((title, i) => ({ ...rows[0]!, id: `quill${i}`, title: `${common} ${title}` }));
        for (const row of [...rows, repeated, ...quills]) await catalog.upsert(fields(row), 'now');
        const docs = titled([...rows, repeated, ...quills]);
        const q = common;
        const matches = bm25Ranking(docs, q);
        assert.equal(matches.sort((a, b) => b.score - a.score)[0]!.id, 'repeated');
        // One match too many for the window: ranking any part of the list by bm25 would move "repeated" up.
        const window = matches.length - 1;
        const titles = titlesWith(window);
        const all = await catalog.all();
        const idOf = new Map(all.map((p) => [p.key, p.id]));
        const pages: string[][] = [];
        let after = null;
        do {
          const page: TitlePage = await titles.search(titlePhrases(q)!, {}, 3, after);
          pages.push(page.keys.map((key) => idOf.get(key)!));
          after = page.next;
        } while (after);
        const listed = pages.flat();
        const order = new Map(all.map((p) => [p.id, p.key]));
        const words = (d: Doc) => d.row.title.trim().split(' ').length;
        const byWords = docs.filter((d) => matches.some((m) => m.id === d.id)).sort((a, b) => words(a) - words(b) || order.get(a.id)! - order.get(b.id)!);
        assert.deepEqual(listed, byWords.map((d) => d.id), 'every match once, by word count, then key');
        // So is a query with that word and a rare one, however few titles have both.
        const both = `${q} quill `;
        const bm25Order = bm25Ranking(docs, both).sort((a, b) => b.score - a.score).map((m) => m.id);
        assert.deepEqual(bm25Order, ['repeated', 'quill0', 'quill1'], 'bm25 ranks them otherwise');
        assert.deepEqual((await titles.search(titlePhrases(both)!, {}, 10, null)).keys.map((key) => idOf.get(key)!), ['quill0', 'quill1', 'repeated']);
        assertRanked((await titlesWith(matches.length).search(titlePhrases(both)!, {}, 10, null)).keys.map((key) => idOf.get(key)!), docs, both);
        // A filter leaves the posters of that list that pass it, in its order, a page at a time too.
        const genreCounts = new Map<string, number>();
        for (const id of listed) for (const g of docs.find((d) => d.id === id)!.row.genres.split('|')) genreCounts.set(g, (genreCounts.get(g) ?? 0) + 1);
        const genre = [...genreCounts].sort((a, b) => b[1] - a[1])[0]![0];
        const filtered: string[] = [];
        after = null;
        do {
          const page: TitlePage = await titles.search(titlePhrases(q)!, { genre }, 2, after);
          filtered.push(...page.keys.map((key) => idOf.get(key)!));
          after = page.next;
        } while (after);
        const expected = listed.filter((id) => docs.find((d) => d.id === id)!.row.genres.split('|').includes(genre));
        assert.ok(expected.length > 2 && expected.length < listed.length);
        assert.deepEqual(filtered, expected);
        // A window as large as the matches is bm25's order over all of them, a page at a time too.
        assertRanked((await titlesWith(matches.length).search(titlePhrases(q)!, {}, 500, null)).keys.map((key) => idOf.get(key)!), docs, q);
        const paged: string[] = [];
        after = null;
        do {
          const page: TitlePage = await titlesWith(matches.length).search(titlePhrases(q)!, {}, 4, after);
          paged.push(...page.keys.map((key) => idOf.get(key)!));
          after = page.next;
        } while (after);
        assertRanked(paged, docs, q);
        check();
      } finally {
        await close();
      }
    });
  });
}

if (process.env.MARQUEE_TEST_BACKEND === 'postgres') {
  describe('the title index on PostgreSQL', () => {
    it('finds and orders what SQLite does, for titles in scripts its tokenizer splits and folds its own way', async () => {
      const titles = [
        'हिन्दी फ़िल्म', 'ที่นี่ ที่นั่น', 'ΠΡΟΣΩΠΟ ΠΡΟΣ ΠΡΟΣΩΠΟ', 'がっこう', 'かっこう', '한국 영화', 'Straße der Sehnsucht', 'Øresund',
        'İstanbul Hatırası', 'Amélie', 'Spider-Man 2', "L'Âge d'or", 'שָׁלוֹם עולם', 'سلام أحمد', 'Ｆｕｌｌ Ｗｉｄｔｈ', 'Ǣsir ſtory µ',
      ]; // prettier-ignore
      const posters = titles.map((title, i) => ({ ...fields(rows[i]!), title }));
      const db = openDb(join(mkdtempSync(join(tmpdir(), 'marquee-titles-')), 'marquee.db'));
      const pool = await openPool(testDatabase()!);
      try {
        const sqlite = { catalog: new SqliteCatalog(db), titles: new SqlitePosterTitles(db) };
        const postgres = { catalog: new PostgresCatalog(pool), titles: new PostgresPosterTitles(pool) };
        for (const poster of posters) {
          await sqlite.catalog.upsert(poster, 'now');
          await postgres.catalog.upsert(poster, 'now');
        }
        const found = async (store: { catalog: Catalog; titles: PosterTitles }, q: string) => {
          const idOf = new Map((await store.catalog.all()).map((p) => [p.key, p.id]));
          return (await store.titles.search(titlePhrases(q)!, {}, 50, null)).keys.map((key) => idOf.get(key));
        };
        const queries = new Set<string>();
        for (const title of titles) {
          for (const word of title.split(' ')) {
            const letters = [...word];
            for (let n = 1; n <= letters.length; n++) queries.add(letters.slice(0, n).join(''));
            queries.add(`${word} `);
            queries.add(word.toUpperCase());
            queries.add(word.toLowerCase());
          }
        }
        let matched = 0;
        for (const q of queries) {
          if (!titlePhrases(q)) continue;
          const expected = await found(sqlite, q);
          assert.deepEqual(await found(postgres, q), expected, `"${q}"`);
          if (expected.length > 0) matched++;
        }
        assert.ok(matched > queries.size / 2, `${matched} of ${queries.size} queries find something`);
      } finally {
        db.close();
        await pool.end();
      }
    });

    it("gives titles written before migration 008 their terms when a server connects, and keeps bm25's figures through changes", async () => {
      const pool = await openPool(testDatabase()!);
      try {
        const catalog = new PostgresCatalog(pool);
        const some = rows.slice(0, 20);
        for (const row of some) await catalog.upsert(fields(row), 'now');
        const stats = async () => (await pool.query<{ titles: string; terms: string }>('SELECT titles::text, terms::text FROM title_stats')).rows[0]!;
        const expected = async () => {
          const titles = (await catalog.all()).flatMap((p) => (p.title === null ? [] : [p.title]));
          return { titles: String(titles.length), terms: String(titles.reduce((n, t) => n + tokens(t).length, 0)) };
        };
        assert.deepEqual(await stats(), await expected());
        const word = tokens(some[0]!.title)[0]!;
        const find = async (q: string) => (await new PostgresPosterTitles(pool).search(titlePhrases(q)!, {}, 50, null)).keys;
        const key = (await catalog.get(some[0]!.id))!.key;
        assert.ok((await find(`${word} `)).includes(key));
        // One poster with an embedding: a change of what it serves is logged for the replicas, the fill is not.
        await pool.query(
          `INSERT INTO model_versions VALUES ('v', 'm.onnx', 'x', 2, 1, 1, 'i', 'o', '{}', '{}', NULL, NULL, 'now');
           INSERT INTO model_variants VALUES ('v', 'fp32', 'm.onnx', 'x', '{}', 'now');`,
        );
        await new PostgresEmbeddingStore(pool, '').putMany({ version: 'v', precision: 'fp32' }, [{ key, vector: new Float32Array([1, 0]) }]);
        const logged = async () => Number((await pool.query<{ n: string }>('SELECT count(*)::text AS n FROM embedding_changes')).rows[0]!.n);
        const before = await logged();
        // As a database written before migration 008 holds them: titles without their terms.
        await pool.query('UPDATE posters SET title_terms = NULL');
        assert.deepEqual(await find(`${word} `), []);
        assert.equal(await fillTitleTerms(pool), some.filter((r) => r.title.trim()).length);
        assert.ok((await find(`${word} `)).includes(key));
        assert.deepEqual(await stats(), await expected());
        assert.equal(await logged(), before, 'giving titles their terms is no change a replica follows');
        await catalog.upsert({ ...fields(some[0]!), title: 'Another Title' }, 'now');
        assert.equal(await logged(), before + 1, 'a new title is');
        for (const row of some.slice(1, 10)) await catalog.upsert({ ...fields(row), title: row.title ? `${row.title} Redux` : 'Redux' }, 'now');
        for (const row of some.slice(1, 5)) await catalog.delete(row.id, 'now');
        assert.equal((await find('redux')).length, 5);
        assert.deepEqual(await stats(), await expected());
      } finally {
        await pool.end();
      }
    });
  });
}

describe('the title index in SQLite', () => {
  it('is filled from the posters a database already has when migration 010 runs, and stays whole through changes', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'marquee-titles-')), 'marquee.db');
    const old = new Database(file);
    for (const name of readdirSync(join(ROOT, 'migrations')).sort()) {
      if (Number.parseInt(name, 10) < 10) old.exec(readFileSync(join(ROOT, 'migrations', name), 'utf8'));
    }
    old.pragma('user_version = 9');
    new SqliteCatalog(old).upsertSync(fields(rows[0]!), 'now');
    old.close();
    const db = openDb(file);
    const catalog = new SqliteCatalog(db);
    const word = tokens(rows[0]!.title)[0]!;
    assert.ok((await new SqlitePosterTitles(db).search(titlePhrases(`${word} `)!, {}, 50, null)).keys.includes(catalog.getSync(rows[0]!.id)!.key));
    for (const row of rows.slice(1, 20)) catalog.upsertSync(fields(row), 'now');
    for (const row of rows.slice(1, 20)) catalog.upsertSync({ ...fields(row), title: row.title ? `${row.title} Redux` : 'Redux' }, 'now');
    for (const row of rows.slice(1, 10)) catalog.deleteSync(row.id, 'now');
    const redux = (await new SqlitePosterTitles(db).search(titlePhrases('redux')!, {}, 50, null)).keys;
    assert.equal(redux.length, 10);
    db.prepare("INSERT INTO poster_titles (poster_titles) VALUES ('integrity-check')").run();
  });
});
