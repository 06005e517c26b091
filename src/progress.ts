import cliProgress from 'cli-progress';
import type { Logger } from './log.js';

export interface Progress {
  tick(done: number): void;
  finish(): void;
}

/**
 * A bar on an interactive terminal; otherwise a log line every `everyMs` (and at the end), so
 * long first starts are visible in `docker logs` and CI output alike.
 */
export function startProgress(log: Logger, task: string, total: number, everyMs = 5000): Progress {
  const started = Date.now();
  if (process.stderr.isTTY && total > 0) {
    const bar = new cliProgress.SingleBar(
      { format: `${task} [{bar}] {value}/{total} {percentage}% | {rate}/s | ETA {eta_formatted}`, stream: process.stderr, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: '0.0' });
    return {
      tick: (done) => bar.update(done, { rate: (done / Math.max((Date.now() - started) / 1000, 1e-3)).toFixed(1) }),
      finish: () => bar.stop(),
    };
  }
  let last = started;
  let latest = 0;
  const report = (done: number) => {
    const seconds = (Date.now() - started) / 1000;
    const rate = done / Math.max(seconds, 1e-3);
    const eta = rate > 0 ? Math.round((total - done) / rate) : null;
    log.info({ task, done, total, rate: Number(rate.toFixed(1)), etaSeconds: eta }, `${task}: ${done}/${total}`);
  };
  return {
    tick(done) {
      latest = done;
      if (Date.now() - last >= everyMs) {
        last = Date.now();
        report(done);
      }
    },
    finish: () => report(latest),
  };
}
