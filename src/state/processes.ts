import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Whether a process with this pid exists (EPERM: it does, owned by someone else). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Linux's start time of a process (clock ticks since boot), to tell a pid from its reuse; null elsewhere. */
function startTime(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22; the command name (field 2) is in parentheses and may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/**
 * Commands that write what the server's start-up repairs (jobs, model files) run one at a time;
 * `index` (which deletes and rewrites the active version's embeddings) runs alone; the others
 * (import, import-tmdb, eval, figures...) share the data dir with a server through SQLite's WAL and busy timeout.
 */
const EXCLUSIVE = new Set(['serve', 'index', 'train', 'models']);

function conflicts(a: string, b: string): boolean {
  return (EXCLUSIVE.has(a) && EXCLUSIVE.has(b)) || a === 'index' || b === 'index';
}

interface Claim {
  pid: number;
  command: string;
  started: string | null;
  at: string;
}

export class DataDirBusy extends Error {}

function describe(claim: Claim): string {
  return `marquee ${claim.command} (pid ${claim.pid}, since ${claim.at})`;
}

/**
 * Records that this process works on the data dir (`run/<pid>.json`, removed on exit; a killed
 * process's record is recognised as stale by its pid and start time), then refuses with
 * DataDirBusy, naming the other process, when a live command conflicts with this one. The record
 * is written before looking, so of two commands racing, each sees the other.
 */
export function claimDataDir(dataDir: string, command: string): { release: () => void } {
  const dir = join(dataDir, 'run');
  mkdirSync(dir, { recursive: true });
  const own = join(dir, `${process.pid}.json`);
  const claim: Claim = { pid: process.pid, command, started: startTime(process.pid), at: new Date().toISOString() };
  writeFileSync(own, JSON.stringify(claim));
  const release = () => rmSync(own, { force: true });
  const conflict = liveClaims(dir).find((other) => other.pid !== process.pid && conflicts(command, other.command));
  if (conflict) {
    release();
    const hint = conflict.command === 'serve' && command === 'train' ? ' (or retrain through POST /admin/retrain)' : '';
    throw new DataDirBusy(`${dataDir} is in use by ${describe(conflict)}: stop it or wait for it to finish${hint}`);
  }
  process.once('exit', release);
  return { release };
}

function liveClaims(dir: string): Claim[] {
  const claims: Claim[] = [];
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.json')) continue;
    const file = join(dir, name);
    let claim: Claim;
    try {
      claim = JSON.parse(readFileSync(file, 'utf8')) as Claim;
    } catch {
      continue; // being written right now
    }
    const alive = processAlive(claim.pid) && (claim.started === null || startTime(claim.pid) === claim.started);
    if (alive) claims.push(claim);
    else if (existsSync(file)) rmSync(file, { force: true });
  }
  return claims;
}
