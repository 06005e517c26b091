import { readdirSync, renameSync, rmSync } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { publishFile, temporaryPath } from '../state/files.js';
import { checkpointFiles, checkpointPosition } from './vector-index.js';
import type { IndexScalar } from './graph.js';

/** Snapshots kept per index in the shared directory: the newest, and one a server may be copying. */
const KEPT = 2;

/**
 * Index checkpoints shared by the servers of a cluster (MARQUEE_SHARED_DIR/snapshots): a server that
 * builds an index publishes its files, and a server that has no checkpoint of its own, or an older
 * one, starts from the newest published instead of building (minutes at a million posters), then
 * replays the change log past its position as from its own. A snapshot is a directory named by
 * what it holds, `<model version>[.<precision>].<scalar>@<position>`, whose files are copied in under
 * a temporary name and published by one rename, so a reader sees a whole snapshot or none.
 */
export class SharedSnapshots {
  private readonly dir: string;

  constructor(sharedDir: string) {
    this.dir = join(sharedDir, 'snapshots');
  }

  /** Copies the newest snapshot of `file`'s index into place when it is newer than the checkpoint there; its position, or null when none was taken. */
  async adopt(file: string, scalar: IndexScalar): Promise<number | null> {
    const newest = this.list(file, scalar)[0];
    if (!newest || (checkpointPosition(file) ?? -1) >= newest.position) return null;
    const [graph, rows, meta] = checkpointFiles(file);
    await mkdir(dirname(file), { recursive: true });
    // The meta goes first and comes back last: files half copied are never taken for a checkpoint.
    rmSync(meta, { force: true });
    for (const target of [graph, rows, meta]) await copyInto(join(this.dir, newest.name, basename(target)), target);
    return newest.position;
  }

  /** Publishes the checkpoint at `file` (just built by this server), unless one as new is there; prunes older ones. */
  async publish(file: string, scalar: IndexScalar): Promise<void> {
    const position = checkpointPosition(file);
    if (position === null) return;
    const name = `${snapshotStem(file, scalar)}@${position}`;
    const snapshots = this.list(file, scalar);
    if (snapshots.some((s) => s.position >= position)) return;
    const final = join(this.dir, name);
    const staging = temporaryPath(final);
    try {
      await mkdir(staging, { recursive: true });
      for (const source of checkpointFiles(file)) await copyInto(source, join(staging, basename(source)));
      renameSync(staging, final);
    } catch (error) {
      // Another server published the same position first: theirs stands.
      if ((error as NodeJS.ErrnoException).code !== 'ENOTEMPTY' && (error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
    for (const old of this.list(file, scalar).slice(KEPT)) rmSync(join(this.dir, old.name), { recursive: true, force: true });
  }

  /** The published snapshots of `file`'s index, newest first. */
  private list(file: string, scalar: IndexScalar): { name: string; position: number }[] {
    const prefix = `${snapshotStem(file, scalar)}@`;
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names
      .filter((name) => name.startsWith(prefix) && /^\d+$/.test(name.slice(prefix.length)))
      .map((name) => ({ name, position: Number(name.slice(prefix.length)) }))
      .sort((a, b) => b.position - a.position);
  }
}

/** `indexes/<version>.int8.usearch` stored as i8 → `<version>.int8.i8`. */
function snapshotStem(file: string, scalar: IndexScalar): string {
  return `${basename(file).replace(/\.usearch$/, '')}.${scalar}`;
}

/** A copy made off the event loop (an index at a million posters is gigabytes), published durably under its name. */
async function copyInto(from: string, to: string): Promise<void> {
  const tmp = temporaryPath(to);
  try {
    await copyFile(from, tmp);
    publishFile(tmp, to);
  } finally {
    rmSync(tmp, { force: true });
  }
}
