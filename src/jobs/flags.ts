import { Value } from '@sinclair/typebox/value';
import { ConfigError } from '../config.js';
import { RetrainBody } from '../http/admin-schemas.js';
import type { RetrainParams } from './retrain.js';

/** `--batch-size 32 --force` → { batch_size: 32, force: true }, checked against the API's schema. */
export function parseRetrainFlags(args: string[]): RetrainParams {
  const raw: Record<string, unknown> = {};
  for (let i = 0; i < args.length; i++) {
    const flag = args[i]!;
    if (!flag.startsWith('--')) throw new ConfigError(`unexpected argument "${flag}"`);
    const key = flag.slice(2).replaceAll('-', '_');
    const next = args[i + 1];
    if (next === undefined || next.startsWith('--')) raw[key] = true;
    else {
      raw[key] = next;
      i++;
    }
  }
  const params = Value.Convert(RetrainBody, raw);
  const problem = [...Value.Errors(RetrainBody, params)][0];
  if (problem) throw new ConfigError(`--${problem.path.slice(1).replaceAll('_', '-') || 'flags'}: ${problem.message}`);
  return params as RetrainParams;
}
