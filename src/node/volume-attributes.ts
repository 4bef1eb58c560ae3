import { posix } from 'node:path';
import { DriverError } from '../errors/driver-error.js';
import { parseGlobList } from '../artifacts/selection.js';
import { parseReference } from '../registry/reference.js';

/**
 * Volume attributes (pod `volumeAttributes` or StorageClass `parameters`), per the product
 * brief, "Volume attributes". Keys under our prefix are ours and strictly checked: an
 * unknown one is a typo the user must hear about. `csi.storage.k8s.io/*` keys come from
 * kubelet (podInfoOnMount, ephemeral) and csi-provisioner; they are accepted and unused.
 */
const ATTRIBUTE_PREFIX = 'model.csi.example.org/';

export const ATTRIBUTE_KEYS = {
  reference: `${ATTRIBUTE_PREFIX}reference`,
  subPath: `${ATTRIBUTE_PREFIX}subPath`,
  include: `${ATTRIBUTE_PREFIX}include`,
  exclude: `${ATTRIBUTE_PREFIX}exclude`,
  pullPolicy: `${ATTRIBUTE_PREFIX}pullPolicy`,
} as const;

const KNOWN_KEYS: ReadonlySet<string> = new Set(Object.values(ATTRIBUTE_KEYS));

type PullPolicy = 'IfNotPresent' | 'Always';

export interface VolumeAttributes {
  reference: string;
  /** Normalized relative path inside the model (no `..`, no leading `/`), or undefined for the whole model. */
  subPath: string | undefined;
  include: string[];
  exclude: string[];
  pullPolicy: PullPolicy;
}

export function parseVolumeAttributes(attributes: Readonly<Record<string, string>> = {}): VolumeAttributes {
  for (const key of Object.keys(attributes)) {
    if (key.startsWith(ATTRIBUTE_PREFIX) && !KNOWN_KEYS.has(key)) {
      throw new DriverError(
        'INVALID_ATTRIBUTE',
        `unknown volume attribute "${key}"; known: ${[...KNOWN_KEYS].join(', ')}`,
      );
    }
  }
  return {
    reference: parseReferenceAttribute(attributes),
    subPath: parseSubPath(attributes[ATTRIBUTE_KEYS.subPath]),
    include: parseGlobAttribute(attributes[ATTRIBUTE_KEYS.include], ATTRIBUTE_KEYS.include),
    exclude: parseGlobAttribute(attributes[ATTRIBUTE_KEYS.exclude], ATTRIBUTE_KEYS.exclude),
    pullPolicy: parsePullPolicy(attributes[ATTRIBUTE_KEYS.pullPolicy]),
  };
}

function parseReferenceAttribute(attributes: Readonly<Record<string, string>>): string {
  const reference = attributes[ATTRIBUTE_KEYS.reference]?.trim();
  if (reference === undefined || reference === '') {
    const unprefixed = 'reference' in attributes ? ` (found "reference" without the prefix: keys need "${ATTRIBUTE_PREFIX}")` : '';
    throw new DriverError('INVALID_ATTRIBUTE', `volume attribute ${ATTRIBUTE_KEYS.reference} is required${unprefixed}`);
  }
  parseReference(reference); // INVALID_REFERENCE naming the input and what is wrong with it
  return reference;
}

function parseSubPath(value: string | undefined): string | undefined {
  if (value === undefined || value.trim() === '') return undefined;
  const raw = value.trim();
  const problem =
    raw.startsWith('/') ? 'must be relative to the model root'
    : raw.split('/').includes('..') ? 'must not contain ".."'
    : raw.includes('\0') ? 'must not contain NUL'
    : undefined;
  if (problem !== undefined) {
    throw new DriverError('INVALID_ATTRIBUTE', `${ATTRIBUTE_KEYS.subPath} "${raw}" ${problem}`);
  }
  const normalized = posix.normalize(raw).replace(/\/+$/, '');
  return normalized === '.' || normalized === '' ? undefined : normalized;
}

function parseGlobAttribute(value: string | undefined, key: string): string[] {
  if (value === undefined) return [];
  const globs = parseGlobList(value);
  for (const glob of globs) {
    if (glob.includes('\0')) throw new DriverError('INVALID_ATTRIBUTE', `${key} holds a pattern with NUL`);
  }
  return globs;
}

function parsePullPolicy(value: string | undefined): PullPolicy {
  const policy = value?.trim();
  if (policy === undefined || policy === '') return 'IfNotPresent';
  if (policy === 'IfNotPresent' || policy === 'Always') return policy;
  throw new DriverError('INVALID_ATTRIBUTE', `${ATTRIBUTE_KEYS.pullPolicy} must be IfNotPresent or Always, got "${policy}"`);
}

/** The attributes of ours that a controller passes on into the volume context (prefix only). */
export function ownAttributes(attributes: Readonly<Record<string, string>> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(attributes)) if (key.startsWith(ATTRIBUTE_PREFIX)) out[key] = value;
  return out;
}
