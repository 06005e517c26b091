import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Db = Database.Database;

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'migrations');

/** Opens (creating if needed) the SQLite database in WAL mode and applies pending migrations. */
export function openDb(file: string): Db {
  mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  // First: the pragmas after it take locks, and a server beside this process may hold one (without a
  // busy handler SQLite answers SQLITE_BUSY at once).
  db.pragma('busy_timeout = 5000');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  migrate(db);
  return db;
}

/** A read-only connection to an existing database (a thread reading beside the server's writes: WAL). */
export function openReadOnlyDb(file: string): Db {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  db.pragma('busy_timeout = 5000');
  return db;
}

/**
 * Runs fn in one transaction that takes the write lock at its start (BEGIN IMMEDIATE); every write
 * transaction of src/state is one. A deferred one that reads first cannot upgrade once another
 * connection (an import beside the server) has written past its snapshot: SQLite answers SQLITE_BUSY
 * at once, without waiting on the busy timeout. Called inside another, it is a savepoint of that one.
 */
export function inWriteTransaction<T>(db: Db, fn: () => T): T {
  return db.transaction(fn).immediate();
}

/**
 * Applies migrations/NNN_*.sql in order; PRAGMA user_version records the last one applied. Foreign
 * keys are off while they run (a table rebuild must not cascade its DROP) and checked before each commits.
 */
export function migrate(db: Db): void {
  const applied = db.pragma('user_version', { simple: true }) as number;
  const files = readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d+_.*\.sql$/.test(f))
    .sort();
  const enforced = db.pragma('foreign_keys', { simple: true }) as number;
  db.pragma('foreign_keys = OFF');
  try {
    for (const file of files) {
      const number = Number.parseInt(file, 10);
      if (number <= applied) continue;
      const sql = readFileSync(join(MIGRATIONS_DIR, file), 'utf8');
      inWriteTransaction(db, () => {
        db.exec(sql);
        const broken = db.pragma('foreign_key_check') as unknown[];
        if (broken.length > 0) throw new Error(`migration ${file} breaks ${broken.length} foreign keys`);
        db.pragma(`user_version = ${number}`);
      });
    }
  } finally {
    db.pragma(`foreign_keys = ${enforced ? 'ON' : 'OFF'}`);
  }
}
