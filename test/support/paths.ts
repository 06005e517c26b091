import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const SHARED_CATALOG = resolve(process.env.MARQUEE_TEST_CATALOG ?? join(ROOT, '..', 'shared', 'posters'));
export const CACHE = join(ROOT, 'test', '.cache');
export const PYTHON = process.env.MARQUEE_PYTHON ?? join(ROOT, '.venv', 'bin', 'python');

if (!existsSync(join(SHARED_CATALOG, 'movies.csv'))) {
  throw new Error(`the poster catalog is not at ${SHARED_CATALOG}; set MARQUEE_TEST_CATALOG`);
}
