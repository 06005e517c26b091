import { parseArgs, type ParseArgsConfig } from 'node:util';
import { ConfigError } from './config.js';

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<T extends Options> = ReturnType<typeof parseArgs<{ args: string[]; strict: true; allowPositionals: false; options: T }>>['values'];

/**
 * Parses a subcommand's --options strictly. A mistake is a ConfigError that ends with the usage
 * line; --help (or -h) prints the help and returns null.
 */
export function parseCommandOptions<T extends Options>(args: string[], options: T, usage: string, help: string): Parsed<T> | null {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${help}\n`);
    return null;
  }
  try {
    return parseArgs({ args, strict: true, allowPositionals: false, options }).values as Parsed<T>;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}\n${usage}`);
  }
}
