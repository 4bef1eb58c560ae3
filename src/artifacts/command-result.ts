/** Shared by the operator commands of the puller (`pull`, `inspect`, `cache`). */
import { DriverError } from '../errors/driver-error.js';
import { scrubSecrets } from '../errors/scrub.js';
import { parseGlobList } from './selection.js';

/**
 * Operator commands end with one line on stderr naming the error code and what failed, and a
 * non-zero exit (2 for usage and configuration errors, 1 for everything else).
 */
export async function runCommand(name: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    const code = err instanceof DriverError ? err.code : 'INTERNAL';
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`model-csi ${name}: ${code}: ${scrubSecrets(message)}\n`);
    return code === 'CONFIG_INVALID' || code === 'INVALID_ARGUMENT' ? 2 : 1;
  }
}

export function usageError(message: string): DriverError {
  return new DriverError('INVALID_ARGUMENT', message);
}

/** A `--include a,b` style flag's globs; the flag may be absent. */
export function splitGlobs(value: string | boolean | undefined): string[] {
  return typeof value === 'string' ? parseGlobList(value) : [];
}
