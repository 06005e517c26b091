import { execFileSync, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Pool } from '../../src/state/postgres/db.js';
import { freePort } from './ports.js';

/**
 * A throwaway PostgreSQL cluster on loopback, for the tests that run a store on PostgreSQL: Debian's
 * postgresql-15 binaries (.ci/run installs them), a data directory of its own under /tmp, a free
 * port, stopped and removed by stop(). No PostgreSQL is a failure, not a skip. As root (CI), the
 * server runs as the `postgres` user, which the package creates: PostgreSQL refuses to run as root.
 */
export interface TestCluster {
  /** A new, empty database on the cluster, or the one named if it is there; its URL. */
  database(name?: string): Promise<string>;
  /** A new, empty database, created without leaving the thread (for a command's env, built synchronously); its URL. */
  databaseSync(): string;
  stop(): Promise<void>;
  /** stop, synchronously: for a process's 'exit' handler. */
  stopNow(): void;
}

export async function startCluster(options: { keepIn?: string } = {}): Promise<TestCluster> {
  const bin = postgresBin();
  // keepIn: a cluster a benchmark keeps between its runs, started again if it is there, never removed.
  const dir = options.keepIn ?? mkdtempSync('/tmp/marquee-pg-');
  mkdirSync(dir, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  const owner = asRoot ? Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim()) : null;
  if (owner !== null) chownSync(dir, owner, Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim()));
  const run = (tool: string, args: string[]) => {
    const [command, all] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(bin, tool), ...args]] : [join(bin, tool), args];
    const result = spawnSync(command, all, { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`${tool} failed (${result.status}): ${result.stderr || result.stdout}`);
  };
  const data = join(dir, 'data');
  if (!existsSync(join(data, 'PG_VERSION'))) run('initdb', ['-D', data, '-A', 'trust', '-U', 'marquee', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  run('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-w', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`, 'start']);
  const base = `postgres://marquee@127.0.0.1:${port}`;
  const stopNow = () => {
    try {
      run('pg_ctl', ['-D', data, '-m', options.keepIn ? 'fast' : 'immediate', '-w', 'stop']);
    } catch {
      // already stopped
    } finally {
      if (!options.keepIn) rmSync(dir, { recursive: true, force: true });
    }
  };
  return {
    async database(named?: string) {
      const name = named ?? `t_${randomBytes(6).toString('hex')}`;
      // A connection per database, not one held open: an open socket would keep a test process alive.
      const admin = new pg.Client({ connectionString: `${base}/postgres` });
      await admin.connect();
      try {
        const there = named && (await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [named])).rowCount;
        if (!there) await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return `${base}/${name}`;
    },
    databaseSync() {
      const name = `t_${randomBytes(6).toString('hex')}`;
      run('psql', ['-h', '127.0.0.1', '-p', String(port), '-U', 'marquee', '-d', 'postgres', '-qc', `CREATE DATABASE ${name}`]);
      return `${base}/${name}`;
    },
    async stop() {
      stopNow();
    },
    stopNow,
  };
}

/**
 * What embeddings need to belong to, as rows only: the fp32 variant of a 2-dimensional model `m1`,
 * and posters p1..pN with keys 1..N (the change log's tests and benchmark write embeddings of them).
 */
export async function seedEmbeddingSpace(pool: Pool, posters: number): Promise<void> {
  await pool.query(
    `INSERT INTO model_versions (version, file_path, file_sha256, dims, input_width, input_height, input_name, output_name, preprocessing, source, created_at)
     VALUES ('m1', 'models/m1.onnx', 'x', 2, 1, 1, 'image', 'embedding', '{}', '{}', 'now')`,
  );
  await pool.query("INSERT INTO model_variants (version, precision, file_path, file_sha256, details, created_at) VALUES ('m1', 'fp32', 'models/m1.onnx', 'x', '{}', 'now')");
  await pool.query(
    `INSERT INTO posters (id, genres, single_genre, image_path, image_sha256, pixel_sha256, width, height, imported_at)
     SELECT 'p' || i, '["Drama"]', 'Drama', 'x', 'x', 'x', 1, 1, 'now' FROM generate_series(1, $1::int) AS i`,
    [posters],
  );
}

/** The newest installed server's binaries (MARQUEE_TEST_PG_BIN overrides). */
function postgresBin(): string {
  if (process.env.MARQUEE_TEST_PG_BIN) return process.env.MARQUEE_TEST_PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'initdb'))) : [];
  if (versions.length === 0) throw new Error('no PostgreSQL server here: install postgresql-15 (.ci/run does), or set MARQUEE_TEST_PG_BIN');
  return join(root, versions.sort((a, b) => Number(b) - Number(a))[0]!, 'bin');
}
