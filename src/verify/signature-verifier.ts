import { DriverError, type ErrorCode } from '../errors/driver-error.js';
import type { PodRef } from '../kube/event-sink.js';
import type { PullEvents } from '../kube/pull-events.js';
import type { Logger } from '../log/logger.js';
import { formatReference, type Reference } from '../registry/reference.js';
import type { RegistryClient, RequestAuth } from '../registry/registry-client.js';
import { SingleFlight } from '../concurrency/single-flight.js';
import type { PublicKey } from './public-key.js';
import { digestTag, findSignatures, type FoundSignature } from './signature-finder.js';
import type { PolicyRule, SignaturePolicy } from './signature-policy.js';
import { describeOutcome, judgeSignature, refusalCode, type SignatureOutcome } from './signature-verdict.js';
import { VerifiedRecords } from './verified-records.js';

/**
 * The signature policy applied to a resolved manifest, before anything of the model is read:
 * PullingModelSource.acquire calls `check` once the reference has its digest, ahead of both
 * the cache-hit path (so a cached model that a rule now covers is checked before it is mounted
 * again) and the pull. A refusal throws (FAILED_PRECONDITION: the NodePublishVolume error
 * kubelet shows) and tells the pod with a PullFailed event.
 *
 * Cost: a verified (rule, repository, digest) is remembered (verified-records.ts: in memory,
 * and in `state/verified/` across restarts), so a warm publish makes no registry request. The
 * repository is part of the key because the payload must name it: the same digest under
 * another repository is another question. Refusals are not remembered: a model signed after a
 * refusal mounts at kubelet's next retry.
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

export class SignatureVerifier {
  private readonly flights = new SingleFlight<void>();
  private readonly records: VerifiedRecords;

  /** `root`: the cache root, whose `state/verified/` keeps results across restarts (none for `inspect`). */
  constructor(private readonly deps: { policy: SignaturePolicy; client: RegistryClient; events?: PullEvents; root?: string }) {
    this.records = new VerifiedRecords(deps.root);
  }

  async check(reference: Reference, digest: string, context: CheckContext): Promise<void> {
    const repository = `${reference.registry}/${reference.repository}`;
    const rule = this.deps.policy.ruleFor(repository);
    if (rule === undefined || rule.keys.length === 0) return;
    if (!(await this.records.isVerified(rule.id, repository, digest))) {
      try {
        await this.flights.run(`${rule.id}\0${repository}\0${digest}`, () => this.verify(reference, digest, rule, context));
      } catch (err) {
        if (err instanceof DriverError && err.code.startsWith('SIGNATURE_')) {
          context.log.warn({ code: err.code, rule: `verify[${rule.index}]` }, 'refused by the signature policy');
          this.deps.events?.refused(context.pod, formatReference(reference), { code: err.code, message: err.message });
        }
        throw err;
      }
    }
    // What the tag was verified at: a later move to an unsigned digest is told as such.
    if (reference.digest === undefined) await this.records.setTagDigest(rule.id, formatReference(reference), digest);
  }

  /** Every signature found for `digest` and what it proves with `keys` (`model-csi inspect`). */
  async examine(reference: Reference, digest: string, keys: readonly PublicKey[], auth: RequestAuth): Promise<Examined[]> {
    const repository = `${reference.registry}/${reference.repository}`;
    const found = await findSignatures(this.deps.client, reference, digest, auth);
    return found.map((signature) => ({ found: signature, outcome: judgeSignature(signature, keys, digest, repository) }));
  }

  private async verify(reference: Reference, digest: string, rule: PolicyRule, context: CheckContext): Promise<void> {
    const examined = await this.examine(reference, digest, rule.keys, context.auth);
    const passed = examined.find((e) => e.outcome.verdict === 'verified');
    if (passed) {
      await this.records.markVerified(rule.id, `${reference.registry}/${reference.repository}`, digest);
      context.log.info({ rule: `verify[${rule.index}]`, signature: describeOutcome(passed.found, passed.outcome) }, 'signature verified');
      return;
    }
    throw await this.refusal(reference, digest, rule, examined);
  }

  private async refusal(reference: Reference, digest: string, rule: PolicyRule, examined: Examined[]): Promise<DriverError> {
    const name = formatReference(reference);
    const demand = `the signature policy verify[${rule.index}] ("${rule.match}") requires a cosign signature of it by ${rule.keys.map((k) => k.path).join(' or ')}`;
    let code: ErrorCode = refusalCode(examined.map((e) => e.outcome));
    let message: string;
    if (code === 'SIGNATURE_MISSING') {
      const before = reference.digest === undefined ? await this.records.tagDigest(rule.id, name) : undefined;
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
