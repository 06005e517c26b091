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

export type JobChanges = Partial<Pick<Job, 'state' | 'progress' | 'metrics' | 'modelVersion' | 'error' | 'logTail'>>;

/** Thrown by JobStore.create while another job is unfinished. */
export class JobConflictError extends Error {}

export function isFinal(state: JobState): boolean {
  return (FINAL_STATES as readonly string[]).includes(state);
}

/** Retrain jobs and their progress; at most one unfinished at a time. */
export interface JobStore {
  /** A queued job; JobConflictError while another is unfinished. */
  create(kind: string, params: Record<string, unknown>): Promise<Job>;
  get(id: string): Promise<Job | null>;
  /** The latest first. */
  list(limit?: number): Promise<Job[]>;
  unfinished(): Promise<Job | null>;
  update(id: string, changes: JobChanges): Promise<Job>;
  /** The job's progress merged with `changes` (keys replaced, others kept) and its log tail set, in one write. */
  mergeProgress(id: string, changes: Record<string, unknown>, logTail: string | null): Promise<void>;
  /** The job's runner is alive: its lease now runs `ttlMs` from now (SQLite: nothing to renew; one process runs jobs). */
  renewLease(id: string, ttlMs: number): Promise<void>;
  /**
   * Unfinished jobs that no live runner holds, marked failed: on SQLite every one (one process holds
   * the data dir, and it has just started); on PostgreSQL those whose lease has expired, never
   * another server's running job.
   */
  failInterrupted(): Promise<Job[]>;
}
