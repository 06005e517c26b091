import pg from 'pg';
import type { Precision } from '../models.js';
import type { Pool } from './db.js';

/** A poster's embedding under a variant changed (added, replaced or removed): its current row says which. */
export interface EmbeddingChange {
  version: string;
  precision: Precision;
  key: number;
}

export interface FollowerOptions {
  /** Where the database is, for the connection that LISTENs (the pool's own clients come and go). */
  url: string;
  /** Called with each batch of changes read, in the order of their transactions' ids; awaited before the next read. */
  onChanges: (changes: EmbeddingChange[]) => void | Promise<void>;
  /** The backstop when a notification is lost (a dropped connection loses them). */
  pollMs?: number;
  /** The watermark to start from (a snapshot's horizon); by default the database's horizon now. */
  from?: bigint;
}

const CHANNEL = 'marquee_changes';
const DEFAULT_POLL_MS = 1000;

/**
 * Follows the embeddings' change log (migrations/postgres/002) as a replica must: every committed
 * change read once, none skipped. The watermark is a transaction horizon: each read takes the log
 * rows whose writer's transaction id is at least the last horizon and below the horizon now,
 * `pg_snapshot_xmin` of the read's own snapshot, below which every transaction has finished. A
 * transaction still open holds the horizon back, so a row it commits late is read then, never
 * passed over as a sequence number would be. A read is woken by NOTIFY on a connection of its own,
 * and made every `pollMs` whatever happens to that connection.
 *
 * A write's change id is its transaction id (pg_current_xact_id()); this replica has applied it
 * once its watermark is past it (waitFor).
 */
export class ChangeFollower {
  private listener: pg.Client | null = null;
  private timer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private readAgain = false;
  private stopped = false;
  private readonly waiters = new Set<{ id: bigint; resolve: (caughtUp: boolean) => void }>();

  private constructor(
    private readonly pool: Pool,
    private readonly options: FollowerOptions,
    private mark: bigint,
  ) {}

  static async start(pool: Pool, options: FollowerOptions): Promise<ChangeFollower> {
    const from = options.from ?? BigInt((await pool.query<{ horizon: string }>('SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS horizon')).rows[0]!.horizon);
    const follower = new ChangeFollower(pool, options, from);
    await follower.listen();
    follower.timer = setInterval(() => {
      if (!follower.listener) void follower.listen();
      follower.wake();
    }, options.pollMs ?? DEFAULT_POLL_MS);
    follower.timer.unref();
    return follower;
  }

  /** Every transaction below it has been read. */
  get watermark(): bigint {
    return this.mark;
  }

  /** Reads what has committed since the last read (one read at a time; a wake during one reads again after it). */
  catchUp(): Promise<void> {
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    this.reading = (async () => {
      try {
        do {
          this.readAgain = false;
          await this.read();
        } while (this.readAgain && !this.stopped);
      } finally {
        this.reading = null;
      }
    })();
    return this.reading;
  }

  /** Whether this follower gets past the change `id` (a write's transaction id) within `timeoutMs`. */
  waitFor(id: bigint, timeoutMs: number): Promise<boolean> {
    if (this.mark > id) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = {
        id,
        resolve: (caughtUp: boolean) => {
          clearTimeout(timeout);
          this.waiters.delete(waiter);
          resolve(caughtUp);
        },
      };
      const timeout = setTimeout(() => waiter.resolve(false), timeoutMs);
      this.waiters.add(waiter);
      this.wake();
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const waiter of [...this.waiters]) waiter.resolve(false);
    await this.reading?.catch(() => {});
    await this.listener?.end().catch(() => {});
    this.listener = null;
  }

  private wake(): void {
    if (!this.stopped) this.catchUp().catch(() => {}); // a failed read is tried again at the next wake or poll
  }

  private async read(): Promise<void> {
    // One statement, one snapshot: the horizon is this snapshot's, so every row below it is visible here.
    const { rows } = await this.pool.query<{ horizon: string; txid: string | null; version: string | null; precision: Precision | null; key: string | null }>(
      `WITH h AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS horizon)
       SELECT h.horizon::text AS horizon, c.txid::text AS txid, c.model_version AS version, c.precision, c.poster_key::text AS key
       FROM h LEFT JOIN embedding_changes c ON c.txid >= $1::text::xid8 AND c.txid < h.horizon
       ORDER BY c.txid`,
      [this.mark.toString()],
    );
    const horizon = BigInt(rows[0]!.horizon);
    const changes = rows.flatMap((r) => (r.txid === null ? [] : [{ version: r.version!, precision: r.precision!, key: Number(r.key) }]));
    if (changes.length > 0) await this.options.onChanges(changes);
    if (horizon > this.mark) this.mark = horizon;
    for (const waiter of [...this.waiters]) if (this.mark > waiter.id) waiter.resolve(true);
  }

  private async listen(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client({ connectionString: this.options.url, application_name: 'marquee-follower' });
    const lost = () => {
      if (this.listener === client) this.listener = null; // the poll reconnects
    };
    client.on('error', lost);
    client.on('end', lost);
    client.on('notification', () => this.wake());
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}`);
      this.listener = client;
      this.wake(); // what committed while no one listened
    } catch {
      await client.end().catch(() => {});
    }
  }
}
