import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { DriverError } from './driver-error.js';
import { scrubSecrets } from './scrub.js';

/**
 * The one place where errors are put on the wire. grpc-js turns any non-integer `code`
 * (Node's `ENOENT`, say) into UNKNOWN, so everything that is not a DriverError becomes
 * INTERNAL with its message kept, never UNKNOWN by accident.
 */
export function toGrpcError(err: unknown): Partial<ServiceError> & { code: GrpcStatus; details: string } {
  const driverError =
    err instanceof DriverError
      ? err
      : new DriverError('INTERNAL', `internal error: ${err instanceof Error ? err.message : String(err)}`, {
          cause: err,
        });
  const details = scrubSecrets(`${driverError.code}: ${driverError.message}`);
  const metadata = new Metadata();
  metadata.set('model-csi-error-code', driverError.code);
  return { name: driverError.code, message: details, code: driverError.grpcStatus, details, metadata };
}
