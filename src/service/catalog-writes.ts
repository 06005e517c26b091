import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { imageName, type PosterFields } from '../catalog/importer.js';
import { ApiError, notFound } from '../errors.js';
import type { Picture } from '../model/preprocess.js';
import type { PerceptualHash } from '../search/perceptual-hash.js';
import type { Poster, Split } from '../state/catalog.js';
import { writeAtomically } from '../state/files.js';
import type { Engine } from './engine.js';
import type { NearDuplicate } from './near-duplicates.js';
import type { Runtime } from './runtime.js';
import type { Services } from './startup.js';

/**
 * Where an add's time went: decoding and the forward pass, waiting for the write lock, the
 * near-duplicate check (the hash's wait beyond the forward pass, which it runs beside, and the
 * scan), storing.
 */
export interface AddTiming {
  embedMs: number;
  waitMs: number;
  duplicatesMs: number;
  storeMs: number;
}

/** What an add does when the picture is a near-duplicate of a catalog poster: add it anyway without looking, add it and say so, or refuse it. */
export type OnDuplicate = 'allow' | 'flag' | 'reject';

/** 409 near_duplicate: the catalog poster an add found the same picture as. */
export function nearDuplicateError(match: NearDuplicate): ApiError {
  const { poster, distance } = match;
  return new ApiError(
    409,
    'near_duplicate',
    `the picture is a near-duplicate of poster ${poster.id}${poster.title ? ` (${poster.title})` : ''} (hash distance ${distance}); add it with on_duplicate=allow or flag to keep both`,
    { 'x-near-duplicate-of': poster.id },
  );
}


export interface PosterChanges {
  title?: string | null;
  year?: number | null;
  releaseDate?: string | null;
  genres?: string[];
  singleGenre?: string;
  split?: Split | null;
}

/**
 * The live catalog: posters added, changed and removed while the service answers. SQLite is the
 * source of truth: each write commits there first (poster row, genres, and the embedding of the
 * model in service, in one transaction), then lands on the engine in service, under the runtime's
 * write lock, so that a swap (which loads the next engine from SQLite under the same lock) never
 * misses one. Other model versions embed new posters when they are next put in service.
 */
export class CatalogWriter {
  constructor(
    private readonly services: Services,
    private readonly runtime: Runtime,
  ) {}

  /**
   * Adds a poster (or, with `upsert`, replaces the one with its id): 409 poster_exists otherwise.
   * `waitForDecode`: its decode waits for the decode budget as long as it takes (a batch's items).
   * `onDuplicate` (default allow): with flag or reject, the catalog's near-duplicates of the picture
   * are looked for under the write lock (so two adds of one picture cannot both miss each other);
   * reject refuses with 409 near_duplicate, flag adds and returns them (nearest first).
   */
  async add(
    fields: PosterFields,
    bytes: Buffer,
    options: { upsert?: boolean; waitForDecode?: boolean; onDuplicate?: OnDuplicate } = {},
  ): Promise<{ poster: Poster; created: boolean; timing: AddTiming; nearDuplicates: NearDuplicate[] | null }> {
    const { catalog, duplicates } = this.services;
    const conflict = () => new ApiError(409, 'poster_exists', `poster ${fields.id} exists: PATCH /admin/posters/${fields.id} changes it, or add with upsert`);
    if (!options.upsert && (await catalog.get(fields.id))) throw conflict();
    const started = performance.now();
    const hashing = this.hash(bytes, options.waitForDecode);
    const first = await this.embed(bytes, options.waitForDecode);
    const embedded = performance.now();
    const hash = await hashing;
    const hashed = performance.now();
    return this.runtime.exclusive(async () => {
      const locked = performance.now();
      const existing = await catalog.get(fields.id);
      if (existing && !options.upsert) throw conflict();
      const { engine, vector, image } = await this.embedOn(first, bytes, options.waitForDecode);
      const checking = performance.now();
      let nearDuplicates: NearDuplicate[] | null = null;
      if ((options.onDuplicate ?? 'allow') !== 'allow') {
        nearDuplicates = await duplicates.find(hash, existing?.key);
        if (options.onDuplicate === 'reject' && nearDuplicates.length > 0) throw nearDuplicateError(nearDuplicates[0]!);
      }
      const checked = performance.now();
      const poster = await this.store(fields, bytes, image, engine, vector, hash);
      this.removeReplacedImage(existing, poster);
      const timing = {
        embedMs: embedded - started,
        waitMs: locked - hashed,
        duplicatesMs: hashed - embedded + (checked - checking),
        storeMs: checking - locked + (performance.now() - checked),
      };
      return { poster, created: existing === null, timing, nearDuplicates: options.onDuplicate === 'flag' ? nearDuplicates : null };
    });
  }

  /** A new picture for a poster: stored and embedded again (its embeddings of other versions dropped). */
  async replaceImage(id: string, bytes: Buffer): Promise<Poster> {
    if (!(await this.services.catalog.get(id))) throw notFound(`poster ${id}`);
    const hashing = this.hash(bytes);
    const first = await this.embed(bytes);
    const hash = await hashing;
    return this.runtime.exclusive(async () => {
      const existing = await this.services.catalog.get(id);
      if (!existing) throw notFound(`poster ${id}`);
      const { engine, vector, image } = await this.embedOn(first, bytes);
      const poster = await this.store(existing, bytes, image, engine, vector, hash);
      this.removeReplacedImage(existing, poster);
      return poster;
    });
  }

  /** New metadata; the genre vote and filters use it from the next request on. */
  async update(id: string, changes: PosterChanges): Promise<Poster> {
    const { catalog } = this.services;
    return this.runtime.exclusive(async () => {
      const existing = await catalog.get(id);
      if (!existing) throw notFound(`poster ${id}`);
      const genres = changes.genres ?? existing.genres;
      const singleGenre = changes.singleGenre ?? (changes.genres ? genres[0]! : existing.singleGenre);
      if (!genres.includes(singleGenre)) throw new ApiError(400, 'invalid_request', `single_genre "${singleGenre}" is not one of the genres`);
      await catalog.upsert({ ...existing, ...changes, genres, singleGenre }, new Date().toISOString());
      const poster = (await catalog.get(id))!;
      this.runtime.peek()?.updatePoster(poster);
      return poster;
    });
  }

  /** Gone from search, browse, votes and catalog_match at once; its image and embeddings removed. */
  async remove(id: string): Promise<Poster> {
    const { catalog, config } = this.services;
    return this.runtime.exclusive(async () => {
      const poster = await catalog.delete(id, new Date().toISOString());
      if (!poster) throw notFound(`poster ${id}`);
      this.runtime.peek()?.removePoster(poster.key);
      this.services.duplicates.forget(poster.key);
      // After the commit: a crash in between leaves an unused file, never a poster without its image.
      rmSync(join(config.dataDir, poster.imagePath), { force: true });
      return poster;
    });
  }

  /** The picture's perceptual hash, made beside its forward pass; a picture the embedding refuses is reported by the embedding. */
  private hash(bytes: Buffer, waitForDecode = false): Promise<PerceptualHash> {
    const hashing = this.services.duplicates.hash(bytes, waitForDecode ? 'background' : 'request');
    hashing.catch(() => {});
    return hashing;
  }

  private embed(bytes: Buffer, waitForDecode = false): Promise<{ engine: Engine; vector: Float32Array; image: Picture }> {
    return this.runtime.use(async (engine) => ({ engine, ...(await engine.embedUpload(bytes, { waitForDecode })) }));
  }

  /** The embedding made outside the lock, or (a swap came in between) one by the engine now in service. */
  private async embedOn(first: { engine: Engine; vector: Float32Array; image: Picture }, bytes: Buffer, waitForDecode = false) {
    return this.runtime.peek() === first.engine ? first : this.embed(bytes, waitForDecode);
  }

  private async store(fields: PosterFields, bytes: Buffer, image: Picture, engine: Engine, vector: Float32Array, hash: PerceptualHash): Promise<Poster> {
    const { state, config, duplicates } = this.services;
    // A name of its own per picture: the poster's current file stays whole until the commit names the new one.
    const digest = sha256(bytes);
    const name = imageName(`${fields.id}.${digest.slice(0, 12)}`, image.format);
    const file = join(config.dataDir, 'images', name);
    const existed = existsSync(file);
    writeAtomically(file, bytes);
    const { id, title, year, releaseDate, genres, singleGenre, split } = fields;
    const stored = {
      id, title, year, releaseDate, genres, singleGenre, split,
      imagePath: `images/${name}`,
      imageSha256: digest,
      pixelSha256: image.pixelSha256,
      width: image.width,
      height: image.height,
      source: 'source' in fields ? (fields as Poster).source : null,
    }; // prettier-ignore
    let poster: Poster;
    try {
      poster = await state.savePoster(stored, new Date().toISOString(), { space: engine.model, vector }, hash);
    } catch (error) {
      // Not committed (e.g. a full disk): the picture written for it goes too.
      if (!existed) rmSync(file, { force: true });
      throw error;
    }
    engine.putPoster(poster, vector);
    duplicates.record(poster.key, hash);
    return poster;
  }

  private removeReplacedImage(before: Poster | null, after: Poster): void {
    if (before && before.imagePath !== after.imagePath) rmSync(join(this.services.config.dataDir, before.imagePath), { force: true });
  }
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}
