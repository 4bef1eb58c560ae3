import { GrpcStatus, type GrpcStatusCode } from './grpc-status.js';

/**
 * The error catalog. Every failure the driver reports carries one of these stable codes,
 * fixed where the error is created together with its gRPC status (the CSI spec assigns
 * meanings to status codes per RPC, e.g. NOT_FOUND vs FAILED_PRECONDITION in
 * NodePublishVolume). `docs/errors.md` lists each code with what the user should do; a unit
 * test fails when a code is missing there.
 *
 * Messages end up in `kubectl describe pod`: say what failed, for which reference, and what
 * to do. Never put credentials in a message.
 */
export const ErrorCodes = {
  // Input
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  INVALID_REFERENCE: GrpcStatus.INVALID_ARGUMENT,
  INVALID_ATTRIBUTE: GrpcStatus.INVALID_ARGUMENT,
  INVALID_SECRET: GrpcStatus.INVALID_ARGUMENT,
  UNSUPPORTED_CAPABILITY: GrpcStatus.INVALID_ARGUMENT,
  VOLUME_CONFLICT: GrpcStatus.ALREADY_EXISTS,
  // Registry
  REGISTRY_UNAUTHORIZED: GrpcStatus.PERMISSION_DENIED,
  MANIFEST_NOT_FOUND: GrpcStatus.NOT_FOUND,
  BLOB_NOT_FOUND: GrpcStatus.NOT_FOUND,
  REGISTRY_UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  REGISTRY_PROTOCOL: GrpcStatus.FAILED_PRECONDITION,
  TLS_FAILURE: GrpcStatus.UNAVAILABLE,
  // Content
  UNSUPPORTED_MEDIA_TYPE: GrpcStatus.FAILED_PRECONDITION,
  DIGEST_MISMATCH: GrpcStatus.DATA_LOSS,
  MANIFEST_TOO_LARGE: GrpcStatus.FAILED_PRECONDITION,
  UNSAFE_PATH: GrpcStatus.FAILED_PRECONDITION,
  UNSAFE_ENTRY: GrpcStatus.FAILED_PRECONDITION,
  SUBPATH_NOT_FOUND: GrpcStatus.FAILED_PRECONDITION,
  // Signature policy (src/verify/): the artifact, not the caller, lacks what the policy
  // asks, and only a change to the artifact (sign it, or move the tag back) lifts it —
  // FAILED_PRECONDITION. PERMISSION_DENIED stays for the registry refusing the caller.
  SIGNATURE_MISSING: GrpcStatus.FAILED_PRECONDITION,
  SIGNATURE_UNTRUSTED: GrpcStatus.FAILED_PRECONDITION,
  SIGNATURE_DIGEST_MISMATCH: GrpcStatus.FAILED_PRECONDITION,
  SIGNATURE_REPOSITORY_MISMATCH: GrpcStatus.FAILED_PRECONDITION,
  SIGNATURE_MALFORMED: GrpcStatus.FAILED_PRECONDITION,
  SIGNATURE_TAG_MOVED: GrpcStatus.FAILED_PRECONDITION,
  // Node and cache
  PULL_IN_PROGRESS: GrpcStatus.UNAVAILABLE,
  NO_SPACE: GrpcStatus.RESOURCE_EXHAUSTED,
  CACHE_UNUSABLE: GrpcStatus.FAILED_PRECONDITION,
  CACHE_IO_FAILED: GrpcStatus.INTERNAL,
  MOUNT_FAILED: GrpcStatus.INTERNAL,
  VOLUME_NOT_FOUND: GrpcStatus.NOT_FOUND,
  // Process
  CONFIG_INVALID: GrpcStatus.INVALID_ARGUMENT,
  ENDPOINT_IN_USE: GrpcStatus.FAILED_PRECONDITION,
  SHUTTING_DOWN: GrpcStatus.UNAVAILABLE,
  INTERNAL: GrpcStatus.INTERNAL,
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface DriverErrorOptions {
  cause?: unknown;
  /** Whether retrying the same call later can succeed (drives pull retries and metrics). */
  retryable?: boolean;
}

export class DriverError extends Error {
  override readonly name = 'DriverError';
  readonly code: ErrorCode;
  readonly grpcStatus: GrpcStatusCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: DriverErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.grpcStatus = ErrorCodes[code];
    this.retryable = options.retryable ?? this.grpcStatus === GrpcStatus.UNAVAILABLE;
  }
}

export function isDriverError(err: unknown, code?: ErrorCode): err is DriverError {
  return err instanceof DriverError && (code === undefined || err.code === code);
}
