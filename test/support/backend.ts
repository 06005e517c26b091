import { State } from '../../src/state/state.js';
import { startCluster } from './postgres.js';

/**
 * With MARQUEE_TEST_BACKEND=postgres (scripts/test.sh runs the server suites this way too), each
 * data dir's servers and commands share a database of its own on one throwaway cluster per test
 * process, given the first time anything runs on that data dir (a restart, or a command before or
 * beside the server, finds its state), instead of the data dir's SQLite file.
 */
const onPostgres = process.env.MARQUEE_TEST_BACKEND === 'postgres';
const cluster = onPostgres ? await startCluster() : null;
// The cluster goes with the test process, however it ends ('exit' handlers run nothing asynchronous).
if (cluster) process.once('exit', () => cluster.stopNow());
const databases = new Map<string, string>();

/** The env a server or command on a data dir runs with: MARQUEE_DATABASE_URL added on PostgreSQL. */
export function withDatabase(env: Record<string, string>): Record<string, string> {
  const dataDir = env.MARQUEE_DATA_DIR;
  if (!cluster || !dataDir || env.MARQUEE_DATABASE_URL) return env;
  let url = databases.get(dataDir);
  if (!url) databases.set(dataDir, (url = cluster.databaseSync()));
  return { ...env, MARQUEE_DATABASE_URL: url };
}

/** The state a data dir's servers and commands keep, opened by the test to read what they stored (close it after). */
export function stateOf(env: Record<string, string>): Promise<State> {
  const { MARQUEE_DATA_DIR: dataDir, MARQUEE_DATABASE_URL: databaseUrl } = withDatabase(env);
  return State.connect({ dataDir: dataDir!, databaseUrl });
}

/** A fresh database on the test cluster with MARQUEE_TEST_BACKEND=postgres; null otherwise. */
export function testDatabase(): string | null {
  return cluster ? cluster.databaseSync() : null;
}
