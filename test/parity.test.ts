import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { renderModelInput, type PreprocessingSpec } from '../src/model/preprocess.js';
import { makeCatalogDir, posterPath, sharedRows, subsetRows } from './support/catalog.js';
import { testModelDir, torchEmbed } from './support/model.js';
import { startServer, upload, type RunningServer } from './support/server.js';

let server: RunningServer;

const dot = (a: number[], b: number[]) => a.reduce((sum, v, i) => sum + v * b[i]!, 0);

describe('serving and training embed a poster the same way', () => {
  before(async () => {
    server = await startServer({ MARQUEE_CATALOG: makeCatalogDir(subsetRows({ train: 10, val: 0, test: 0 })), MARQUEE_BASE_MODEL: testModelDir() });
  });
  after(async () => {
    await server.stop();
  });

  it('the server (sharp + onnxruntime-node) and PyTorch on the training inputs agree: cosine >= 0.999', async (t) => {
    const spec = (JSON.parse(readFileSync(join(testModelDir(), 'model.json'), 'utf8')) as { preprocessing: PreprocessingSpec }).preprocessing;
    // Test-split posters of every distinct size, up to 8: smaller ones are enlarged, larger ones reduced.
    const ids = sharedRows()
      .filter((r) => r.split === 'test')
      .filter((r, i, all) => all.findIndex((o) => o.width === r.width && o.height === r.height) === i)
      .slice(0, 8)
      .map((r) => r.id);
    assert.ok(ids.length >= 4);
    // What the training package reads for these posters: the manifest's rendered inputs.
    const dir = mkdtempSync(join(tmpdir(), 'marquee-inputs-'));
    const inputs = await Promise.all(
      ids.map(async (id) => {
        const file = join(dir, `${id}.png`);
        writeFileSync(file, await renderModelInput(readFileSync(posterPath(id)), spec, 1e8));
        return file;
      }),
    );
    const torch = torchEmbed(testModelDir(), inputs);
    let lowest = 1;
    for (const [i, id] of ids.entries()) {
      const { status, body } = await upload(`${server.url}/posters/embed`, readFileSync(posterPath(id)));
      assert.equal(status, 200);
      const cosine = dot(body.embedding, torch[i]!);
      assert.ok(cosine >= 0.999, `${id}: cosine ${cosine}`);
      lowest = Math.min(lowest, cosine);
    }
    t.diagnostic(`lowest cosine over ${ids.length} posters: ${lowest.toFixed(6)}`);
  });
});
