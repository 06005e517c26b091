import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Poster } from '../state/catalog.js';

/**
 * The dataset manifest: the whole contract between the server and the training package
 * (training/manifest.py reads it). JSON Lines, one poster per line.
 */
export function writeManifest(file: string, posters: Poster[], dataDir: string): void {
  mkdirSync(dirname(file), { recursive: true });
  const lines = posters.map((p) =>
    JSON.stringify({ id: p.id, path: join(dataDir, p.imagePath), genres: p.genres, single_genre: p.singleGenre, split: p.split }),
  );
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, lines.join('\n') + '\n');
  renameSync(tmp, file);
}
