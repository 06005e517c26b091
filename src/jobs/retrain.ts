import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { renderInputs, writeManifest } from '../catalog/manifest.js';
import { ApiError, insufficientStorage, isStorageFull } from '../errors.js';
import { defaultSpec, type PreprocessingSpec } from '../model/preprocess.js';
import { ensurePython, runTraining, type TrainingEvent } from '../model/python.js';
import { servedVariant } from '../model/quantization.js';
import { registerModelDir } from '../model/registration.js';
import type { Embedder } from '../model/embedder.js';
import { bringIntoService } from '../service/activation.js';
import { embedCatalog } from '../service/catalog-embedding.js';
import { loadEmbedder } from '../service/engine.js';
import type { Runtime } from '../service/runtime.js';
import type { Services } from '../service/startup.js';
import { isFinal, JobConflictError, type Job, type JobChanges, type JobState, type JobStore } from '../state/jobs.js';
import type { ModelVersion } from '../state/models.js';
import { compareOnValidation } from './gate.js';
import { RetrainBody } from '../http/admin-schemas.js';

/** What a retrain may override (the API's JSON body); everything else is the training package's recipe. */
export type RetrainParams = RetrainBody;

/** Fields passed to `python -m training train` as flags; `init` and `force` are the server's own. */
const TRAINING_FLAGS = Object.keys(RetrainBody.properties).filter((key) => key !== 'init' && key !== 'force') as (keyof RetrainParams)[];

class JobCancelled extends Error {}

const SHUTDOWN = new JobCancelled('server shutting down');

/**
 * Runs retraining jobs, one at a time: render the catalog's inputs and write the manifest, train
 * in a child process, embed the catalog with the candidate and compare it with the active model on
 * `val`, build its index, and swap it in. Cancelling stops the child and removes what the job wrote.
 */
export class RetrainRunner {
  private running: { id: string; controller: AbortController; done: Promise<void> } | null = null;
  /** The end of a job that could not be written (a full disk): written before the next job starts. */
  private unrecorded: { id: string; state: JobState; changes: JobChanges } | null = null;
  private logTail = '';
  private progressWrites: Promise<unknown> = Promise.resolve();
  /** The epochs the job in progress trains for, once training has said. */
  private epochs = 0;

  constructor(
    private readonly services: Services,
    private readonly jobs: JobStore,
    /** The serving runtime to swap into; null when training from the CLI (activation is recorded only). */
    private readonly runtime: Runtime | null,
  ) {}

  async start(params: RetrainParams): Promise<Job> {
    if (params.arch && params.init !== 'random') {
      throw new ApiError(400, 'invalid_request', 'arch chooses the network of a random start: give it with init "random"');
    }
    if (this.unrecorded) {
      // Throws (a full disk: 507) while it still cannot be written.
      const { id, state, changes } = this.unrecorded;
      await this.set(id, state, changes);
      this.unrecorded = null;
    }
    let job: Job;
    try {
      job = await this.jobs.create('retrain', { ...params });
    } catch (error) {
      if (error instanceof JobConflictError) {
        const other = await this.jobs.unfinished();
        throw new ApiError(409, 'job_running', `job ${other?.id ?? ''} is still running; cancel it or wait`.replace('  ', ' '));
      }
      throw error;
    }
    const controller = new AbortController();
    this.logTail = '';
    this.epochs = 0;
    // The job's lease, renewed while it runs: on a shared database another server fails the job once it lapses.
    const { jobLeaseMs } = this.services.config;
    const renew = () => this.jobs.renewLease(job.id, jobLeaseMs).catch((error: unknown) => this.services.log.warn({ job: job.id, err: error }, "could not renew the job's lease"));
    await renew();
    const heartbeat = setInterval(() => void renew(), jobLeaseMs / 6);
    heartbeat.unref();
    const done = this.run(job.id, params, controller.signal).finally(() => {
      clearInterval(heartbeat);
      if (this.running?.id === job.id) this.running = null;
    });
    this.running = { id: job.id, controller, done };
    return job;
  }

  /** Resolves when the job in progress (if any) has ended. */
  async settled(): Promise<void> {
    await this.running?.done;
  }

  /** On shutdown: stop the job in progress, if any. */
  cancelRunning(): void {
    this.running?.controller.abort(SHUTDOWN);
  }

  async cancel(id: string): Promise<Job> {
    const job = await this.jobs.get(id);
    if (!job) throw new ApiError(404, 'not_found', `job ${id} not found`);
    // A job recorded as ended is ended, though its runner may still be writing its log tail.
    if (this.running?.id !== id || isFinal(job.state)) throw new ApiError(409, 'job_finished', `job ${id} already ended: ${job.state}`);
    this.running.controller.abort(new JobCancelled('cancelled'));
    return job;
  }

  private workDir(id: string): string {
    return join(this.services.config.dataDir, 'jobs', id);
  }

  private async set(id: string, state: JobState, changes: JobChanges = {}): Promise<void> {
    await this.progressWrites;
    await this.jobs.update(id, { ...changes, state });
    this.services.log.info({ job: id, state }, 'retrain job');
  }

  private async run(id: string, params: RetrainParams, signal: AbortSignal): Promise<void> {
    const { config, models, catalog, embeddings, log } = this.services;
    const work = this.workDir(id);
    let candidate: ModelVersion | null = null;
    let embedder: Embedder | null = null;
    try {
      const active = await models.active();
      if (!active) throw new Error('no active model to compare with');
      await this.set(id, 'preparing');
      mkdirSync(work, { recursive: true });
      const spec =
        params.width || params.height
          ? defaultSpec(params.width ?? active.inputWidth, params.height ?? active.inputHeight)
          : active.preprocessing;
      const posters = await catalog.all();
      const paths = await renderInputs(
        posters,
        spec,
        config.dataDir,
        config.maxPixels,
        (done, total) => this.progress(id, { stage: 'rendering inputs', done, total, fraction: done / total }),
        this.services.decodes,
      );
      signal.throwIfAborted();
      const manifest = join(work, 'manifest.jsonl');
      writeManifest(manifest, posters, config.dataDir, { spec, paths });

      // The first retrain creates the Python environment (minutes): a step of its own, with its progress.
      const python = await ensurePython(config.python, log, {
        signal,
        onProgress: ({ step, done, total }) =>
          this.progress(id, { stage: 'python environment', step, done, total, ...(total ? { fraction: Math.min(done ?? 0, total) / total } : {}) }),
      });
      signal.throwIfAborted();

      await this.set(id, 'training');
      const out = join(work, 'model');
      await runTraining(python, this.trainingArgs(params, manifest, out, active, spec), (event) => this.onEvent(id, event), signal, (text) => {
        this.logTail = (this.logTail + text).slice(-4000);
      });
      signal.throwIfAborted();

      await this.set(id, 'evaluating');
      // The gate judges the variant that will serve: int8, quantised now, where it is preferred.
      candidate = await registerModelDir(out, 'ft', config.dataDir, models);
      candidate = await servedVariant(candidate, this.services, (stage) => this.progress(id, { stage }), signal);
      embedder = await loadEmbedder(candidate, this.services);
      await embedCatalog(
        candidate,
        embedder,
        embeddings,
        config.dataDir,
        config.maxPixels,
        log,
        (done, total) => this.progress(id, { stage: 'embedding the catalog', done, total, fraction: done / total }),
        signal,
        this.services.decodes,
      );
      await this.embedMissing(active, signal);
      const verdict = await compareOnValidation(this.services, candidate, active);
      await models.setMetrics(candidate.version, { validation: verdict.candidate });
      if (!(await models.get(active.version))?.metrics) await models.setMetrics(active.version, { validation: verdict.active });
      const metrics = { ...verdict, forced: Boolean(params.force) };
      if (!verdict.better && !params.force) {
        await this.set(id, 'rejected', {
          metrics,
          modelVersion: candidate.version,
          error: `not activated: ${verdict.metric} on val ${verdict.candidateScore.toFixed(4)} does not beat the active model's ${verdict.activeScore.toFixed(4)}`,
        });
        return;
      }
      signal.throwIfAborted();
      await this.set(id, 'indexing', { metrics, modelVersion: candidate.version });
      const owned = embedder;
      embedder = null; // the engine (or, failing, bringIntoService) releases it
      await bringIntoService(candidate, this.services, this.runtime, { embedder: owned, signal, beforeSwap: () => this.set(id, 'swapping') });
      await this.set(id, 'succeeded');
    } catch (error) {
      // The job's files go first: on a full disk they are the space the failure record needs.
      rmSync(work, { recursive: true, force: true });
      const modelVersion = candidate?.version ?? null;
      if (signal.aborted && signal.reason === SHUTDOWN) {
        await this.finish(id, 'failed', { error: 'interrupted: the server shut down during the job', modelVersion });
      } else if (signal.aborted) {
        await this.finish(id, 'cancelled', { error: 'cancelled by request', modelVersion });
      } else {
        log.error({ job: id, err: error }, 'retrain job failed');
        const message = isStorageFull(error) ? insufficientStorage(error).message : (error as Error).message;
        await this.finish(id, 'failed', { error: message, modelVersion });
      }
    } finally {
      await embedder?.release();
      await this.finish(id, null, { logTail: this.logTail || null });
      rmSync(work, { recursive: true, force: true });
    }
  }

  /**
   * Records how the job ended. It never throws: a job that cannot record its end (a full disk) is
   * logged, and the next start marks it interrupted; an exception here would take the server down.
   */
  private async finish(id: string, state: JobState | null, changes: JobChanges): Promise<void> {
    try {
      if (state) await this.set(id, state, changes);
      else {
        await this.progressWrites;
        await this.jobs.update(id, changes);
      }
    } catch (error) {
      this.services.log.error({ job: id, state, err: error }, 'could not record the end of the retrain job');
      if (state) this.unrecorded = { id, state, changes };
    }
  }

  /**
   * Posters imported beside the server (`marquee import`) since the active model embedded the
   * catalog have no embedding of it yet; the gate compares both models on the same posters.
   */
  private async embedMissing(model: ModelVersion, signal: AbortSignal): Promise<void> {
    const { config, embeddings, log } = this.services;
    if ((await embeddings.missing(model)).length === 0) return;
    const embedder = await loadEmbedder(model, this.services);
    try {
      await embedCatalog(model, embedder, embeddings, config.dataDir, config.maxPixels, log, undefined, signal, this.services.decodes);
    } finally {
      await embedder.release();
    }
  }

  private trainingArgs(params: RetrainParams, manifest: string, out: string, active: ModelVersion, spec: PreprocessingSpec): string[] {
    // The model's input size is always the rendered inputs' (so training reads exactly what serving sees),
    // also when a model without a checkpoint (e.g. the shipped default) makes this a random start.
    const args = ['train', '--manifest', manifest, '--out', out, '--width', String(spec.width), '--height', String(spec.height)];
    for (const key of TRAINING_FLAGS) {
      if (key === 'width' || key === 'height') continue;
      const value = params[key];
      if (value !== undefined) args.push(`--${key.replaceAll('_', '-')}`, String(value));
    }
    if ((params.init ?? 'active') === 'active' && active.checkpointPath) {
      args.push('--init-from', join(this.services.config.dataDir, active.checkpointPath));
    }
    return args;
  }

  private onEvent(id: string, event: TrainingEvent): void {
    if (['progress', 'epoch_start', 'features', 'calibrate', 'decode'].includes(event.event)) {
      const { event: stage, ...rest } = event;
      if (rest.epochs !== undefined) this.epochs = Number(rest.epochs);
      const epochs = this.epochs;
      const fraction =
        stage === 'progress' && epochs > 0
          ? (Number(rest.epoch) - 1 + Number(rest.step) / Math.max(Number(rest.steps), 1)) / epochs
          : undefined;
      this.progress(id, { stage, ...rest, ...(fraction !== undefined ? { fraction } : {}) });
    } else if (event.event === 'validation') {
      this.progress(id, { last_validation: { epoch: event.epoch, metrics: event.metrics } });
    }
  }

  /**
   * Progress is informative: a write that fails (a full disk) is logged, and the job goes on. The
   * writes are not awaited (progress comes from callbacks) but made one after another, in order.
   */
  private progress(id: string, changes: Record<string, unknown>): void {
    const logTail = this.logTail || null;
    this.progressWrites = this.progressWrites
      .then(() => this.jobs.mergeProgress(id, changes, logTail))
      .catch((error: unknown) => this.services.log.warn({ job: id, err: error }, 'could not record the job\'s progress'));
  }
}
