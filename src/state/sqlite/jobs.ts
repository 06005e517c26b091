import { randomBytes } from 'node:crypto';
import { ACTIVE_STATES, JobConflictError, type Job, type JobChanges, type JobStore } from '../jobs.js';
import { jobFromRow as fromRow, jobUpdate, type JobRow } from '../rows.js';
import { type Db, inWriteTransaction } from './db.js';

/** Jobs in SQLite; the database refuses a second unfinished job. */
export class SqliteJobStore implements JobStore {
  constructor(private readonly db: Db) {}

  async create(kind: string, params: Record<string, unknown>): Promise<Job> {
    const now = new Date().toISOString();
    const id = `job-${now.replace(/[-:.TZ]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
    try {
      this.db
        .prepare(`INSERT INTO jobs (id, kind, state, params, created_at, updated_at) VALUES (?, ?, 'queued', ?, ?, ?)`)
        .run(id, kind, JSON.stringify(params), now, now);
    } catch (error) {
      if ((error as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') throw new JobConflictError('another job is running');
      throw error;
    }
    return this.read(id)!;
  }

  async get(id: string): Promise<Job | null> {
    return this.read(id);
  }

  private read(id: string): Job | null {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? fromRow(row) : null;
  }

  async list(limit = 50): Promise<Job[]> {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?').all(limit) as JobRow[]).map(fromRow);
  }

  async unfinished(): Promise<Job | null> {
    return this.firstUnfinished();
  }

  private firstUnfinished(): Job | null {
    const row = this.db
      .prepare(`SELECT * FROM jobs WHERE state IN (${ACTIVE_STATES.map(() => '?').join(',')}) LIMIT 1`)
      .get(...ACTIVE_STATES) as JobRow | undefined;
    return row ? fromRow(row) : null;
  }

  async update(id: string, changes: JobChanges): Promise<Job> {
    return this.write(id, changes);
  }

  async mergeProgress(id: string, changes: Record<string, unknown>, logTail: string | null): Promise<void> {
    inWriteTransaction(this.db, () => {
      const current = this.read(id);
      if (!current) throw new Error(`no job ${id}`);
      this.write(id, { progress: { ...current.progress, ...changes }, logTail });
    });
  }

  private write(id: string, changes: JobChanges): Job {
    const now = new Date().toISOString();
    const current = this.read(id);
    if (!current) throw new Error(`no job ${id}`);
    this.db
      .prepare('UPDATE jobs SET state = ?, progress = ?, metrics = ?, model_version = ?, error = ?, log_tail = ?, updated_at = ?, finished_at = ? WHERE id = ?')
      .run(...jobUpdate(current, changes, now), id);
    return this.read(id)!;
  }

  /** After a restart nothing is running: unfinished jobs were interrupted. */
  async renewLease(): Promise<void> {}

  async failInterrupted(): Promise<Job[]> {
    const interrupted: Job[] = [];
    for (;;) {
      const job = this.firstUnfinished();
      if (!job) return interrupted;
      interrupted.push(this.write(job.id, { state: 'failed', error: `interrupted: the server stopped while the job was ${job.state}` }));
    }
  }
}
