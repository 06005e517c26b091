import { lstatSync, mkdirSync, readdirSync, readlinkSync, rmdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** What every server of a cluster reads from one place: the pictures, the model files, fetched weights. */
export const SHARED_SUBDIRS = ['images', 'models', 'weights'] as const;

/**
 * Makes the data dir's shared subdirectories links into `sharedDir` (MARQUEE_SHARED_DIR, e.g. an
 * NFS mount), so that a picture or model file one server writes (atomically, under a name of its
 * content) is there for every other, by the same relative path the database records. The rest of
 * a data dir (index checkpoints, maps, scratch, the SQLite file) stays the server's own. A data
 * dir whose subdirectory already holds files of its own is refused rather than hidden.
 */
export function linkSharedDir(dataDir: string, sharedDir: string): void {
  mkdirSync(dataDir, { recursive: true });
  for (const name of SHARED_SUBDIRS) {
    const target = resolve(sharedDir, name);
    mkdirSync(target, { recursive: true });
    const link = join(dataDir, name);
    const found = lstatSync(link, { throwIfNoEntry: false });
    if (found?.isSymbolicLink()) {
      if (resolve(dataDir, readlinkSync(link)) === target) continue;
      unlinkSync(link);
    } else if (found) {
      if (!found.isDirectory() || readdirSync(link).length > 0) {
        throw new Error(`${link} holds files of its own: move them into ${target} (MARQUEE_SHARED_DIR), or unset it`);
      }
      rmdirSync(link);
    }
    symlinkSync(target, link, 'dir');
  }
}
