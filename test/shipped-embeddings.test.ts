/**
 * The catalog embeddings shipped beside a model (catalog-embeddings.bin): a first start takes them
 * instead of embedding, answers as if it had embedded every poster, embeds what the file does not
 * know (a poster whose picture changed), and refuses a damaged, tampered or foreign file after its
 * checks. The committed file beside models/default is the one its model makes of the demo catalog.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { createLogger } from '../src/log.js';
import {
  CATALOG_EMBEDDINGS_FILE,
  readCatalogEmbeddings,
  readCatalogEmbeddingsHeader,
  writeCatalogEmbeddings,
} from '../src/model/catalog-embeddings-file.js';
import { Embedder } from '../src/model/embedder.js';
import { cpuHasInt8Dot } from '../src/model/precision.js';
import { preprocess, type PreprocessingSpec } from '../src/model/preprocess.js';
import { SHIPPED_MIN_COSINE, shippedEmbeddingsFile } from '../src/service/shipped-embeddings.js';
import type { ModelVersion } from '../src/state/models.js';
import { stateOf } from './support/backend.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { marquee } from './support/cli.js';
import { testModelDir } from './support/model.js';
import { ROOT, SHARED_CATALOG } from './support/paths.js';
import { startServer, upload, type RunningServer } from './support/server.js';

// More posters than the start-up sample (32), so that a file is judged on a sample of it.
const rows = subsetRows({ train: 48, val: 6, test: 6 });
const outsider = sharedRows().find((row) => !rows.some((r) => r.id === row.id))!;
const started: RunningServer[] = [];

const made: string[] = [];

/** A model directory holding the test model's files (links) and, when `shipped`, a shipped file. */
function modelDir(shipped?: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-model-'));
  made.push(dir);
  for (const name of ['model.onnx', 'model.json']) symlinkSync(join(testModelDir(), name), join(dir, name));
  if (shipped) writeFileSync(join(dir, CATALOG_EMBEDDINGS_FILE), shipped);
  return dir;
}

async function start(env: Record<string, string>): Promise<RunningServer> {
  const server = await startServer({ MARQUEE_BASE_WEIGHTS: 'none', ...env });
  started.push(server);
  return server;
}

/** The start-up's account of where the catalog's embeddings came from. */
function summary(server: RunningServer): { shipped: number; verified: number; embedded: number; distrusted: string | null } {
  const line = server.logs().split('\n').find((l) => l.includes('"msg":"catalog embeddings: taken from the shipped file, and embedded here"'));
  assert.ok(line, `no summary line in:\n${server.logs()}`);
  const { shipped, verified, embedded, distrusted } = JSON.parse(line) as ReturnType<typeof summary>;
  return { shipped, verified, embedded, distrusted };
}

/** Every stored embedding of the served model, by poster id. */
async function stored(server: RunningServer): Promise<Map<string, Float32Array>> {
  const state = await stateOf({ MARQUEE_DATA_DIR: server.dataDir });
  try {
    const model = (await state.models.active())!;
    const posters = await state.catalog.all();
    const vectors = await state.embeddings.getMany(model, posters.map((p) => p.key));
    return new Map(posters.filter((p) => vectors.has(p.key)).map((p) => [p.id, vectors.get(p.key)!]));
  } finally {
    await state.close();
  }
}

function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  return dot / Math.sqrt(na * nb);
}

describe('catalog embeddings shipped with a model', () => {
  // The file is made of the catalog `rows`; the catalog served has one poster whose picture changed since.
  const changed = rows[5]!;
  let catalog: string;
  let shipped: Buffer;
  let embeddedHere: RunningServer;

  before(async () => {
    const dir = modelDir();
    const made = marquee(['ship-embeddings', '--model', dir, '--catalog', makeCatalogDir(rows)]);
    assert.equal(made.code, 0, made.stderr);
    assert.equal(JSON.parse(made.stdout.trim().split('\n').pop()!).count, rows.length);
    shipped = readFileSync(join(dir, CATALOG_EMBEDDINGS_FILE));
    catalog = makeCatalogDir(rows.map((row) => (row === changed ? { ...row, file: 'extra/changed.jpg' } : row)));
    copyFileSync(posterPath(outsider.id), join(catalog, 'extra', 'changed.jpg'));
    // The reference: the same model and catalog with no shipped file, every poster embedded at start.
    embeddedHere = await start({ MARQUEE_DEFAULT_MODEL: modelDir(), MARQUEE_CATALOG: catalog });
  });

  after(async () => {
    for (const server of started) {
      await server.stop();
      rmSync(server.dataDir, { recursive: true, force: true });
    }
    for (const dir of made) rmSync(dir, { recursive: true, force: true });
  });

  it('a fresh data dir takes the vectors of the pictures the file knows, after a sample check; embeds the changed one; answers as if it had embedded all', async () => {
    assert.match(embeddedHere.logs(), /"msg":"embedding the catalog"/);
    const server = await start({ MARQUEE_DEFAULT_MODEL: modelDir(shipped), MARQUEE_CATALOG: catalog });
    assert.deepEqual(summary(server), { shipped: rows.length - 1, verified: 32, embedded: 1, distrusted: null });

    const ours = await stored(server);
    const reference = await stored(embeddedHere);
    assert.equal(ours.size, rows.length);
    for (const [id, vector] of reference) assert.ok(cosine(ours.get(id)!, vector) > 0.99999, `${id}'s vector is the model's`);
    const embedding = await upload(`${server.url}/posters/embed`, readFileSync(posterPath(outsider.id)));
    assert.ok(cosine(ours.get(changed.id)!, embedding.body.embedding) > 0.99999, "the changed poster has its new picture's vector");
    for (const row of rows.slice(0, 6)) {
      const path = `/posters/${row.id}/similar?k=10`;
      type Answer = { results: { id: string; similarity: number }[] };
      const [a, b] = (await Promise.all([fetch(`${server.url}${path}`).then((r) => r.json()), fetch(`${embeddedHere.url}${path}`).then((r) => r.json())])) as Answer[];
      assert.equal(a!.results.length, b!.results.length);
      // The same answer, but where two neighbours are closer than vectors at cosine 0.99999 (each within
      // sqrt(2 × 1e-5) of the other) may reorder.
      a!.results.forEach((r, i) => {
        const other = b!.results[i]!;
        assert.ok(r.id === other.id || Math.abs(r.similarity - other.similarity) < Math.sqrt(2 * 1e-5), `${path} #${i + 1}: ${r.id} ${r.similarity} vs ${other.id} ${other.similarity}`);
      });
    }
  });

  it('a tampered file (valid, but its vectors are not the model’s) fails the sample check, and every poster is embedded', async () => {
    const dir = modelDir(shipped);
    const file = join(dir, CATALOG_EMBEDDINGS_FILE);
    const genuine = readCatalogEmbeddings(file);
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    const state = await stateOf({ MARQUEE_DATA_DIR: embeddedHere.dataDir });
    const pictures = (await state.catalog.all()).map((p) => p.pixelSha256);
    await state.close();
    const poisoned = new Map(pictures.map((hash) => [hash, Float32Array.from({ length: genuine.header.dims }, random)]));
    writeCatalogEmbeddings(file, genuine.header, poisoned);
    const server = await start({ MARQUEE_DEFAULT_MODEL: dir, MARQUEE_CATALOG: catalog });
    const { distrusted, ...counts } = summary(server);
    assert.deepEqual(counts, { shipped: 0, verified: 32, embedded: rows.length });
    assert.match(distrusted ?? '', /shipped vector has cosine -?\d\.\d+ with the model's, under 0\.999/);
    const reference = await stored(embeddedHere);
    for (const [id, vector] of await stored(server)) assert.ok(cosine(vector, reference.get(id)!) > 0.99999);
  });

  it('a damaged file is refused whole; one made for another model file is not looked at', () => {
    const dir = modelDir(shipped);
    const file = join(dir, CATALOG_EMBEDDINGS_FILE);
    const header = readCatalogEmbeddingsHeader(file);
    const damaged = Buffer.from(shipped);
    damaged[damaged.length - 100] = damaged[damaged.length - 100]! ^ 0xff;
    writeFileSync(file, damaged);
    assert.throws(() => readCatalogEmbeddings(file), /is damaged: its content's sha256 is/);
    writeFileSync(file, damaged.subarray(0, damaged.length - 4));
    assert.throws(() => readCatalogEmbeddings(file), /holds \d+ bytes after its header where 60 vectors of \d+ take \d+/);
    writeFileSync(file, shipped);

    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
    const served = { version: `default-${header.model_sha256.slice(0, 12)}`, fileSha256: header.model_sha256 } as ModelVersion;
    assert.equal(shippedEmbeddingsFile(served, [{ dir, kind: 'default' }], log), file);
    const replaced = { version: 'default-ffffffffffff', fileSha256: 'f'.repeat(64) } as ModelVersion;
    assert.equal(shippedEmbeddingsFile(replaced, [{ dir, kind: 'default' }], log), null);
    assert.match(lines.join(''), /made for another model file: not used \(make them again with `marquee ship-embeddings`\)/);
  });
});

describe('the catalog embeddings committed beside models/default', () => {
  const dir = join(ROOT, 'models', 'default');
  const model = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
    input: { name: string; width: number; height: number };
    output: { name: string };
    embedding_dim: number;
    preprocessing: PreprocessingSpec;
  };
  const catalogRows = sharedRows();
  const picked = Array.from({ length: 8 }, () => catalogRows[Math.floor(Math.random() * catalogRows.length)]!);

  it('are its model file’s and hold a vector for each picture of the demo catalog picked at random', async () => {
    const shipped = readCatalogEmbeddings(join(dir, CATALOG_EMBEDDINGS_FILE));
    const sha = createHash('sha256').update(readFileSync(join(dir, 'model.onnx'))).digest('hex');
    assert.equal(shipped.header.model_sha256, sha, 'made by this model.onnx: run `node bin/marquee.js ship-embeddings` after replacing it');
    assert.ok(shipped.header.count <= catalogRows.length && shipped.header.count >= catalogRows.length - 10, `${shipped.header.count} vectors for ${catalogRows.length} posters`);
    for (const row of picked) {
      const { image } = await preprocess(readFileSync(join(SHARED_CATALOG, row.file)), model.preprocessing, 40_000_000);
      assert.ok(shipped.get(image.pixelSha256), `${row.id}'s picture has a shipped vector`);
    }
  });

  // Made with int8 dot products (AVX-512 VNNI); a CPU without them computes other int8 vectors, and its starts embed (MODEL_CARD.md).
  const where = cpuHasInt8Dot() ? false : 'this CPU has no int8 dot products, whose kernels the file was made with: a start here refuses it';
  it('agree with the model on posters picked at random', { skip: where }, async () => {
    const shipped = readCatalogEmbeddings(join(dir, CATALOG_EMBEDDINGS_FILE));
    const embedder = await Embedder.load(
      {
        modelPath: join(dir, 'model.onnx'),
        inputName: model.input.name,
        outputName: model.output.name,
        width: model.input.width,
        height: model.input.height,
        dims: model.embedding_dim,
        device: 'cpu',
        threads: 2,
        spinning: false,
      },
      createLogger('warn'),
    );
    try {
      const inputs = await Promise.all(picked.map(async (row) => preprocess(readFileSync(join(SHARED_CATALOG, row.file)), model.preprocessing, 40_000_000)));
      const vectors = await embedder.embed(inputs.map((input) => input.tensor));
      inputs.forEach(({ image }, i) => {
        const c = cosine(shipped.get(image.pixelSha256)!, vectors[i]!);
        assert.ok(c >= SHIPPED_MIN_COSINE, `${picked[i]!.id}: cosine ${c}`);
      });
    } finally {
      await embedder.release();
    }
  });
});
