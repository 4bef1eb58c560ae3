import type { CsiHandlers } from '../csi/call-wrapper.js';
import type { DeleteVolumeRequest, ValidateVolumeCapabilitiesRequest } from '../csi/types.js';
import { capabilityProblem, requireField } from '../csi/volume-capability.js';
import { DriverError } from '../errors/driver-error.js';
import { parseVolumeAttributes } from '../node/volume-attributes.js';
import { VolumeCreator } from './create-volume.js';
import type { ModelResolver } from './model-resolver.js';
import { parseVolumeId } from './volume-id.js';

/**
 * CSI Controller service: `new ControllerService(resolver).handlers()`. Stateless apart from
 * the CreateVolume name memo; the methods not listed answer UNIMPLEMENTED (grpc-js default),
 * as the spec asks for capabilities that are not claimed.
 */
export class ControllerService {
  private readonly creator: VolumeCreator;

  constructor(resolver: ModelResolver) {
    this.creator = new VolumeCreator(resolver);
  }

  handlers(): CsiHandlers {
    return {
      async ControllerGetCapabilities() {
        return { capabilities: [{ rpc: { type: 'CREATE_DELETE_VOLUME' } }] };
      },
      CreateVolume: (request) => this.creator.create(request),
      DeleteVolume: async (request: DeleteVolumeRequest) => {
        requireField(request.volume_id, 'volume_id');
        // Nothing to delete: the volume is a pinned reference; node caches evict on their own.
        this.creator.forget(request.volume_id);
        return {};
      },
      ValidateVolumeCapabilities: async (request: ValidateVolumeCapabilitiesRequest) => validateCapabilities(request),
    };
  }
}

/** Spec "ValidateVolumeCapabilities": confirm only what a read-only model volume can honour. */
function validateCapabilities(request: ValidateVolumeCapabilitiesRequest): object {
  requireField(request.volume_id, 'volume_id');
  requireField(request.volume_capabilities, 'volume_capabilities');
  const id = parseVolumeId(request.volume_id);
  if (id === undefined) {
    throw new DriverError('VOLUME_NOT_FOUND', `volume ${request.volume_id} was not created by this driver`);
  }
  const context = request.volume_context ?? {};
  if (Object.keys(context).length > 0) parseVolumeAttributes(context);
  const problems = request.volume_capabilities!.map((capability) => capabilityProblem(capability, false)).filter((p) => p !== undefined);
  if (problems.length > 0) return { message: problems.join('; ') };
  return {
    confirmed: {
      volume_context: context,
      volume_capabilities: request.volume_capabilities,
      parameters: request.parameters ?? {},
    },
  };
}
