import { startCluster, type TestCluster } from './postgres.js';

/**
 * With MARQUEE_TEST_BACKEND=postgres (scripts/test.sh runs the server suites that need no SQLite file
 * of their own this way too), each data dir's server and commands get a database of their own on one
 * throwaway cluster per test process, kept for the data dir (a restart or a command beside the server
 * finds its state), instead of the data dir's SQLite file.
 */
const onPostgres = process.env.MARQUEE_TEST_BACKEND === 'postgres';
let cluster: Promise<TestCluster> | null = null;
let started: TestCluster | null = null;
const databases = new Map<string, string>();

/** The env a server on `dataDir` starts with: MARQUEE_DATABASE_URL added on PostgreSQL. */
export async function withDatabase(dataDir: string, env: Record<string, string>): Promise<Record<string, string>> {
  if (!onPostgres || env.MARQUEE_DATABASE_URL) return env;
  if (!cluster) {
    cluster = startCluster().then((c) => (started = c));
    // The cluster goes with the test process, however it ends ('exit' handlers run nothing asynchronous).
    process.once('exit', () => started?.stopNow());
  }
  let url = databases.get(dataDir);
  if (!url) databases.set(dataDir, (url = await (await cluster).database()));
  return { ...env, MARQUEE_DATABASE_URL: url };
}

/** The env a command on a data dir runs with: the database of that data dir's server, if it has one. */
export function withKnownDatabase(env: Record<string, string>): Record<string, string> {
  const url = env.MARQUEE_DATA_DIR ? databases.get(env.MARQUEE_DATA_DIR) : undefined;
  return url && !env.MARQUEE_DATABASE_URL ? { ...env, MARQUEE_DATABASE_URL: url } : env;
}
