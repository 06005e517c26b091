import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Decodes } from '../model/decodes.js';
import { renderModelInput, type PreprocessingSpec } from '../model/preprocess.js';
import type { Poster } from '../state/catalog.js';
import { writeAtomically } from '../state/files.js';

/**
 * Renders every poster's model input for this preprocessing (cached by picture and size under
 * the data dir) and returns each poster's PNG path.
 */
export async function renderInputs(
  posters: Poster[],
  spec: PreprocessingSpec,
  dataDir: string,
  maxPixels: number,
  onProgress?: (done: number, total: number) => void,
  /** The server's decodes (admitted by the decode budget it shares with uploads); none in the CLI. */
  decodes?: Decodes,
): Promise<Map<string, string>> {
  const dir = join(dataDir, 'inputs', `${spec.width}x${spec.height}`);
  mkdirSync(dir, { recursive: true });
  const paths = new Map<string, string>();
  let done = 0;
  let next = 0;
  const worker = async () => {
    while (next < posters.length) {
      const poster = posters[next++]!;
      const file = join(dir, `${poster.pixelSha256.slice(0, 32)}.png`);
      if (!existsSync(file)) {
        const bytes = await readFile(join(dataDir, poster.imagePath));
        const png = await (decodes ? decodes.render(bytes, spec, 'background') : renderModelInput(bytes, spec, maxPixels));
        writeAtomically(file, png);
      }
      paths.set(poster.id, file);
      onProgress?.(++done, posters.length);
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  return paths;
}

/**
 * The dataset manifest: the whole contract between the server and the training package
 * (training/manifest.py reads it). JSON Lines, one poster per line. Posters outside the fixed
 * split are written as train: they are gallery posters, never evaluation queries.
 */
export function writeManifest(
  file: string,
  posters: Poster[],
  dataDir: string,
  inputs?: { spec: PreprocessingSpec; paths: Map<string, string> },
): void {
  mkdirSync(dirname(file), { recursive: true });
  const lines = posters.map((p) => {
    const rendered = inputs?.paths.get(p.id);
    return JSON.stringify({
      id: p.id,
      path: join(dataDir, p.imagePath),
      genres: p.genres,
      single_genre: p.singleGenre,
      split: p.split ?? 'train',
      ...(rendered && inputs ? { input: { path: rendered, width: inputs.spec.width, height: inputs.spec.height } } : {}),
    });
  });
  writeAtomically(file, lines.join('\n') + '\n');
}
