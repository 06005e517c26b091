import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import os from 'node:os';

export interface MachineInfo {
  date: string;
  hostname: string;
  os: string;
  cpuModel: string;
  cores: number;
  totalMemoryGiB: number;
  node: string;
  onnxruntimeNode: string;
  sharp: string;
  usearch: string;
  autocannon: string;
  /** 1-minute load average when the run started; well above 0 means something else was using the CPU. */
  loadAverageAtStart: number;
  /** Other `marquee.js serve` processes found when the run started (they would skew every figure). */
  otherServers: string[];
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

function packageVersion(name: string): string {
  try {
    return (JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

export function otherServers(): string[] {
  try {
    return execFileSync('pgrep', ['-af', 'marquee.js serve'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.trim() && !line.includes('pgrep'));
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    totalMemoryGiB: os.totalmem() / 1024 ** 3,
    node: process.version,
    onnxruntimeNode: packageVersion('onnxruntime-node'),
    sharp: packageVersion('sharp'),
    usearch: packageVersion('usearch'),
    autocannon: packageVersion('autocannon'),
    loadAverageAtStart: os.loadavg()[0] ?? 0,
    otherServers: otherServers(),
  };
}
