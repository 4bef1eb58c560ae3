import { DriverError } from '../errors/driver-error.js';
import type { AccessModeName, VolumeCapability } from './types.js';

/**
 * Which volume capabilities a model volume can honour. The same rule serves
 * NodePublishVolume, CreateVolume and ValidateVolumeCapabilities.
 *
 * A model volume is always published read-only (`ro,nosuid,nodev`), whatever is asked.
 * - Filesystem (`mount`) access only: a model is a directory tree, not a block device.
 * - Reader modes are accepted as they are.
 * - Single-node writer modes are accepted too and still published read-only: kubelet sends
 *   SINGLE_NODE_WRITER for every inline ephemeral volume (the pod's `readOnly` only sets the
 *   `readonly` flag), and ReadWriteOnce is the default access mode of a PVC, so refusing it
 *   would break the common pod spec while a read-only mount loses nothing a model user needs.
 * - Multi-node writer modes (ReadWriteMany) ask for shared writable storage, which a model
 *   volume can never give: refused unless the caller also sets `readonly`.
 */
const READ_ONLY_MODES: ReadonlySet<AccessModeName> = new Set(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);
const SINGLE_NODE_WRITER_MODES: ReadonlySet<AccessModeName> = new Set([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);
const MULTI_NODE_WRITER_MODES: ReadonlySet<AccessModeName> = new Set(['MULTI_NODE_SINGLE_WRITER', 'MULTI_NODE_MULTI_WRITER']);

/** Why the capability cannot be honoured, or undefined when it can. */
export function capabilityProblem(capability: VolumeCapability, readonly: boolean): string | undefined {
  if (capability.block) {
    return 'block access is not supported: model volumes are read-only filesystem volumes (use volumeMode: Filesystem)';
  }
  if (!capability.mount) return 'volume_capability must set the mount access type';
  const mode = capability.access_mode?.mode;
  if (typeof mode !== 'string' || mode === 'UNKNOWN') return 'volume_capability.access_mode is required';
  if (READ_ONLY_MODES.has(mode) || SINGLE_NODE_WRITER_MODES.has(mode)) return undefined;
  if (MULTI_NODE_WRITER_MODES.has(mode)) {
    return readonly
      ? undefined
      : `access mode ${mode} asks for shared writable storage; model volumes are read-only (use ReadOnlyMany and readOnly: true)`;
  }
  return `unknown access mode ${String(mode)}`;
}

/** Throws UNSUPPORTED_CAPABILITY (INVALID_ARGUMENT) when the capability cannot be honoured. */
export function checkVolumeCapability(capability: VolumeCapability, readonly: boolean): void {
  const problem = capabilityProblem(capability, readonly);
  if (problem !== undefined) throw new DriverError('UNSUPPORTED_CAPABILITY', problem);
}

/** Missing-field checks of the CSI spec: INVALID_ARGUMENT naming the field. */
export function requireField(value: unknown, field: string): void {
  const missing = value === undefined || value === null || value === '' || (Array.isArray(value) && value.length === 0);
  if (missing) throw new DriverError('INVALID_ARGUMENT', `${field} is required`);
}
