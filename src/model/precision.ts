import { readFileSync } from 'node:fs';
import type { Device } from '../config.js';
import type { Precision, VariantPolicy } from '../state/models.js';

export type PrecisionSetting = 'auto' | Precision;

/**
 * Whether this CPU has int8 dot-product instructions (x86 VNNI or AMX, Arm's dot product), where
 * onnxruntime's int8 kernels beat float32. Read from /proc/cpuinfo; false where it cannot be read.
 */
export function cpuHasInt8Dot(cpuinfo?: string): boolean {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return false;
    }
  }
  return /^(flags|Features)\s*:.*\b(avx512_vnni|avx_vnni|amx_int8|asimddp)\b/m.test(text);
}

/** The variant to serve: as set, or for `auto` int8 on a CPU with int8 dot products and float32 on CUDA. */
export function servingPrecision(setting: PrecisionSetting, device: Device, cpuinfo?: string): Precision {
  if (setting !== 'auto') return setting;
  if (device === 'cuda') return 'fp32';
  return cpuHasInt8Dot(cpuinfo) ? 'int8' : 'fp32';
}

/** The registry's policy: the precision to serve, and for `auto` only int8 variants that passed their parity check. */
export function variantPolicy(setting: PrecisionSetting, device: Device): VariantPolicy {
  return { preferred: servingPrecision(setting, device), faithfulOnly: setting === 'auto' };
}
