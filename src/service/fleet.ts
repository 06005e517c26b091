import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { EmbeddingSpace } from '../state/embeddings.js';
import type { FleetStore } from '../state/fleet.js';
import type { ModelVersion } from '../state/models.js';
import { embedCatalog } from './catalog-embedding.js';
import { Engine } from './engine.js';
import type { Runtime } from './runtime.js';
import type { Services } from './startup.js';

/** How often a server says it is alive and looks for candidates and for a new active model. */
const LOOK_MS = 500;
/** A server unheard of for this long is not waited for. */
const LIVE_MS = 5_000;
/** A candidate proposed longer ago than this is not loaded any more (its swap gave up). */
const CANDIDATE_MS = 15 * 60_000;
/** How long the server that swaps waits for every live server to load the candidate. */
const GATHER_MS = 10 * 60_000;

const keyOf = (space: EmbeddingSpace) => `${space.version}/${space.precision}`;

/**
 * One server among several on one PostgreSQL (issue 17, step 6). It says it is alive every
 * half-second, and looks: a proposed candidate model is loaded (engine and index, kept current by
 * the change log) and reported ready; a new active model is switched to, from the candidate loaded
 * for it, at once. The server that swaps (a retrain, or an activation by hand) proposes the
 * candidate, waits until every live server has reported ready, then activates it in one
 * transaction; each server switches on its next look, so none answers with the old model for more
 * than a look past the flip (plus the posters added meanwhile, embedded at the switch). A server
 * that must load a model it was not ready for says it is not ready while it loads, so a load
 * balancer takes it out.
 */
export class Fleet {
  readonly id = `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
  private readonly prepared = new Map<string, Engine>();
  /** Candidates this server proposed: it loads their engines itself, in bringIntoService. */
  private readonly proposing = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private looking: Promise<void> | null = null;

  constructor(
    private readonly store: FleetStore,
    private readonly services: Services,
    private readonly runtime: Runtime,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.look(), LOOK_MS);
    this.timer.unref();
    this.look();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.looking;
    await this.store.leave(this.id).catch(() => {});
    await Promise.all([...this.prepared.values()].map((engine) => engine.dispose()));
    this.prepared.clear();
  }

  /**
   * Proposes a candidate and waits until every live server has loaded it (this one counts as
   * ready: it loads its own engine next); throws past GATHER_MS or when `signal` aborts. Then
   * `withdraw` it, once swapped in or given up.
   */
  async gather(model: ModelVersion, signal?: AbortSignal): Promise<void> {
    this.proposing.add(keyOf(model));
    await this.store.propose(model);
    await this.store.heartbeat(this.id);
    await this.store.markReady(model, this.id);
    const started = Date.now();
    for (;;) {
      const ready = new Set(await this.store.ready(model));
      const waiting = (await this.store.live(LIVE_MS)).filter((server) => !ready.has(server));
      if (waiting.length === 0) return;
      if (Date.now() - started > GATHER_MS) throw new Error(`servers ${waiting.join(', ')} did not load ${model.version} within ${GATHER_MS / 1000} s`);
      signal?.throwIfAborted();
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  async withdraw(model: ModelVersion): Promise<void> {
    await this.store.withdraw(model);
    this.proposing.delete(keyOf(model));
  }

  private look(): void {
    if (this.looking || !this.timer) return;
    this.looking = this.lookOnce()
      .catch((error: unknown) => this.services.log.warn({ err: error }, 'could not look at the other servers'))
      .finally(() => {
        this.looking = null;
      });
  }

  private async lookOnce(): Promise<void> {
    await this.store.heartbeat(this.id);
    const candidates = await this.store.candidates(CANDIDATE_MS);
    for (const space of candidates) {
      const key = keyOf(space);
      const serving = this.runtime.peek()?.model;
      if (this.prepared.has(key) || this.proposing.has(key) || (serving && keyOf(serving) === key)) continue;
      const model = await this.services.models.get(space.version, space.precision);
      if (!model) continue;
      this.prepared.set(key, await Engine.load(model, this.services));
      await this.store.markReady(space, this.id);
      this.services.log.info({ version: model.version, precision: model.precision }, 'candidate model loaded: ready to switch to it');
    }
    const active = await this.follow();
    // A candidate given up (withdrawn, never made active) is not kept loaded.
    const listed = new Set(candidates.map(keyOf));
    for (const [key, engine] of this.prepared) {
      if (listed.has(key) || engine.model.version === active) continue;
      this.prepared.delete(key);
      await engine.dispose();
    }
  }

  /** Switches to the active model when another server has made a new one active; its version. */
  private async follow(): Promise<string | null> {
    const version = await this.store.activeVersion();
    if (!version || this.runtime.peek()?.model.version === version) return version;
    const model = await this.services.models.active();
    if (!model) return version;
    await this.runtime.exclusive(async () => {
      if (this.runtime.peek()?.model.version === model.version) return; // swapped here meanwhile
      let engine = this.prepared.get(keyOf(model));
      this.prepared.delete(keyOf(model));
      if (!engine) {
        this.runtime.hold(`switching to model ${model.version}, made active by another server`);
        engine = await Engine.load(model, this.services);
      }
      const { config, embeddings, log, decodes } = this.services;
      // Posters added under the old model since the candidate's catalog was embedded.
      await embedCatalog(model, engine.embedder, embeddings, config.dataDir, config.maxPixels, log, undefined, undefined, decodes);
      this.runtime.swap(engine);
      this.services.metrics.setActiveModel(model.version);
      log.info({ version: model.version }, 'switched to the model another server made active');
    });
    return version;
  }
}
