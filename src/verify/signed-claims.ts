import { parseReference } from '../registry/reference.js';

/**
 * What a signed payload says it covers, read from the two payloads cosign signs:
 * - the classic simple-signing payload (containers/image docs/containers-signature.5.md,
 *   cosign `payload.Cosign`): `critical.image.docker-manifest-digest` and
 *   `critical.identity.docker-reference`;
 * - the in-toto Statement inside a sigstore bundle's DSSE envelope (cosign sign
 *   --new-bundle-format): `subject[].digest.sha256`, with predicateType
 *   https://sigstore.dev/cosign/sign/v1. cosign v2.6 writes the subject without a `name`, so
 *   such a bundle names no repository; a `name`, when a signer writes one, is checked.
 * Only read after the signature over these bytes verified: an unverified payload says nothing.
 */
export interface SignedSubject {
  /** `sha256:<hex>` */
  digest: string;
  /** `host[:port]/repository` (Docker Hub names normalized), when the payload names one. */
  repository?: string;
}

const SIMPLE_SIGNING_TYPE = 'cosign container image signature';
export const COSIGN_SIGN_PREDICATE = 'https://sigstore.dev/cosign/sign/v1';
const STATEMENT_TYPES = new Set(['https://in-toto.io/Statement/v1', 'https://in-toto.io/Statement/v0.1']);

/** Subjects of a simple-signing payload, or the reason it is not one. */
export function simpleSigningSubjects(payload: Buffer): SignedSubject[] | string {
  const json = parseObject(payload);
  const critical = json?.['critical'] as { type?: unknown; image?: Record<string, unknown>; identity?: Record<string, unknown> } | undefined;
  if (critical === undefined || critical === null || typeof critical !== 'object') return 'the payload is not a simple-signing JSON object with "critical"';
  const type = critical.type;
  if (typeof type !== 'string' || type.toLowerCase() !== SIMPLE_SIGNING_TYPE) return `the payload type is ${JSON.stringify(type)}, not "${SIMPLE_SIGNING_TYPE}"`;
  const digest = critical.image?.['docker-manifest-digest'];
  if (typeof digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(digest)) return 'the payload has no critical.image.docker-manifest-digest';
  const reference = critical.identity?.['docker-reference'];
  if (typeof reference !== 'string') return 'the payload has no critical.identity.docker-reference';
  const repository = repositoryOf(reference);
  if (repository === undefined) return `the payload's docker-reference ${JSON.stringify(reference.slice(0, 200))} is not a repository`;
  return [{ digest, repository }];
}

/**
 * Subjects of an in-toto Statement; undefined when it is a statement about something else
 * than a cosign signature (an attestation: not a signature, so not counted as one).
 */
export function statementSubjects(payload: Buffer): SignedSubject[] | string | undefined {
  const json = parseObject(payload);
  if (json === undefined || !STATEMENT_TYPES.has(String(json['_type']))) return 'the DSSE payload is not an in-toto Statement';
  if (json['predicateType'] !== COSIGN_SIGN_PREDICATE) return undefined;
  if (!Array.isArray(json['subject'])) return 'the statement has no subject list';
  const subjects: SignedSubject[] = [];
  for (const subject of json['subject'] as Array<{ name?: unknown; digest?: { sha256?: unknown } } | null>) {
    const hex = subject?.digest?.sha256;
    if (typeof hex !== 'string' || !/^[0-9a-f]{64}$/.test(hex)) continue;
    const name = typeof subject?.name === 'string' && subject.name !== '' ? subject.name : undefined;
    const repository = name === undefined ? undefined : repositoryOf(name);
    if (name !== undefined && repository === undefined) return `the statement subject name ${JSON.stringify(name.slice(0, 200))} is not a repository`;
    subjects.push({ digest: `sha256:${hex}`, ...(repository === undefined ? {} : { repository }) });
  }
  if (subjects.length === 0) return 'the statement has no subject with a sha256 digest';
  return subjects;
}

/** `host[:port]/repository` of a reference as a signer writes it (tag or digest ignored). */
function repositoryOf(reference: string): string | undefined {
  try {
    const parsed = parseReference(reference);
    return `${parsed.registry}/${parsed.repository}`;
  } catch {
    return undefined;
  }
}

function parseObject(bytes: Buffer): Record<string, unknown> | undefined {
  try {
    const json = JSON.parse(bytes.toString('utf8')) as unknown;
    return json !== null && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
