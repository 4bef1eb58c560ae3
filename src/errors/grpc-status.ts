/**
 * gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html), as numbers.
 * The same values as @grpc/grpc-js's `status`; defined here so that code which only creates
 * errors (the CLI's pull path, the store, the registry client) does not load the gRPC stack.
 */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** `RESOURCE_EXHAUSTED` for 8: the name users see in status messages (ModelCache). */
export function grpcStatusName(code: GrpcStatusCode): string {
  return Object.entries(GrpcStatus).find(([, value]) => value === code)?.[0] ?? String(code);
}
