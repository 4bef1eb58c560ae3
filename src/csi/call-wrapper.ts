import { randomBytes } from 'node:crypto';
import type { sendUnaryData, ServerUnaryCall, UntypedServiceImplementation } from '@grpc/grpc-js';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { DriverError } from '../errors/driver-error.js';
import { toGrpcError } from '../errors/to-grpc.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';

/** What every handler gets besides its request. */
export interface CallContext {
  /** Child logger of this call (method, volume id, call id). */
  log: Logger;
  /** Absolute deadline in ms since the epoch; Infinity when the caller set none. */
  deadline: number;
}

/**
 * A handler types its own request; proto-loader decodes untyped objects, so the table of
 * handlers (called by the wrapper and by unit tests) takes any request.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
type CsiHandler = (request: any, context: CallContext) => Promise<unknown>;
/** The decoded request message, as proto-loader gives it (fields by their proto names). */
type DecodedRequest = Record<string, unknown> | null | undefined;
export type CsiHandlers = Record<string, CsiHandler>;

export interface WrapOptions {
  logger: Logger;
  metrics: Metrics;
  /** True once shutdown began: calls still arriving on open connections get SHUTTING_DOWN. */
  draining: () => boolean;
}

/** Methods polled by sidecars; logged at debug so they do not drown the call log. */
const QUIET_METHODS = new Set(['Probe', 'GetPluginInfo', 'NodeGetCapabilities', 'ControllerGetCapabilities']);

/**
 * The one interceptor around every CSI handler: a child logger per call, one log line per
 * call (method, volume id, duration, code), metrics, and errors put on the wire only through
 * toGrpcError. The request's `secrets` map is never logged: only `loggableRequest` output is.
 */
export function wrapHandlers(handlers: CsiHandlers, options: WrapOptions): UntypedServiceImplementation {
  const wrapped: UntypedServiceImplementation = {};
  for (const [method, handler] of Object.entries(handlers)) {
    wrapped[method] = (call: ServerUnaryCall<DecodedRequest, unknown>, callback: sendUnaryData<unknown>) => {
      void runCall(method, handler, call, callback, options);
    };
  }
  return wrapped;
}

async function runCall(
  method: string,
  handler: CsiHandler,
  call: ServerUnaryCall<DecodedRequest, unknown>,
  callback: sendUnaryData<unknown>,
  { logger, metrics, draining }: WrapOptions,
): Promise<void> {
  const started = process.hrtime.bigint();
  const request = call.request ?? {};
  const volumeId = typeof request.volume_id === 'string' && request.volume_id !== '' ? request.volume_id : undefined;
  const log = logger.child({ method, ...(volumeId === undefined ? {} : { volumeId }), call: randomBytes(4).toString('hex') });
  const level = QUIET_METHODS.has(method) ? 'debug' : 'info';
  log.debug({ request: loggableRequest(request) }, 'call started');

  let response: unknown;
  let failure: ReturnType<typeof toGrpcError> | undefined;
  try {
    if (draining()) throw new DriverError('SHUTTING_DOWN', 'the driver is shutting down; retry against the new instance');
    response = await handler(request, { log, deadline: deadlineMs(call) });
  } catch (err) {
    failure = toGrpcError(err);
    if (failure.code === GrpcStatus.INTERNAL) log.error({ err }, 'call failed with an internal error');
  }

  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const code = GrpcStatus[failure?.code ?? GrpcStatus.OK] ?? String(failure?.code);
  metrics.csiCalls.inc({ method, code });
  metrics.csiCallSeconds.observe({ method }, seconds);
  const line = { code, durationMs: Math.round(seconds * 1e4) / 10, ...(failure ? { error: failure.details } : {}) };
  log[failure && level === 'info' ? 'warn' : level](line, 'csi call');

  if (failure) callback(failure as never);
  else callback(null, response);
}

function deadlineMs(call: ServerUnaryCall<unknown, unknown>): number {
  const deadline = call.getDeadline();
  if (deadline instanceof Date) return deadline.getTime();
  return typeof deadline === 'number' && Number.isFinite(deadline) ? deadline : Infinity;
}

/** The request as it may be logged: `secrets` removed at any depth (CSI marks them csi_secret). */
function loggableRequest(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(loggableRequest);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, child] of Object.entries(value)) {
    if (key === 'secrets') continue;
    out[key] = loggableRequest(child);
  }
  return out;
}
