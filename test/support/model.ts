import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { subsetRows, type Row } from './catalog.js';
import { CACHE, PYTHON, ROOT, SHARED_CATALOG } from './paths.js';

export const TEST_INPUT = { width: 64, height: 96 };

/** A training manifest of catalog rows, their original images as the inputs. */
function writeManifest(file: string, rows: Row[]): void {
  const line = (r: Row) => JSON.stringify({ id: r.id, path: join(SHARED_CATALOG, r.file), genres: r.genres.split('|'), single_genre: r.single_genre, split: r.split });
  writeFileSync(file, rows.map(line).join('\n') + '\n');
}

/**
 * The real base-model export at a small input size, made once per checkout by the training
 * package and reused by every test file (test/.cache is ignored by git).
 */
export function testModelDir(): string {
  return exportedTestModel(0);
}

/** The same export from another seed: a second model version, for swaps. */
export function otherTestModelDir(): string {
  return exportedTestModel(1);
}

function exportedTestModel(seed: number): string {
  const dir = join(CACHE, `base-${TEST_INPUT.width}x${TEST_INPUT.height}${seed ? `-seed${seed}` : ''}`);
  if (existsSync(join(dir, 'model.onnx'))) return dir;
  mkdirSync(CACHE, { recursive: true });
  const manifest = join(CACHE, 'calibration.jsonl');
  const rows = subsetRows({ train: 64, val: 0, test: 0 });
  writeManifest(manifest, rows);
  const size = ['--width', String(TEST_INPUT.width), '--height', String(TEST_INPUT.height)];
  execFileSync(PYTHON, ['-m', 'training', 'export-base', '--manifest', manifest, '--out', dir, ...size, '--calibrate', '64', '--seed', String(seed)], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return dir;
}

/** Embeds images through PyTorch eager (the training side's own path). */
export function torchEmbed(dir: string, images: string[]): number[][] {
  const out = execFileSync(PYTHON, ['-m', 'training', 'embed', '--checkpoint', join(dir, 'model.pt'), ...images], {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return (JSON.parse(out.trim().split('\n').pop()!) as { embeddings: number[][] }).embeddings;
}

/**
 * The test model with a genre head fitted by the training package (`fit-head`) on a small slice of
 * the catalog: the head a trained model carries, on the test model's embeddings.
 */
export function testModelWithHeadDir(): string {
  const dir = join(CACHE, `head-${TEST_INPUT.width}x${TEST_INPUT.height}`);
  if (existsSync(join(dir, 'model.json')) && existsSync(join(dir, 'model.onnx'))) return dir;
  const base = testModelDir();
  const manifest = join(CACHE, 'head.jsonl');
  const rows = subsetRows({ train: 240, val: 80, test: 0 });
  writeManifest(manifest, rows);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  cpSync(base, tmp, { recursive: true });
  execFileSync(PYTHON, ['-m', 'training', 'fit-head', '--model', tmp, '--manifest', manifest], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  renameSync(tmp, dir);
  return dir;
}
