import { closeSync, constants, copyFileSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
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

/** Flushes a file's data, or a directory's entries, to the disk. */
function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Puts a finished temporary file in place under its name, durably: its data reaches the disk
 * before the rename (else a power loss can leave the name on an empty file), and the directory's
 * entry after it (else the rename itself can be lost, and the older file found in its place, which
 * is how an index checkpoint came back older than the change log SQLite had already pruned).
 */
export function publishFile(tmp: string, file: string): void {
  fsyncPath(tmp);
  renameSync(tmp, file);
  // Windows opens no directory to flush; its renames are journalled by NTFS.
  if (process.platform !== 'win32') fsyncPath(dirname(file));
}

/**
 * Written to a temporary file and published (publishFile): a reader, or a restart after a crash
 * or a power loss, sees all of it or none. `data` is the content, or writes it to the open file
 * (for content too large to copy whole). `sync: false` skips the flushes (about 11 ms a file on
 * this machine's disk) for a bulk copy that can be made again, where a power loss may leave the
 * name on an empty file.
 */
export function writeAtomically(file: string, data: string | NodeJS.ArrayBufferView | ((fd: number) => void), options: { sync?: boolean } = {}): void {
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
    if (options.sync === false) renameSync(tmp, file);
    else publishFile(tmp, file);
  } finally {
    rmSync(tmp, { force: true });
  }
}

export function copyAtomically(from: string, to: string): void {
  mkdirSync(dirname(to), { recursive: true });
  const tmp = temporaryPath(to);
  try {
    copyFileSync(from, tmp, constants.COPYFILE_FICLONE);
    publishFile(tmp, to);
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
