import { randomBytes } from 'node:crypto';
import type { Db } from './db.js';

export const ACTIVE_STATES = ['queued', 'preparing', 'training', 'evaluating', 'indexing', 'swapping'] as const;
export const FINAL_STATES = ['succeeded', 'failed', 'cancelled', 'rejected'] as const;
export type JobState = (typeof ACTIVE_STATES)[number] | (typeof FINAL_STATES)[number];

export interface Job {
  id: string;
  kind: string;
  state: JobState;
  params: Record<string, unknown>;
  progress: Record<string, unknown> | null;
  metrics: Record<string, unknown> | null;
  modelVersion: string | null;
  error: string | null;
  logTail: string | null;
  createdAt: string;
  updatedAt: string;
  finishedAt: string | null;
}

interface JobRow {
  id: string;
  kind: string;
  state: JobState;
  params: string;
  progress: string | null;
  metrics: string | null;
  model_version: string | null;
  error: string | null;
  log_tail: string | null;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
}

const json = (text: string | null) => (text ? (JSON.parse(text) as Record<string, unknown>) : null);

function fromRow(row: JobRow): Job {
  return {
    id: row.id,
    kind: row.kind,
    state: row.state,
    params: JSON.parse(row.params) as Record<string, unknown>,
    progress: json(row.progress),
    metrics: json(row.metrics),
    modelVersion: row.model_version,
    error: row.error,
    logTail: row.log_tail,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    finishedAt: row.finished_at,
  };
}

export class JobConflictError extends Error {}

export function isFinal(state: JobState): boolean {
  return (FINAL_STATES as readonly string[]).includes(state);
}

/** Jobs in SQLite; the database refuses a second unfinished job. */
export class JobStore {
  constructor(private readonly db: Db) {}

  create(kind: string, params: Record<string, unknown>): Job {
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
    return this.get(id)!;
  }

  get(id: string): Job | null {
    const row = this.db.prepare('SELECT * FROM jobs WHERE id = ?').get(id) as JobRow | undefined;
    return row ? fromRow(row) : null;
  }

  list(limit = 50): Job[] {
    return (this.db.prepare('SELECT * FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?').all(limit) as JobRow[]).map(fromRow);
  }

  unfinished(): Job | null {
    const row = this.db
      .prepare(`SELECT * FROM jobs WHERE state IN (${ACTIVE_STATES.map(() => '?').join(',')}) LIMIT 1`)
      .get(...ACTIVE_STATES) as JobRow | undefined;
    return row ? fromRow(row) : null;
  }

  update(
    id: string,
    changes: Partial<Pick<Job, 'state' | 'progress' | 'metrics' | 'modelVersion' | 'error' | 'logTail'>>,
  ): Job {
    const now = new Date().toISOString();
    const current = this.get(id);
    if (!current) throw new Error(`no job ${id}`);
    const next = { ...current, ...changes };
    this.db
      .prepare(
        `UPDATE jobs SET state = ?, progress = ?, metrics = ?, model_version = ?, error = ?, log_tail = ?, updated_at = ?,
           finished_at = ? WHERE id = ?`,
      )
      .run(
        next.state,
        next.progress ? JSON.stringify(next.progress) : null,
        next.metrics ? JSON.stringify(next.metrics) : null,
        next.modelVersion,
        next.error,
        next.logTail,
        now,
        isFinal(next.state) ? (current.finishedAt ?? now) : null,
        id,
      );
    return this.get(id)!;
  }

  /** After a restart nothing is running: unfinished jobs were interrupted. */
  failInterrupted(): Job[] {
    const interrupted: Job[] = [];
    for (;;) {
      const job = this.unfinished();
      if (!job) return interrupted;
      interrupted.push(this.update(job.id, { state: 'failed', error: `interrupted: the server stopped while the job was ${job.state}` }));
    }
  }
}
