import { isDriverError } from '../errors/driver-error.js';
import { parseManifest } from '../registry/manifest.js';
import type { Descriptor, ImageIndex, ImageManifest } from '../registry/oci-types.js';
import type { Reference } from '../registry/reference.js';
import type { RegistryClient, RequestAuth } from '../registry/registry-client.js';
import { COSIGN_SIGN_PREDICATE, simpleSigningSubjects, statementSubjects, type SignedSubject } from './signed-claims.js';

/**
 * Finding the cosign signatures of a manifest digest, in both forms cosign writes, reading
 * manifests and the small signature blobs only (never a layer of the model):
 * - classic: the manifest tagged `sha256-<hex>.sig` in the same repository; each layer is a
 *   simple-signing payload, its signature (base64) in the `dev.cosignproject.cosign/signature`
 *   annotation (cosign pkg/oci/static, pkg/types);
 * - sigstore bundles: OCI 1.1 referrers of the digest whose artifactType is a bundle media type,
 *   one layer holding the bundle JSON (a DSSE envelope over an in-toto Statement), listed by
 *   the referrers API or, where the registry lacks it (distribution 2.8), by the referrers tag
 *   schema: the index tagged `sha256-<hex>` (distribution-spec "Referrers Tag Schema").
 */
export type FoundSignature = {
  form: 'classic' | 'bundle';
  /** Where it is, for messages and `inspect`: `sha256-….sig layer 0`, `referrer sha256:…`. */
  source: string;
} & (
  | {
      ok: true;
      /** The exact bytes the signature covers (the payload, or the DSSE PAE of the envelope). */
      signed: Buffer;
      /** A DSSE envelope may carry several; one verifying is enough. */
      signatures: Buffer[];
      /** What the payload says it covers: trusted only once a signature verified. */
      subjects: SignedSubject[] | string;
    }
  | { ok: false; problem: string }
);

const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
const BUNDLE_MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.bundle';
const PREDICATE_ANNOTATION = 'dev.sigstore.bundle.predicateType';
const EMPTY_MEDIA_TYPE = 'application/vnd.oci.empty.v1+json';
/** Signature payloads and bundles are a few KiB; anything far larger is not one. */
const MAX_SIGNATURE_BLOB_BYTES = 1024 * 1024;
/** A hostile registry could list thousands: the first ones are examined, the rest ignored. */
const MAX_PER_FORM = 16;

export async function findSignatures(client: RegistryClient, ref: Reference, digest: string, auth: RequestAuth): Promise<FoundSignature[]> {
  const [classic, bundles] = await Promise.all([classicSignatures(client, ref, digest, auth), bundleSignatures(client, ref, digest, auth)]);
  return [...classic, ...bundles];
}

/** `sha256:<hex>` → `sha256-<hex>`: the tag both cosign and the referrers tag schema derive. */
export function digestTag(digest: string): string {
  return digest.replace(':', '-');
}

async function classicSignatures(client: RegistryClient, ref: Reference, digest: string, auth: RequestAuth): Promise<FoundSignature[]> {
  const tag = `${digestTag(digest)}.sig`;
  const fetched = await client.fetchManifestIfPresent(ref, tag, { auth });
  if (fetched === undefined) return [];
  let layers: Descriptor[];
  try {
    const parsed = parseManifest(fetched.bytes, fetched.contentType, `signature manifest ${tag}`);
    if (parsed.kind !== 'manifest') return [{ form: 'classic', source: tag, ok: false, problem: 'the signature tag holds an index, not a manifest' }];
    layers = parsed.manifest.layers ?? [];
  } catch (err) {
    return [{ form: 'classic', source: tag, ok: false, problem: (err as Error).message }];
  }
  if (layers.length === 0) return [{ form: 'classic', source: tag, ok: false, problem: 'the signature manifest has no layers' }];
  return Promise.all(
    layers.slice(0, MAX_PER_FORM).map(async (layer, i): Promise<FoundSignature> => {
      const source = `${tag} layer ${i}`;
      const fail = (problem: string): FoundSignature => ({ form: 'classic', source, ok: false, problem });
      if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE) return fail(`the layer is ${layer.mediaType}, not ${SIMPLE_SIGNING_MEDIA_TYPE}`);
      const signature = decodeBase64(layer.annotations?.[SIGNATURE_ANNOTATION]);
      if (signature === undefined) return fail(`the layer has no base64 ${SIGNATURE_ANNOTATION} annotation`);
      const payload = await signatureBlob(client, ref, layer, auth);
      if (typeof payload === 'string') return fail(payload);
      return { form: 'classic', source, ok: true, signed: payload, signatures: [signature], subjects: simpleSigningSubjects(payload) };
    }),
  );
}

async function bundleSignatures(client: RegistryClient, ref: Reference, digest: string, auth: RequestAuth): Promise<FoundSignature[]> {
  let index: ImageIndex | undefined = await client.referrers(ref, digest, { auth });
  if (index === undefined) {
    const fallback = await client.fetchManifestIfPresent(ref, digestTag(digest), { auth });
    if (fallback === undefined) return [];
    try {
      const parsed = parseManifest(fallback.bytes, fallback.contentType, `referrers tag ${digestTag(digest)}`);
      if (parsed.kind !== 'index') return [{ form: 'bundle', source: digestTag(digest), ok: false, problem: 'the referrers tag holds a manifest, not an index' }];
      index = parsed.index;
    } catch (err) {
      return [{ form: 'bundle', source: digestTag(digest), ok: false, problem: (err as Error).message }];
    }
  }
  // go-containerregistry (cosign's writer) labels fallback-tag entries with the config's media
  // type (the OCI empty descriptor), not the bundle's: such entries are read to find out.
  const candidates = index.manifests.filter(
    (entry) =>
      (entry.artifactType === undefined || entry.artifactType === EMPTY_MEDIA_TYPE || entry.artifactType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX)) &&
      isSignaturePredicate(entry.annotations),
  );
  const found = await Promise.all(candidates.slice(0, MAX_PER_FORM).map((entry) => bundleSignature(client, ref, digest, entry, auth)));
  return found.filter((signature): signature is FoundSignature => signature !== undefined);
}

async function bundleSignature(client: RegistryClient, ref: Reference, digest: string, entry: Descriptor, auth: RequestAuth): Promise<FoundSignature | undefined> {
  const source = `referrer ${entry.digest}`;
  const fail = (problem: string): FoundSignature => ({ form: 'bundle', source, ok: false, problem });
  const fetched = await client.fetchManifestIfPresent(ref, entry.digest, { auth });
  if (fetched === undefined) return fail('the referrer manifest is listed but not in the repository');
  let layers: Descriptor[];
  try {
    const parsed = parseManifest(fetched.bytes, fetched.contentType, `referrer ${entry.digest}`);
    if (parsed.kind !== 'manifest') return fail('the referrer is an index, not a manifest');
    // The fallback tag is an ordinary, writable tag: the manifest itself must say what it refers to.
    const manifest = parsed.manifest as ImageManifest & { subject?: { digest?: unknown } };
    layers = manifest.layers ?? [];
    const isBundle = manifest.artifactType?.startsWith(BUNDLE_MEDIA_TYPE_PREFIX) === true || layers.some((layer) => layer.mediaType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX));
    // Another kind of referrer (an SBOM, an attestation): not a signature, not a broken one.
    if (!isBundle || !isSignaturePredicate(manifest.annotations)) return undefined;
    if (manifest.subject?.digest !== digest) return fail(`the referrer's subject is ${String(manifest.subject?.digest)}, not ${digest}`);
  } catch (err) {
    return fail((err as Error).message);
  }
  const layer = layers.find((candidate) => candidate.mediaType.startsWith(BUNDLE_MEDIA_TYPE_PREFIX));
  if (layer === undefined) return fail('the referrer has no sigstore bundle layer');
  const bytes = await signatureBlob(client, ref, layer, auth);
  if (typeof bytes === 'string') return fail(bytes);
  const envelope = dsseEnvelope(bytes);
  if (typeof envelope === 'string') return fail(envelope);
  const subjects = statementSubjects(envelope.payload);
  if (subjects === undefined) return undefined;
  return { form: 'bundle', source, ok: true, signed: preAuthEncoding(envelope.payloadType, envelope.payload), signatures: envelope.signatures, subjects };
}

/** Attestations (SBOM, provenance) are bundles too: only cosign's signature predicate, or an unlabelled bundle, is a signature. */
function isSignaturePredicate(annotations: Record<string, string> | undefined): boolean {
  return (annotations?.[PREDICATE_ANNOTATION] ?? COSIGN_SIGN_PREDICATE) === COSIGN_SIGN_PREDICATE;
}

/** A signature payload or bundle blob, or why it cannot be read as one. */
async function signatureBlob(client: RegistryClient, ref: Reference, layer: Descriptor, auth: RequestAuth): Promise<Buffer | string> {
  if (layer.size > MAX_SIGNATURE_BLOB_BYTES) return `the blob ${layer.digest} is ${layer.size} bytes, far more than a signature`;
  try {
    return await client.fetchBlobBytes(ref, layer, { auth, maxBytes: MAX_SIGNATURE_BLOB_BYTES });
  } catch (err) {
    if (isDriverError(err, 'BLOB_NOT_FOUND')) return `the blob ${layer.digest} is missing from the repository`;
    throw err;
  }
}

/** The bundle's DSSE envelope (sigstore protobuf-specs Bundle v0.3, JSON form). */
function dsseEnvelope(bytes: Buffer): { payload: Buffer; payloadType: string; signatures: Buffer[] } | string {
  let bundle: { dsseEnvelope?: { payload?: unknown; payloadType?: unknown; signatures?: Array<{ sig?: unknown }> }; messageSignature?: unknown };
  try {
    bundle = JSON.parse(bytes.toString('utf8')) as typeof bundle;
  } catch {
    return 'the bundle is not JSON';
  }
  const envelope = bundle?.dsseEnvelope;
  if (envelope === undefined) return bundle?.messageSignature !== undefined ? 'the bundle holds a message signature (a blob signature), not a DSSE envelope over an image' : 'the bundle has no dsseEnvelope';
  const payload = decodeBase64(envelope.payload);
  if (payload === undefined) return 'the bundle envelope has no base64 payload';
  if (typeof envelope.payloadType !== 'string') return 'the bundle envelope has no payloadType';
  const signatures = (Array.isArray(envelope.signatures) ? envelope.signatures : []).map((s) => decodeBase64(s?.sig)).filter((s): s is Buffer => s !== undefined);
  if (signatures.length === 0) return 'the bundle envelope has no signature';
  return { payload, payloadType: envelope.payloadType, signatures };
}

/** DSSE v1 PAE: what a DSSE signature covers ("DSSEv1 <len> <type> <len> <body>", lengths in bytes). */
export function preAuthEncoding(payloadType: string, payload: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${payload.length} `), payload]);
}

function decodeBase64(value: unknown): Buffer | undefined {
  if (typeof value !== 'string' || value === '' || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) return undefined;
  return Buffer.from(value, 'base64');
}
