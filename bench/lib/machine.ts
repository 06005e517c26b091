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
  /** The vector instructions the CPU has that matter here ("AVX2 only", "AVX-512, VNNI, bf16"): the same model runs ~8x apart. */
  vectorUnits: string;
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

function vectorUnits(): string {
  let flags: Set<string>;
  try {
    flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
  } catch {
    return 'unknown';
  }
  if (!flags.has('avx512f')) return flags.has('avx2') ? 'AVX2 only' : 'no AVX2';
  return ['AVX-512', flags.has('avx512_vnni') && 'VNNI', flags.has('avx512_bf16') && 'bf16'].filter(Boolean).join(', ');
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    vectorUnits: vectorUnits(),
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
