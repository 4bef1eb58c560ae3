import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { DriverError } from '../errors/driver-error.js';
import { verifyEd25519 } from './ed25519ph.js';

/**
 * A public key of the signature policy, read from its PEM file once at start-up, and the
 * one check made with it. The algorithms are the ones cosign signs with for a key pair
 * (sigstore/sigstore pkg/signature LoadDefaultSignerVerifier): ECDSA with ASN.1 DER
 * signatures, RSA PKCS#1 v1.5, and Ed25519ph (cosign's choice for Ed25519 keys) or pure Ed25519.
 */
export interface PublicKey {
  /** The file it came from, as configured: how messages and `inspect` name it. */
  path: string;
  /** sha256 of the DER SubjectPublicKeyInfo, hex: the same key under two paths is one key. */
  fingerprint: string;
  /** Whether `signature` over `signed` verifies with this key. Never throws. */
  verifies(signed: Buffer, signature: Buffer): boolean;
}

/** Hashes tried per curve: cosign v2.6 signs P-384 with SHA-384 (the curve's default), older ones with SHA-256. */
const HASHES: Record<string, readonly string[]> = {
  prime256v1: ['sha256'],
  secp384r1: ['sha256', 'sha384'],
};

export function loadPublicKey(path: string, where: string): PublicKey {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DriverError('CONFIG_INVALID', `cannot read the public key ${path} of ${where} (${(err as NodeJS.ErrnoException).code ?? 'error'}): fix the path in the driver config`);
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new DriverError('CONFIG_INVALID', `the public key ${path} of ${where} is not a PEM public key (cosign.pub: "-----BEGIN PUBLIC KEY-----")`);
  }
  const fingerprint = createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex');
  return { path, fingerprint, verifies: verifierFor(key, path, where) };
}

function verifierFor(key: KeyObject, path: string, where: string): PublicKey['verifies'] {
  const type = key.asymmetricKeyType;
  if (type === 'ed25519') {
    const raw = Buffer.from(key.export({ format: 'jwk' }).x!, 'base64url');
    // cosign signs Ed25519ph (ed25519ph.ts); other signers, pure Ed25519.
    return (signed, signature) => attempt(() => verify(null, signed, key, signature)) || verifyEd25519(raw, signed, signature, { prehash: true });
  }
  if (type === 'rsa') {
    if ((key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
      throw new DriverError('CONFIG_INVALID', `the RSA public key ${path} of ${where} is shorter than 2048 bits`);
    }
    return (signed, signature) => attempt(() => verify('sha256', signed, key, signature));
  }
  const hashes = type === 'ec' ? HASHES[key.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
  if (hashes === undefined) {
    const detail = type === 'ec' ? `ECDSA on ${key.asymmetricKeyDetails?.namedCurve}` : String(type);
    throw new DriverError('CONFIG_INVALID', `the public key ${path} of ${where} is ${detail}; use ECDSA P-256 or P-384, RSA or Ed25519`);
  }
  return (signed, signature) => hashes.some((hash) => attempt(() => verify(hash, signed, { key, dsaEncoding: 'der' }, signature)));
}

/** A signature that is not even well-formed DER for the key is simply not a valid one. */
function attempt(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}
