import { createHash } from 'node:crypto';
import { sortedEntries } from '../csi/sorted-entries.js';
import type { CsiVolume, CreateVolumeRequest } from '../csi/types.js';
import { checkVolumeCapability, requireField } from '../csi/volume-capability.js';
import { DriverError } from '../errors/driver-error.js';
import { ATTRIBUTE_KEYS, ownAttributes, parseVolumeAttributes } from '../node/volume-attributes.js';
import type { ModelResolver } from './model-resolver.js';
import { volumeIdFor } from './volume-id.js';

/** Spec "Size Limits": names up to 128 bytes are guaranteed; longer ones are refused early. */
const MAX_NAME_BYTES = 128;
/** Names remembered for the conflict check; csi-provisioner retries a name within minutes. */
const REMEMBERED_NAMES = 10_000;

interface CreatedVolume {
  parametersHash: string;
  volume: CsiVolume;
}

/**
 * CreateVolume (spec "CreateVolume"). The volume is a description, not storage: the reference
 * is pinned to a digest once, here, and handed to the nodes in volume_context.
 *
 * Idempotency: the id derives from the name and the digest, so a repeat gets the same id
 * even across restarts. A repeat of a name with other parameters or an incompatible capacity
 * is ALREADY_EXISTS when this process saw the first call (an in-memory memo: the controller
 * keeps no storage, and csi-provisioner only repeats a name while retrying the same claim).
 */
export class VolumeCreator {
  private readonly created = new Map<string, CreatedVolume>();

  constructor(private readonly resolver: ModelResolver) {}

  async create(request: CreateVolumeRequest): Promise<{ volume: CsiVolume }> {
    requireField(request.name, 'name');
    requireField(request.volume_capabilities, 'volume_capabilities');
    if (Buffer.byteLength(request.name) > MAX_NAME_BYTES) {
      throw new DriverError('INVALID_ARGUMENT', `name is longer than ${MAX_NAME_BYTES} bytes`);
    }
    for (const capability of request.volume_capabilities!) checkVolumeCapability(capability, false);
    if (request.volume_content_source) {
      throw new DriverError('INVALID_ARGUMENT', 'volume_content_source is not supported: model volumes are not cloned or restored from snapshots');
    }
    const parameters = request.parameters ?? {};
    const attributes = parseVolumeAttributes(parameters);
    const required = request.capacity_range?.required_bytes ?? 0;
    const limit = request.capacity_range?.limit_bytes ?? 0;
    const parametersHash = hashParameters(parameters);

    const earlier = this.created.get(request.name);
    if (earlier !== undefined) {
      if (earlier.parametersHash !== parametersHash || !fits(earlier.volume.capacity_bytes, required, limit)) {
        throw new DriverError(
          'VOLUME_CONFLICT',
          `volume ${request.name} already exists with other parameters or capacity (${earlier.volume.capacity_bytes} bytes)`,
        );
      }
      return { volume: earlier.volume };
    }

    const resolved = await this.resolver.resolve(attributes.reference, request.secrets?.['.dockerconfigjson'] || undefined);
    // The claim's request when there is one: csi-provisioner rejects a PV smaller than asked.
    const capacity = required > 0 ? required : resolved.sizeBytes > 0 ? resolved.sizeBytes : 1;
    if (limit > 0 && capacity > limit) {
      throw new DriverError('INVALID_ARGUMENT', `model ${resolved.pinnedReference} is ${capacity} bytes, above the limit of ${limit}`);
    }
    const volume: CsiVolume = {
      capacity_bytes: capacity,
      volume_id: volumeIdFor(request.name, resolved.digest),
      volume_context: { ...ownAttributes(parameters), [ATTRIBUTE_KEYS.reference]: resolved.pinnedReference },
    };
    this.remember(request.name, { parametersHash, volume });
    return { volume };
  }

  forget(volumeId: string): void {
    for (const [name, entry] of this.created) if (entry.volume.volume_id === volumeId) this.created.delete(name);
  }

  private remember(name: string, entry: CreatedVolume): void {
    if (this.created.size >= REMEMBERED_NAMES) this.created.delete(this.created.keys().next().value!);
    this.created.set(name, entry);
  }
}

function fits(capacity: number, required: number, limit: number): boolean {
  return capacity >= required && (limit === 0 || capacity <= limit);
}

function hashParameters(parameters: Readonly<Record<string, string>>): string {
  return createHash('sha256').update(JSON.stringify(sortedEntries(parameters))).digest('hex');
}
