import type { ErrorCode } from '../errors/driver-error.js';
import type { PublicKey } from './public-key.js';
import type { FoundSignature } from './signature-finder.js';

/**
 * What each signature found proves about one manifest in one repository, given some keys.
 * Verified means all three: a signature over the payload verifies with one of the keys; the
 * payload names this manifest digest; and it names this repository (or, like cosign's
 * bundles, names none: see signed-claims.ts). The payload's claims count only once its
 * signature verified.
 */
export type SignatureOutcome =
  | { verdict: 'verified'; keys: PublicKey[] }
  | { verdict: 'malformed'; problem: string }
  | { verdict: 'untrusted' }
  | { verdict: 'other-digest'; keys: PublicKey[]; digests: string[] }
  | { verdict: 'other-repository'; keys: PublicKey[]; repositories: string[] };

export function judgeSignature(found: FoundSignature, keys: readonly PublicKey[], digest: string, repository: string): SignatureOutcome {
  if (!found.ok) return { verdict: 'malformed', problem: found.problem };
  const by = keys.filter((key) => found.signatures.some((signature) => key.verifies(found.signed, signature)));
  if (by.length === 0) return { verdict: 'untrusted' };
  if (typeof found.subjects === 'string') return { verdict: 'malformed', problem: found.subjects };
  const forDigest = found.subjects.filter((subject) => subject.digest === digest);
  if (forDigest.length === 0) return { verdict: 'other-digest', keys: by, digests: found.subjects.map((subject) => subject.digest) };
  if (forDigest.every((subject) => subject.repository !== undefined && subject.repository !== repository)) {
    return { verdict: 'other-repository', keys: by, repositories: forDigest.map((subject) => subject.repository!) };
  }
  return { verdict: 'verified', keys: by };
}

/** Why no signature passed, most telling first: a good key over the wrong thing says more than a stranger's key or noise. */
const REFUSAL_ORDER: ReadonlyArray<[SignatureOutcome['verdict'], ErrorCode]> = [
  ['other-repository', 'SIGNATURE_REPOSITORY_MISMATCH'],
  ['other-digest', 'SIGNATURE_DIGEST_MISMATCH'],
  ['untrusted', 'SIGNATURE_UNTRUSTED'],
  ['malformed', 'SIGNATURE_MALFORMED'],
];

/** The code of a refusal given every outcome (none verified); no signature at all is SIGNATURE_MISSING. */
export function refusalCode(outcomes: readonly SignatureOutcome[]): ErrorCode {
  for (const [verdict, code] of REFUSAL_ORDER) if (outcomes.some((outcome) => outcome.verdict === verdict)) return code;
  return 'SIGNATURE_MISSING';
}

/** One outcome in words, for messages and `inspect`. */
export function describeOutcome(found: FoundSignature, outcome: SignatureOutcome): string {
  const where = `${found.form} signature ${found.source}`;
  const keys = (list: PublicKey[]) => list.map((key) => key.path).join(', ');
  switch (outcome.verdict) {
    case 'verified':
      return `${where}: verified by ${keys(outcome.keys)}`;
    case 'malformed':
      return `${where}: malformed (${outcome.problem})`;
    case 'untrusted':
      return `${where}: signed by a key that is not configured`;
    case 'other-digest':
      return `${where}: signed by ${keys(outcome.keys)} but for ${outcome.digests.join(', ')}`;
    case 'other-repository':
      return `${where}: signed by ${keys(outcome.keys)} but for repository ${outcome.repositories.join(', ')}`;
  }
}
