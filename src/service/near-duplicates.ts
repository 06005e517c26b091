import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ApiError, ImageError } from '../errors.js';
import type { Logger } from '../log.js';
import type { DecodeBudget, DecodeWait } from '../model/decode-budget.js';
import { decodeCost, readHeader } from '../model/preprocess.js';
import { NEAR_DUPLICATE, PerceptualHashIndex } from '../search/near-duplicates.js';
import { perceptualHash, type PerceptualHash } from '../search/perceptual-hash.js';
import type { Catalog, Poster } from '../state/catalog.js';
import type { PosterHashStore } from '../state/poster-hashes.js';

/** A catalog poster that is a near-duplicate of a picture, and their hashes' distance. */
export interface NearDuplicate {
  poster: Poster;
  distance: number;
}

export interface DuplicateGroup {
  posters: Poster[];
  /** The pairs that make it a group, closest first. */
  pairs: { a: Poster; b: Poster; distance: number }[];
}

export interface NearDuplicatesDeps {
  catalog: Catalog;
  hashes: PosterHashStore;
  dataDir: string;
  maxPixels: number;
  log: Logger;
  /** The server's decode budget; none in commands that do not serve. */
  budget?: DecodeBudget;
}

/**
 * The catalog's near-duplicates, by the rule bench/near-duplicates.ts chose (NEAR_DUPLICATE):
 * every poster's perceptual hash in memory, loaded from SQLite on first use and kept up to date by
 * the live catalog's writes (under the runtime's write lock); and, once a listing has asked for
 * them, the pairs of near-duplicate posters, kept up to date the same way. The rule is the hashes'
 * alone, so it does not change with the model in service.
 */
export class NearDuplicates {
  private index: PerceptualHashIndex | null = null;
  /** Each poster's partners within NEAR_DUPLICATE.maxDistance, and their distance; null until listed. */
  private partners: Map<number, Map<number, number>> | null = null;
  /** The first listing's comparison of every pair, while it runs; and the posters written meanwhile, linked again once it ends. */
  private pairing: Promise<Map<number, Map<number, number>>> | null = null;
  private readonly writtenWhilePairing = new Set<number>();
  /** While the posters without a hash are hashed (the start-up's, after ready): checks and listings answer 503 until it ends. */
  private filling: { done: number; total: number } | null = null;
  /** The hashes being read from the store (the first use), and the writes made meanwhile (null: a poster removed). */
  private loading: Promise<PerceptualHashIndex> | null = null;
  private readonly writtenWhileLoading = new Map<number, PerceptualHash | null>();
  private fill: Promise<number | null> | null = null;
  /** The server is stopping: a fill or a load ends at its next poster or page, before the stores close. */
  private stopping = false;

  constructor(private readonly deps: NearDuplicatesDeps) {}

  /**
   * A picture's hash, its decode admitted by the server's decode budget like any other (`wait`
   * as there). A file that is not an image is refused as an upload is (415, 422).
   */
  async hash(bytes: Buffer, wait: DecodeWait = 'request'): Promise<PerceptualHash> {
    const header = await readHeader(bytes, this.deps.maxPixels);
    const decode = async () => {
      try {
        return await perceptualHash(bytes, this.deps.maxPixels);
      } catch (error) {
        throw new ImageError(422, 'corrupt_image', `the image could not be decoded: ${(error as Error).message}`);
      }
    };
    return this.deps.budget ? this.deps.budget.run(decodeCost(header), wait, decode) : decode();
  }

  /**
   * Hashes the posters that have no hash of their picture (a fresh data dir, one from before hashes
   * were kept, posters imported beside a running server), while the service answers: the live
   * catalog's writes store their own hashes meanwhile, and a poster removed or re-pictured
   * meanwhile keeps what its writer stored. A picture that cannot be read is logged and left.
   * How many were hashed; null when the server stopped it (stop()).
   */
  fillMissing(onProgress?: (done: number, total: number) => void): Promise<number | null> {
    return (this.fill = this.fillAll(onProgress));
  }

  /** Ends a fill or a load in progress at its next poster or page, and waits for it: the stores are about to close. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.allSettled([this.fill, this.loading]);
  }

  private async fillAll(onProgress?: (done: number, total: number) => void): Promise<number | null> {
    // Checks answer 503 from now on, the posters to hash being listed (a page at a time) included.
    const filling = (this.filling = { done: 0, total: 0 });
    [this.index, this.partners, this.pairing] = [null, null, null];
    let hashed = 0;
    try {
      const missing = await this.deps.hashes.missing();
      filling.total = hashed = missing.length;
      let next = 0;
      const worker = async () => {
        while (next < missing.length && !this.stopping) {
          const poster = missing[next++]!;
          try {
            const hash = await this.hash(await readFile(join(this.deps.dataDir, poster.imagePath)), 'background');
            await this.deps.hashes.putIfCurrent(poster.key, poster.pixelSha256, hash);
          } catch (error) {
            if ((await this.deps.catalog.getMany([poster.key])).has(poster.key)) {
              this.deps.log.warn({ key: poster.key, image: poster.imagePath, err: error }, 'a poster could not be hashed for near-duplicate checks');
            }
          }
          onProgress?.(++filling.done, missing.length);
        }
      };
      await Promise.all([worker(), worker()]);
    } finally {
      this.filling = null;
    }
    if (this.stopping) {
      this.deps.log.info({ hashed: filling.done, missing: filling.total }, 'near-duplicate hashing stopped: the server is stopping');
      return null;
    }
    await this.loaded();
    return hashed;
  }

  private async loaded(): Promise<PerceptualHashIndex> {
    const refuse = (filling: { done: number; total: number }) =>
      new ApiError(503, 'not_ready', `the posters are being hashed for near-duplicate checks (${filling.done} of ${filling.total}); try again shortly`, { 'retry-after': '5' });
    if (this.filling) throw refuse(this.filling);
    this.loading ??= (async () => {
      const index = new PerceptualHashIndex();
      for await (const { key, hash } of this.deps.hashes.current()) {
        if (this.stopping) break;
        index.put(key, hash);
      }
      // What was written while the hashes were read, applied over what was read.
      for (const [key, hash] of this.writtenWhileLoading) {
        if (hash) index.put(key, hash);
        else index.remove(key);
      }
      this.writtenWhileLoading.clear();
      return index;
    })().finally(() => (this.loading = null));
    const index = await this.loading;
    if (this.filling) throw refuse(this.filling); // a fill began meanwhile
    this.index ??= index;
    return this.index;
  }

  /** The catalog posters that are near-duplicates of a picture with this hash, nearest first (then by key). */
  async find(hash: PerceptualHash, exclude?: number): Promise<NearDuplicate[]> {
    const matches = (await this.loaded()).within(hash, NEAR_DUPLICATE.maxDistance, exclude);
    const posters = await this.deps.catalog.getMany(matches.map((m) => m.key));
    return matches.filter((m) => posters.has(m.key)).map((m) => ({ poster: posters.get(m.key)!, distance: m.distance }));
  }

  /** The stored hash of a poster's picture, when it has one. */
  async hashOf(key: number): Promise<PerceptualHash | null> {
    return (await this.loaded()).get(key);
  }

  /** The hash of a poster's stored image, made now (a poster imported beside the server since it started). */
  async hashOfImage(poster: Poster): Promise<PerceptualHash> {
    return this.hash(await readFile(join(this.deps.dataDir, poster.imagePath)));
  }

  /** A poster's picture was stored (added or replaced) with this hash. */
  record(key: number, hash: PerceptualHash): void {
    if (this.loading) this.writtenWhileLoading.set(key, hash);
    if (!this.index) return; // loaded later, from the store, where the writer has stored it
    this.index.put(key, hash);
    this.relink(key);
  }

  /** Posters another server wrote (added, re-pictured or removed): each with its stored hash now, or gone. */
  async follow(keys: number[]): Promise<void> {
    const hashes = await this.deps.hashes.getMany(keys);
    for (const key of keys) {
      const hash = hashes.get(key);
      if (hash) this.record(key, hash);
      else this.forget(key);
    }
  }

  /** A poster was removed. */
  forget(key: number): void {
    if (this.loading) this.writtenWhileLoading.set(key, null);
    this.index?.remove(key);
    this.relink(key);
  }

  /** A poster's pairs as its hash (or its absence) now has them. */
  private relink(key: number): void {
    if (this.pairing) this.writtenWhilePairing.add(key);
    if (!this.partners) return;
    this.unlink(key);
    const hash = this.index?.get(key);
    if (hash) for (const match of this.index!.within(hash, NEAR_DUPLICATE.maxDistance, key)) this.link(key, match.key, match.distance);
  }

  /**
   * Groups of posters that are near-duplicates of each other (joined by a chain of near-duplicate
   * pairs), the group with the closest pair first. The first call compares every pair of posters
   * (seconds at ten thousand posters: bench/results/near-duplicates.md).
   */
  async groups(): Promise<DuplicateGroup[]> {
    const pairs: { a: number; b: number; distance: number }[] = [];
    for (const [a, others] of await this.pairsWithin()) for (const [b, distance] of others) if (a < b) pairs.push({ a, b, distance });
    pairs.sort((x, y) => x.distance - y.distance || x.a - y.a || x.b - y.b);
    // Union-find: a group is every poster that a chain of pairs joins.
    const parent = new Map<number, number>();
    const root = (key: number): number => {
      let at = key;
      while (parent.has(at) && parent.get(at) !== at) at = parent.get(at)!;
      parent.set(key, at);
      return at;
    };
    for (const { a, b } of pairs) {
      const [ra, rb] = [root(a), root(b)];
      if (ra !== rb) parent.set(Math.max(ra, rb), Math.min(ra, rb));
    }
    const posters = await this.deps.catalog.getMany([...parent.keys()]);
    const groups = new Map<number, DuplicateGroup>();
    for (const pair of pairs) {
      const a = posters.get(pair.a);
      const b = posters.get(pair.b);
      if (!a || !b) continue;
      const group = groups.get(root(pair.a)) ?? { posters: [], pairs: [] };
      groups.set(root(pair.a), group);
      group.pairs.push({ a, b, distance: pair.distance });
    }
    // Groups keep the order of their closest pair; the posters within a group are listed by id.
    return [...groups.values()].map((group) => {
      const members = new Map<string, Poster>();
      for (const { a, b } of group.pairs) members.set(a.id, a).set(b.id, b);
      return { posters: [...members.values()].sort((x, y) => x.id.localeCompare(y.id)), pairs: group.pairs };
    });
  }

  /** The pairs: compared once (pausing for requests), then kept up to date by record and forget. */
  private async pairsWithin(): Promise<Map<number, Map<number, number>>> {
    if (this.partners) return this.partners;
    if (this.pairing) return this.pairing;
    const index = await this.loaded(); // 503 while the catalog is hashed: refused, and nothing remembered of it
    if (this.partners) return this.partners;
    if (this.pairing) return this.pairing;
    this.pairing = (async () => {
      const partners = new Map<number, Map<number, number>>();
      try {
        for (const { a, b, distance } of await index.pairs(NEAR_DUPLICATE.maxDistance)) this.link(a, b, distance, partners);
      } catch (error) {
        this.pairing = null;
        this.writtenWhilePairing.clear();
        throw error;
      }
      this.pairing = null;
      if (this.index !== index) return this.pairsWithin(); // hashed again meanwhile (a start's fill): start over
      this.partners = partners;
      for (const key of this.writtenWhilePairing) this.relink(key);
      this.writtenWhilePairing.clear();
      return partners;
    })();
    return this.pairing;
  }

  private link(a: number, b: number, distance: number, partners = this.partners!): void {
    if (!partners.has(a)) partners.set(a, new Map());
    if (!partners.has(b)) partners.set(b, new Map());
    partners.get(a)!.set(b, distance);
    partners.get(b)!.set(a, distance);
  }

  private unlink(key: number): void {
    const partners = this.partners!;
    for (const other of partners.get(key)?.keys() ?? []) {
      partners.get(other)?.delete(key);
      if (partners.get(other)?.size === 0) partners.delete(other);
    }
    partners.delete(key);
  }
}
