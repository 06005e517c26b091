import { closeSync, constants, copyFileSync, existsSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { processAlive } from './processes.js';

let sequence = 0;

/**
 * The one name for a file being written: `<file>.tmp-<pid>-<n>`. The pid tells a later start
 * whether the writer is gone (its leftovers can go) or still at work in another process.
 */
export function temporaryPath(file: string): string {
  return `${file}.tmp-${process.pid}-${++sequence}`;
}

const TEMPORARY = /\.tmp-(\d+)-\d+$/;

/**
 * Written to a temporary file and renamed: a reader, or a restart after a crash, sees all of it or
 * none. `data` is the content, or writes it to the open file (for content too large to copy whole).
 */
export function writeAtomically(file: string, data: string | NodeJS.ArrayBufferView | ((fd: number) => void)): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = temporaryPath(file);
  try {
    if (typeof data === 'function') {
      const fd = openSync(tmp, 'w');
      try {
        data(fd);
      } finally {
        closeSync(fd);
      }
    } else {
      writeFileSync(tmp, data);
    }
    renameSync(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function copyAtomically(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  const tmp = temporaryPath(to);
  try {
    copyFileSync(from, tmp, constants.COPYFILE_FICLONE);
    renameSync(tmp, to);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Removes the temporary files of writers that are no longer running (a process killed mid-write
 * leaves its `.tmp-<pid>-<n>`), anywhere under `dir`. Returns what it removed, relative to `dir`.
 */
export function sweepTemporaryFiles(dir: string): string[] {
  const removed: string[] = [];
  const walk = (at: string, relative: string) => {
    if (!existsSync(at)) return;
    for (const entry of readdirSync(at, { withFileTypes: true })) {
      const path = join(at, entry.name);
      const name = relative ? `${relative}/${entry.name}` : entry.name;
      const match = TEMPORARY.exec(entry.name);
      if (match && !processAlive(Number(match[1]))) {
        rmSync(path, { recursive: true, force: true });
        removed.push(name);
      } else if (entry.isDirectory()) {
        walk(path, name);
      }
    }
  };
  walk(dir, '');
  return removed;
}
