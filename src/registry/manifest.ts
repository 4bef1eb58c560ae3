import { DriverError } from '../errors/driver-error.js';
import { isSha256Digest } from './digest.js';
import { MediaTypes, type Descriptor, type ImageIndex, type ImageManifest } from './oci-types.js';

/**
 * Reading manifests and indexes received from a registry: media type detection, shape
 * checks (a hostile manifest must not reach the puller with a bad digest or size), and the
 * index → platform choice. Image spec: manifest.md, image-index.md, descriptor.md.
 */

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024;

/** Everything resolve() accepts, in Accept order (OCI first). */
export const MANIFEST_ACCEPT = [MediaTypes.ociManifest, MediaTypes.ociIndex, MediaTypes.dockerManifest, MediaTypes.dockerManifestList];

const INDEX_TYPES = new Set<string>([MediaTypes.ociIndex, MediaTypes.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MediaTypes.ociManifest, MediaTypes.dockerManifest]);

export type Parsed =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex };

function protocol(where: string, why: string): DriverError {
  return new DriverError('REGISTRY_PROTOCOL', `${where}: ${why}; the artifact is malformed or hostile`, { retryable: false });
}

function checkDescriptor(d: unknown, where: string): asserts d is Descriptor {
  const desc = d as Partial<Descriptor> | null;
  if (desc === null || typeof desc !== 'object') throw protocol(where, 'a descriptor is not an object');
  if (typeof desc.mediaType !== 'string' || desc.mediaType === '') throw protocol(where, 'a descriptor has no mediaType');
  if (typeof desc.digest !== 'string' || !isSha256Digest(desc.digest)) {
    throw protocol(where, `descriptor digest ${JSON.stringify(String(desc.digest).slice(0, 80))} is not sha256:<64 hex>`);
  }
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) {
    throw protocol(where, `descriptor ${desc.digest} has an invalid size`);
  }
}

/**
 * Parses manifest bytes. The media type is the body's `mediaType` when present (OCI makes
 * it a SHOULD), else the Content-Type, else inferred from the shape.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, where: string): Parsed {
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch {
    throw protocol(where, 'the manifest is not valid JSON');
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw protocol(where, 'the manifest is not a JSON object');
  const header = contentType?.split(';')[0]!.trim().toLowerCase();
  let mediaType = typeof json.mediaType === 'string' ? json.mediaType : header;
  if (mediaType === undefined || mediaType === '' || mediaType === 'application/json') {
    mediaType = Array.isArray(json.manifests) ? MediaTypes.ociIndex : json.config !== undefined ? MediaTypes.ociManifest : String(mediaType);
  }
  if (INDEX_TYPES.has(mediaType)) {
    if (json.schemaVersion !== 2 || !Array.isArray(json.manifests)) throw protocol(where, 'an index needs schemaVersion 2 and a manifests array');
    json.manifests.forEach((m) => checkDescriptor(m, where));
    return { kind: 'index', mediaType, index: json as unknown as ImageIndex };
  }
  if (MANIFEST_TYPES.has(mediaType)) {
    if (json.schemaVersion !== 2) throw protocol(where, 'a manifest needs schemaVersion 2');
    checkDescriptor(json.config, where);
    if (!Array.isArray(json.layers)) throw protocol(where, 'a manifest needs a layers array');
    json.layers.forEach((l) => checkDescriptor(l, where));
    return { kind: 'manifest', mediaType, manifest: json as unknown as ImageManifest };
  }
  throw new DriverError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${where} has media type ${mediaType || '(none)'}; supported: OCI image manifest/index and Docker v2 manifest/manifest list`,
    { retryable: false },
  );
}

export interface Platform {
  os: string;
  architecture: string;
}

/** The node's platform in OCI terms (Node's `x64` is OCI's `amd64`). */
export function nodePlatform(): Platform {
  const arch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return { os: 'linux', architecture: arch[process.arch] ?? process.arch };
}

/**
 * The index entry to pull: the one for this platform, else a platform-independent one (no
 * `platform`, as model artifacts are). Attestation entries (`unknown/unknown`, buildx) and
 * other platforms are never chosen.
 */
export function selectFromIndex(index: ImageIndex, platform: Platform, where: string): Descriptor {
  const pullable = index.manifests.filter((m) => MANIFEST_TYPES.has(m.mediaType) || INDEX_TYPES.has(m.mediaType));
  const exact = pullable.find((m) => m.platform?.os === platform.os && m.platform?.architecture === platform.architecture);
  if (exact !== undefined) return exact;
  const independent = pullable.find((m) => m.platform === undefined);
  if (independent !== undefined) return independent;
  const offered = index.manifests.map((m) => (m.platform ? `${m.platform.os}/${m.platform.architecture}` : m.mediaType)).join(', ');
  throw new DriverError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${where} is an index with no entry for ${platform.os}/${platform.architecture} and no platform-independent entry (it has: ${offered || 'nothing'})`,
    { retryable: false },
  );
}
