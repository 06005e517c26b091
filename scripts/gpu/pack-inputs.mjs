// The train and val posters of a manifest written by `marquee manifest` (inputs rendered by the server's own
// preprocessing), re-encoded as WebP q65 for a GPU machine that the whole catalog cannot travel to in full
// (docs/evaluation/gpu-paper.md says why and what it costs), with a manifest whose paths start with @ROOT@.
//   node scripts/gpu/pack-inputs.mjs /tmp/gpu-160x240.jsonl OUTDIR
// OUTDIR gets img/<id>.webp and manifest.jsonl; test posters are left out (training never reads them).
import sharp from 'sharp';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
const [manifest, outDir] = process.argv.slice(2);
mkdirSync(`${outDir}/img`, { recursive: true });
const lines = readFileSync(manifest, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const out = [];
let bytes = 0;
for (const r of lines) {
  if (r.split === 'test') continue;
  const buf = await sharp(r.input.path).webp({ quality: 65 }).toBuffer();
  writeFileSync(`${outDir}/img/${r.id}.webp`, buf);
  bytes += buf.length;
  const p = `@ROOT@/img/${r.id}.webp`;
  out.push(JSON.stringify({ ...r, path: p, input: { path: p, width: r.input.width, height: r.input.height } }));
}
writeFileSync(`${outDir}/manifest.jsonl`, out.join('\n') + '\n');
console.log(out.length, 'posters', (bytes / 1e6).toFixed(1), 'MB');
