import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** CPU used by processes outside the benchmark's own process tree while one section ran. */
export interface Interference {
  section: string;
  wallSeconds: number;
  /** CPU-seconds of other processes (summed over all cores). */
  otherCpuSeconds: number;
  /** otherCpuSeconds as a share of the machine's capacity over the section (cores × wall time). */
  shareOfMachine: number;
  top: { pid: number; command: string; cpuSeconds: number }[];
}

interface ProcSample {
  comm: string;
  ppid: number;
  /** utime + stime in clock ticks at the last sample. */
  ticks: number;
  ours: boolean;
}

/** An open measurement window: the time and every known process's CPU ticks when it began. */
export interface Window {
  startedMs: number;
  ticks: Map<number, number>;
}

export interface CleanOptions {
  /** Retry when other processes used more than this share of the machine (default 0.05). */
  maxShare: number;
  /** Retries after the first attempt (default 2); the least disturbed attempt is kept. */
  retries: number;
}

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
}

/**
 * Watches /proc (sampling every 500 ms, and at the edges of every window) so that the report can
 * say how much CPU processes outside the benchmark's own tree used while a figure was measured:
 * on a small machine any other process skews every figure. Linux only; elsewhere it reports nothing.
 */
export class CpuMonitor {
  private readonly procs = new Map<number, ProcSample>();
  private readonly hz = clockTicks();
  private timer: NodeJS.Timeout | null = null;
  private available = false;
  /** After this (epoch ms) nothing is retried or waited for, to bound the run's length. */
  deadlineMs = Number.POSITIVE_INFINITY;

  constructor(private readonly cores: number) {}

  start(): void {
    this.available = this.sample();
    if (this.available) {
      this.timer = setInterval(() => this.sample(), 500);
      this.timer.unref();
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private sample(): boolean {
    let entries: string[];
    try {
      entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
    } catch {
      return false;
    }
    for (const name of entries) {
      const pid = Number(name);
      let text: string;
      try {
        text = readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue; // exited meanwhile
      }
      const close = text.lastIndexOf(')');
      const comm = text.slice(text.indexOf('(') + 1, close);
      const fields = text.slice(close + 2).split(' ');
      const ppid = Number(fields[1]);
      const ticks = Number(fields[11]) + Number(fields[12]);
      const known = this.procs.get(pid);
      if (known && known.comm === comm) {
        known.ticks = ticks;
        known.ppid = ppid;
      } else {
        this.procs.set(pid, { comm, ppid, ticks, ours: false });
      }
    }
    // Ours: this process and its descendants (servers, Python), sticky once seen.
    for (const [pid, proc] of this.procs) {
      if (proc.ours) continue;
      let cursor = pid;
      for (let hops = 0; hops < 64 && cursor > 1; hops++) {
        if (cursor === process.pid) {
          proc.ours = true;
          break;
        }
        cursor = this.procs.get(cursor)?.ppid ?? 0;
      }
    }
    return true;
  }

  begin(): Window {
    if (this.available) this.sample();
    return { startedMs: Date.now(), ticks: new Map([...this.procs].map(([pid, p]) => [pid, p.ticks])) };
  }

  /** What other processes used since the window began (processes born meanwhile count in full). */
  end(window: Window, section: string): Interference {
    if (this.available) this.sample();
    const wallSeconds = (Date.now() - window.startedMs) / 1000;
    const others: Interference['top'] = [];
    for (const [pid, proc] of this.procs) {
      if (proc.ours) continue;
      const delta = (proc.ticks - (window.ticks.get(pid) ?? 0)) / this.hz;
      if (delta > 0) others.push({ pid, command: proc.comm, cpuSeconds: delta });
    }
    others.sort((a, b) => b.cpuSeconds - a.cpuSeconds);
    const otherCpuSeconds = others.reduce((sum, o) => sum + o.cpuSeconds, 0);
    return {
      section,
      wallSeconds,
      otherCpuSeconds,
      shareOfMachine: wallSeconds > 0 ? otherCpuSeconds / (wallSeconds * this.cores) : 0,
      top: others.slice(0, 5),
    };
  }

  /** Waits (up to maxSeconds) for a 3 s window in which other processes used under maxShare of the machine. Returns seconds waited. */
  async waitQuiet(maxSeconds: number, maxShare = 0.05): Promise<number> {
    if (!this.available || maxSeconds <= 0) return 0;
    const started = Date.now();
    for (;;) {
      const window = this.begin();
      await new Promise((resolve) => setTimeout(resolve, 3000));
      if (this.end(window, 'wait').shareOfMachine <= maxShare) break;
      if (Date.now() - started > maxSeconds * 1000 || Date.now() > this.deadlineMs) break;
    }
    return (Date.now() - started) / 1000;
  }

  /**
   * Runs a measurement, and again (up to `retries` times) while other processes disturbed it by more
   * than `maxShare` of the machine; returns the least disturbed attempt.
   */
  async clean<T>(label: string, fn: () => Promise<T>, options: Partial<CleanOptions> = {}, onRetry?: (i: Interference) => void): Promise<{ value: T; interference: Interference; attempts: number }> {
    const { maxShare = 0.05, retries = 2 } = options;
    let best: { value: T; interference: Interference; attempts: number } | null = null;
    for (let attempt = 1; attempt <= retries + 1; attempt++) {
      const window = this.begin();
      const value = await fn();
      const interference = this.end(window, label);
      if (!best || interference.shareOfMachine < best.interference.shareOfMachine) best = { value, interference, attempts: attempt };
      best.attempts = attempt;
      if (!this.available || interference.shareOfMachine <= maxShare || Date.now() > this.deadlineMs) break;
      if (attempt <= retries) onRetry?.(interference);
    }
    return best!;
  }
}
