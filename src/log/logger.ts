import { pino, destination as pinoDestination } from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * One root logger per process. Redaction is a second line of defence: secrets maps and
 * credential fields are never passed to a log call in the first place.
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { component: 'model-csi' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['secrets', '*.secrets', 'password', '*.password', 'auth', '*.auth', 'authorization', '*.authorization', 'token', '*.token'],
        censor: '***',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pinoDestination({ fd: 2, sync: false }),
  );
}
