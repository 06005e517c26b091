import type { EmbeddingSpace } from './embeddings.js';

/**
 * The servers sharing one database, and the model swap they make together (PostgreSQL only: on
 * SQLite one server holds the data dir, and swaps alone). Ids are the servers' own, random per start.
 */
export interface FleetStore {
  /** This server is alive (and serving) now. */
  heartbeat(server: string): Promise<void>;
  /** This server has stopped: it is no longer waited for. */
  leave(server: string): Promise<void>;
  /** The servers whose last heartbeat is at most `withinMs` old. */
  live(withinMs: number): Promise<string[]>;
  /** Asks every server to load this model variant, to be swapped in. */
  propose(space: EmbeddingSpace): Promise<void>;
  /** A candidate swapped in, or given up: no longer loaded by servers that look. */
  withdraw(space: EmbeddingSpace): Promise<void>;
  /** The variants proposed at most `withinMs` ago and not withdrawn. */
  candidates(withinMs: number): Promise<EmbeddingSpace[]>;
  /** This server has loaded a candidate (its engine and index) and can switch to it at once. */
  markReady(space: EmbeddingSpace, server: string): Promise<void>;
  /** The servers ready to switch to a candidate. */
  ready(space: EmbeddingSpace): Promise<string[]>;
  /** The active model version's name (a cheap look, made often). */
  activeVersion(): Promise<string | null>;
}
