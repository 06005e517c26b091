import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './support/paths.js';

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

describe('error codes', () => {
  it('every code the server can answer with is in the README error table', () => {
    const made = /(?:ApiError|ImageError)\(\s*(?:\d{3}|status)\s*,\s*'([a-z_]+)'|errorBody\(\s*'([a-z_]+)'/g;
    const codes = new Set<string>();
    for (const file of sources(join(ROOT, 'src'))) {
      for (const match of readFileSync(file, 'utf8').matchAll(made)) codes.add(match[1] ?? match[2]!);
    }
    assert.ok(codes.size >= 20, `found only ${[...codes].join(', ')}`);
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const table = readme.slice(readme.indexOf('| Status | Codes |'), readme.indexOf('## Configuration'));
    const documented = new Set([...table.matchAll(/`([a-z_]+)`/g)].map((m) => m[1]!));
    const missing = [...codes].filter((c) => !documented.has(c));
    assert.deepEqual(missing, [], `codes missing from the README's table: ${missing.join(', ')}`);
  });
});
