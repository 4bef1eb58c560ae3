import { pino, destination as pinoDestination, stdSerializers } from 'pino';
import type { Logger } from 'pino';
import { scrubSecrets } from '../errors/scrub.js';

export type { Logger } from 'pino';

/** Field names whose values are credentials wherever they sit in a logged object. */
const SECRET_KEYS = new Set(['secrets', 'password', 'auth', 'authorization', 'proxy-authorization', 'token', 'access_token', 'refresh_token', 'identitytoken', 'registrytoken', 'dockerconfigjson', '.dockerconfigjson', 'cookie']);

/** Past this depth a logged value is cut: errors nest a few levels (cause, options, headers). */
const MAX_DEPTH = 8;

/**
 * A logged value with every string passed through scrubSecrets and every credential field
 * censored, at any depth. Why: redaction paths only reach the levels they name, and an error
 * carries text it did not write (a library's message, a URL, request options in a nested
 * field, a cause chain); this is the same last line of defence the wire and the CLI have.
 */
function scrubLogged(value: unknown, depth = 0, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return scrubSecrets(value);
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[too deep]';
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (Array.isArray(value)) return value.map((item) => scrubLogged(item, depth + 1, seen));
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  const out: Record<string, unknown> = {};
  for (const key in value) {
    const field = (value as Record<string, unknown>)[key];
    out[key] = SECRET_KEYS.has(key.toLowerCase()) && field !== undefined && field !== null && field !== '' ? '***' : scrubLogged(field, depth + 1, seen);
  }
  return out;
}

/**
 * pino's error serializer (type, message and stack with the cause chain folded in, enumerable
 * fields), then scrubbed. Also applied to strings logged under `err` (`err: e.message`).
 */
function scrubbedError(err: unknown): unknown {
  return scrubLogged(err instanceof Error ? stdSerializers.err(err) : err);
}

/**
 * One root logger per process. Secrets maps and credential fields are never passed to a log
 * call in the first place; redaction and the scrubbing serializers are the second line of
 * defence, for what a lower layer echoes back.
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
      serializers: { err: scrubbedError, error: scrubbedError, cause: scrubbedError },
      hooks: {
        // A message string can interpolate an error's text too.
        logMethod(args, method) {
          method.apply(this, args.map((arg) => (typeof arg === 'string' ? scrubSecrets(arg) : arg)) as Parameters<typeof method>);
        },
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination ?? pinoDestination({ fd: 2, sync: false }),
  );
}
