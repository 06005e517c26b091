import { randomBytes } from 'node:crypto';
import { ACTIVE_STATES, JobConflictError, type Job, type JobChanges, type JobStore } from '../jobs.js';
import { jobFromRow as fromRow, jobUpdate, type JobRow } from '../rows.js';
import { type Client, type Pool, transaction } from './db.js';

/** JobStore on PostgreSQL; the database refuses a second unfinished job, whichever server asks. */
export class PostgresJobStore implements JobStore {
  constructor(private readonly pool: Pool) {}

  async create(kind: string, params: Record<string, unknown>): Promise<Job> {
    const now = new Date().toISOString();
    const id = `job-${now.replace(/[-:.TZ]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
    try {
      const { rows } = await this.pool.query<JobRow>(
        `INSERT INTO jobs (id, kind, state, params, created_at, updated_at) VALUES ($1, $2, 'queued', $3, $4, $4) RETURNING *`,
        [id, kind, JSON.stringify(params), now],
      );
      return fromRow(rows[0]!);
    } catch (error) {
      if ((error as { constraint?: string }).constraint === 'jobs_one_unfinished') throw new JobConflictError('another job is running');
      throw error;
    }
  }

  async get(id: string): Promise<Job | null> {
    const { rows } = await this.pool.query<JobRow>('SELECT * FROM jobs WHERE id = $1', [id]);
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async list(limit = 50): Promise<Job[]> {
    return (await this.pool.query<JobRow>('SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT $1', [limit])).rows.map(fromRow);
  }

  async unfinished(): Promise<Job | null> {
    const { rows } = await this.pool.query<JobRow>('SELECT * FROM jobs WHERE state = ANY($1) LIMIT 1', [ACTIVE_STATES]);
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async update(id: string, changes: JobChanges): Promise<Job> {
    return transaction(this.pool, (client) => write(client, id, changes));
  }

  async mergeProgress(id: string, changes: Record<string, unknown>, logTail: string | null): Promise<void> {
    const { rowCount } = await this.pool.query(
      `UPDATE jobs SET progress = coalesce(progress, '{}'::jsonb) || $2::jsonb, log_tail = $3, updated_at = $4 WHERE id = $1`,
      [id, JSON.stringify(changes), logTail, new Date().toISOString()],
    );
    if (rowCount === 0) throw new Error(`no job ${id}`);
  }

  async renewLease(id: string, ttlMs: number): Promise<void> {
    await this.pool.query("UPDATE jobs SET lease_expires_at = now() + $2 * interval '1 millisecond' WHERE id = $1 AND state = ANY($3)", [id, ttlMs, ACTIVE_STATES]);
  }

  async failInterrupted(): Promise<Job[]> {
    return transaction(this.pool, async (client) => {
      // SKIP LOCKED: a job its runner is writing right now is alive; servers sweeping together each take their own.
      const { rows } = await client.query<JobRow>('SELECT * FROM jobs WHERE state = ANY($1) AND lease_expires_at < now() FOR UPDATE SKIP LOCKED', [ACTIVE_STATES]);
      const interrupted: Job[] = [];
      for (const job of rows.map(fromRow)) {
        interrupted.push(await write(client, job.id, { state: 'failed', error: `interrupted: its server stopped renewing its lease while the job was ${job.state}` }));
      }
      return interrupted;
    });
  }
}

/** A job's row changed, read and written in the caller's transaction (the row locked). */
async function write(client: Client, id: string, changes: JobChanges): Promise<Job> {
  const now = new Date().toISOString();
  const found = (await client.query<JobRow>('SELECT * FROM jobs WHERE id = $1 FOR UPDATE', [id])).rows[0];
  if (!found) throw new Error(`no job ${id}`);
  const current = fromRow(found);
  const { rows } = await client.query<JobRow>(
    `UPDATE jobs SET state = $1, progress = $2, metrics = $3, model_version = $4, error = $5, log_tail = $6, updated_at = $7, finished_at = $8
     WHERE id = $9 RETURNING *`,
    [...jobUpdate(current, changes, now), id],
  );
  return fromRow(rows[0]!);
}
