// Files are published durably (src/state/files.ts publishFile): the data of the temporary file is
// flushed before the rename, and its directory after it. What the process asks of the kernel is read
// with strace, since no test can cut the power.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ROOT } from './support/paths.js';

const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' });
if (strace.status !== 0) throw new Error('strace is not installed: the order of fsync and rename cannot be observed (apt-get install strace; .ci/run installs it)');

/** The file system calls a script made, in order: each with the path it concerns (fds resolved to what they were opened as). */
function traced(script: string): { call: string; path: string }[] {
  const dir = mkdtempSync(join(tmpdir(), 'marquee-strace-'));
  const log = join(dir, 'strace.log');
  const run = spawnSync(
    'strace',
    ['-f', '-qq', '-e', 'trace=openat,fsync,fdatasync,rename,renameat,renameat2', '-o', log, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script],
    { cwd: ROOT, encoding: 'utf8' },
  );
  if (run.status !== 0 && /ptrace|Operation not permitted/i.test(run.stderr)) throw new Error(`strace cannot trace here: ${run.stderr}`);
  assert.equal(run.status, 0, run.stderr);
  const fds = new Map<string, string>();
  const calls: { call: string; path: string }[] = [];
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const pid = line.split(' ', 1)[0]!;
    const open = /openat\(AT_FDCWD, "([^"]+)", [^)]*\)\s+= (\d+)$/.exec(line);
    if (open) fds.set(`${pid}:${open[2]}`, open[1]!);
    const sync = /(?:fsync|fdatasync)\((\d+)\)\s+= 0$/.exec(line);
    if (sync) calls.push({ call: 'fsync', path: fds.get(`${pid}:${sync[1]}`) ?? `fd ${sync[1]}` });
    const rename = /rename(?:at2?)?\((?:AT_FDCWD, )?"([^"]+)", (?:AT_FDCWD, )?"([^"]+)"/.exec(line);
    if (rename) calls.push({ call: 'rename', path: `${rename[1]} -> ${rename[2]}` });
  }
  return calls;
}

describe('durable files', () => {
  it('a file written atomically, or copied, is flushed before its rename and its directory after', () => {
    const dir = mkdtempSync(join(tmpdir(), 'marquee-durable-'));
    const source = join(dir, 'source.bin');
    writeFileSync(source, 'model bytes');
    const calls = traced(
      `import { copyAtomically, writeAtomically } from './src/state/files.ts';
       writeAtomically(${JSON.stringify(join(dir, 'written.json'))}, '{}');
       copyAtomically(${JSON.stringify(source)}, ${JSON.stringify(join(dir, 'copied.onnx'))});`,
    ).filter((c) => c.path.startsWith(dir));
    for (const name of ['written.json', 'copied.onnx']) {
      const renamed = calls.findIndex((c) => c.call === 'rename' && c.path.endsWith(` -> ${join(dir, name)}`));
      assert.ok(renamed >= 0, `${name} is renamed into place: ${JSON.stringify(calls)}`);
      const tmp = calls[renamed]!.path.split(' -> ')[0]!;
      const flushed = calls.findIndex((c) => c.call === 'fsync' && c.path === tmp);
      assert.ok(flushed >= 0 && flushed < renamed, `${name}: its data is flushed before the rename: ${JSON.stringify(calls)}`);
      const entry = calls.findIndex((c, i) => i > renamed && c.call === 'fsync' && c.path === dir);
      assert.ok(entry > renamed, `${name}: the directory is flushed after the rename: ${JSON.stringify(calls)}`);
    }
  });
});
