import { fileURLToPath } from 'node:url';
import { loadPackageDefinition, type GrpcObject, type ServiceClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

/** proto/csi.proto sits two levels above both src/csi/ and dist/csi/. */
export const CSI_PROTO_PATH = fileURLToPath(new URL('../../proto/csi.proto', import.meta.url));

/**
 * Loader options shared by the server and the test clients: snake_case field names as in the
 * spec, int64 as JS numbers (byte counts stay far below 2^53), enums as their names, and
 * defaults filled in so an absent field reads as '' / 0 / false like in the Go bindings.
 */
export const CSI_LOADER_OPTIONS = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

export interface CsiServices {
  Identity: ServiceClientConstructor;
  Controller: ServiceClientConstructor;
  Node: ServiceClientConstructor;
}

let cached: CsiServices | undefined;

/** The csi.v1 package, loaded once per process. */
export function loadCsi(): CsiServices {
  if (cached === undefined) {
    const definition = loadSync(CSI_PROTO_PATH, CSI_LOADER_OPTIONS);
    const grpcObject = loadPackageDefinition(definition);
    const v1 = (grpcObject['csi'] as GrpcObject)['v1'] as GrpcObject;
    cached = {
      Identity: v1['Identity'] as ServiceClientConstructor,
      Controller: v1['Controller'] as ServiceClientConstructor,
      Node: v1['Node'] as ServiceClientConstructor,
    };
  }
  return cached;
}

export type CsiServiceName = keyof CsiServices;

export function serviceDefinition(name: CsiServiceName): ServiceDefinition {
  return loadCsi()[name].service;
}
