import { DriverError, type ErrorCode } from '../errors/driver-error.js';
import type { PodRef } from '../kube/event-sink.js';
import type { PullEvents } from '../kube/pull-events.js';
import type { Logger } from '../log/logger.js';
import { formatReference, type Reference } from '../registry/reference.js';
import type { RegistryClient, RequestAuth } from '../registry/registry-client.js';
import { SingleFlight } from '../store/single-flight.js';
import type { PublicKey } from './public-key.js';
import { digestTag, findSignatures, type FoundSignature } from './signature-finder.js';
import type { PolicyRule, SignaturePolicy } from './signature-policy.js';
import { describeOutcome, judgeSignature, refusalCode, type SignatureOutcome } from './signature-verdict.js';

/**
 * The signature policy applied to a resolved manifest, before anything of the model is read:
 * PullingModelSource.acquire calls `check` once the reference has its digest, ahead of both
 * the cache-hit path (so a cached model that a rule now covers is checked before it is mounted
 * again) and the pull. A refusal throws (FAILED_PRECONDITION: the NodePublishVolume error
 * kubelet shows) and tells the pod with a PullFailed event.
 *
 * Cost: a verified (rule, repository, digest) is remembered, so a warm publish makes no
 * registry request. The repository is part of the key because the payload must name it: the
 * same digest under another repository is another question. Refusals are not remembered: a
 * model signed after a refusal mounts at kubelet's next retry.
 */
export interface CheckContext {
  auth: RequestAuth;
  log: Logger;
  pod?: PodRef;
}

export interface Examined {
  found: FoundSignature;
  outcome: SignatureOutcome;
}

/** Bounded memory: a node sees few distinct digests; past this the oldest result is re-verified when next asked. */
const MAX_REMEMBERED = 4096;

export class SignatureVerifier {
  private readonly verified = new Map<string, true>();
  /** Tag → the digest last verified for it under a rule: tells a moved tag from a never-signed one. */
  private readonly lastVerified = new Map<string, string>();
  private readonly flights = new SingleFlight<void>();

  constructor(private readonly deps: { policy: SignaturePolicy; client: RegistryClient; events?: PullEvents }) {}

  async check(reference: Reference, digest: string, context: CheckContext): Promise<void> {
    const repository = `${reference.registry}/${reference.repository}`;
    const rule = this.deps.policy.ruleFor(repository);
    if (rule === undefined || rule.keys.length === 0) return;
    const key = `${rule.id}\0${repository}\0${digest}`;
    if (!this.verified.has(key)) {
      try {
        await this.flights.run(key, () => this.verify(reference, digest, rule, context, key));
      } catch (err) {
        if (err instanceof DriverError && err.code.startsWith('SIGNATURE_')) {
          context.log.warn({ code: err.code, rule: `verify[${rule.index}]` }, 'refused by the signature policy');
          this.deps.events?.refused(context.pod, formatReference(reference), { code: err.code, message: err.message });
        }
        throw err;
      }
    }
    if (reference.digest === undefined) remember(this.lastVerified, `${rule.id}\0${formatReference(reference)}`, digest);
  }

  /** Every signature found for `digest` and what it proves with `keys` (`model-csi inspect`). */
  async examine(reference: Reference, digest: string, keys: readonly PublicKey[], auth: RequestAuth): Promise<Examined[]> {
    const repository = `${reference.registry}/${reference.repository}`;
    const found = await findSignatures(this.deps.client, reference, digest, auth);
    return found.map((signature) => ({ found: signature, outcome: judgeSignature(signature, keys, digest, repository) }));
  }

  private async verify(reference: Reference, digest: string, rule: PolicyRule, context: CheckContext, key: string): Promise<void> {
    const examined = await this.examine(reference, digest, rule.keys, context.auth);
    const passed = examined.find((e) => e.outcome.verdict === 'verified');
    if (passed) {
      remember(this.verified, key, true);
      context.log.info({ rule: `verify[${rule.index}]`, signature: describeOutcome(passed.found, passed.outcome) }, 'signature verified');
      return;
    }
    throw this.refusal(reference, digest, rule, examined);
  }

  private refusal(reference: Reference, digest: string, rule: PolicyRule, examined: Examined[]): DriverError {
    const name = formatReference(reference);
    const demand = `the signature policy verify[${rule.index}] ("${rule.match}") requires a cosign signature of it by ${rule.keys.map((k) => k.path).join(' or ')}`;
    let code: ErrorCode = refusalCode(examined.map((e) => e.outcome));
    let message: string;
    if (code === 'SIGNATURE_MISSING') {
      const before = reference.digest === undefined ? this.lastVerified.get(`${rule.id}\0${name}`) : undefined;
      const found = `found no ${digestTag(digest)}.sig tag and no sigstore bundle referrer`;
      if (before !== undefined && before !== digest) {
        code = 'SIGNATURE_TAG_MOVED';
        message = `${name} now points to ${digest}, which is not signed, but pointed to ${before}, signed, when this node last mounted it: the tag was moved to an unsigned manifest. ${demand}; ${found}. Nothing was downloaded: pin the signed digest (${reference.registry}/${reference.repository}@${before}) or sign the new one`;
      } else {
        message = `${name} (${digest}) is not signed: ${demand}; ${found}. Nothing was downloaded: sign it (cosign sign --key …) or fix the reference`;
      }
    } else {
      const seen = examined.slice(0, 4).map((e) => describeOutcome(e.found, e.outcome));
      if (examined.length > 4) seen.push(`${examined.length - 4} more`);
      message = `${name} (${digest}) has no signature that verifies: ${demand}, over this digest in ${reference.registry}/${reference.repository}; found ${seen.join('; ')}. Nothing was downloaded: sign this digest with a configured key`;
    }
    return new DriverError(code, message, { retryable: false });
  }
}

/** A bounded map: past MAX_REMEMBERED the oldest entry goes (it is verified again when next asked). */
function remember<V>(into: Map<string, V>, key: string, value: V): void {
  if (into.size >= MAX_REMEMBERED && !into.has(key)) into.delete(into.keys().next().value!);
  into.set(key, value);
}
