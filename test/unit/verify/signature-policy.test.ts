import { strict as assert } from 'node:assert';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { loadConfigFile } from '../../../src/config/settings.js';
import type { EventSink, PodEvent, PodRef } from '../../../src/kube/event-sink.js';
import { PullEvents } from '../../../src/kube/pull-events.js';
import { preAuthEncoding, type FoundSignature } from '../../../src/verify/signature-finder.js';
import { SignaturePolicy } from '../../../src/verify/signature-policy.js';
import { judgeSignature, refusalCode } from '../../../src/verify/signature-verdict.js';
import { simpleSigningSubjects, statementSubjects } from '../../../src/verify/signed-claims.js';

// The policy's logic over real key files and real signatures made with node:crypto; the
// same checks against signatures made by the real cosign are in
// test/integration/verify/signature-policy.test.ts.
const dir = mkdtempSync(join(tmpdir(), 'model-csi-verify-unit-'));
const DIGEST = `sha256:${'a'.repeat(64)}`;
const OTHER = `sha256:${'b'.repeat(64)}`;

function keyFile(name: string, type: 'ec' | 'rsa' | 'ed25519' | 'x25519', options: Record<string, unknown> = {}): { path: string; privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync(type as 'ec', options as { namedCurve: string });
  const path = join(dir, `${name}.pub`);
  writeFileSync(path, publicKey.export({ type: 'spki', format: 'pem' }));
  return { path, privateKey };
}

const p256 = keyFile('p256', 'ec', { namedCurve: 'P-256' });
const p384 = keyFile('p384', 'ec', { namedCurve: 'P-384' });
const rsa = keyFile('rsa', 'rsa', { modulusLength: 2048 });
const ed = keyFile('ed25519', 'ed25519');

function config(verify: unknown): string {
  const path = join(dir, `config-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, stringify({ verify }));
  return path;
}

function simpleSigning(digest: string, reference: string): Buffer {
  return Buffer.from(JSON.stringify({ critical: { identity: { 'docker-reference': reference }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' }, optional: null }));
}

function classic(payload: Buffer, signature: Buffer): FoundSignature {
  return { form: 'classic', source: 'sha256-x.sig layer 0', ok: true, signed: payload, signatures: [signature], subjects: simpleSigningSubjects(payload) };
}

test('rules apply in order, the first match wins; keys: [] is matched and not checked; no match is not checked', () => {
  const policy = SignaturePolicy.load(
    loadConfigFile(
      config([
        { match: 'registry.example.com/experimental/*', keys: [] },
        { match: 'registry.example.com/**', keys: [p256.path, rsa.path] },
        { match: 'localhost:*/models/**', keys: [ed.path] },
      ]),
    ).verify,
  );
  assert.equal(policy.ruleFor('registry.example.com/experimental/llama')?.index, 0);
  assert.deepEqual(policy.ruleFor('registry.example.com/experimental/llama')?.keys, []);
  assert.equal(policy.ruleFor('registry.example.com/experimental/a/b')?.index, 1, '* stays inside one segment');
  assert.equal(policy.ruleFor('registry.example.com/models/llama')?.keys.length, 2);
  assert.equal(policy.ruleFor('localhost:5000/models/x/y')?.index, 2, 'the port is part of what is matched');
  assert.equal(policy.ruleFor('other.example.com/models/x'), undefined);
  assert.equal(policy.keys().length, 3);
});

test('a bad glob or key file is one CONFIG_INVALID line naming it, at start-up', () => {
  const x25519 = keyFile('x25519', 'x25519');
  const p521 = keyFile('p521', 'ec', { namedCurve: 'P-521' });
  const notPem = join(dir, 'not.pub');
  writeFileSync(notPem, 'hello');
  const cases: Array<[unknown, RegExp]> = [
    [[{ match: 'registry.example.com/[models', keys: [] }], /verify\.0\.match: .*not valid/],
    [[{ match: 'registry.example.com/models:v1', keys: [] }], /verify\.0\.match: .*names a tag/],
    [[{ match: 'registry.example.com/models@sha256:x', keys: [] }], /verify\.0\.match: .*names a digest/],
    [[{ match: 'registry.example.com/**', keys: ['relative.pub'] }], /verify\.0\.keys\.0: .*absolute/],
    [[{ match: 'registry.example.com/**' }], /verify\.0\.keys/],
    [[{ match: 'registry.example.com/**', keys: [join(dir, 'missing.pub')] }], /cannot read the public key .*missing\.pub of verify\[0\] \(ENOENT\)/],
    [[{ match: 'a/**', keys: [] }, { match: 'b/**', keys: [notPem] }], /not\.pub of verify\[1\] is not a PEM public key/],
    [[{ match: 'a/**', keys: [x25519.path] }], /x25519\.pub of verify\[0\] is x25519; use ECDSA P-256 or P-384, RSA or Ed25519/],
    [[{ match: 'a/**', keys: [p521.path] }], /ECDSA on secp521r1/],
  ];
  for (const [verify, message] of cases) {
    assert.throws(
      () => SignaturePolicy.load(loadConfigFile(config(verify)).verify),
      (err: unknown) => isDriverError(err, 'CONFIG_INVALID') && message.test(err.message) && !err.message.includes('\n'),
      `${JSON.stringify(verify)} → ${message}`,
    );
  }
});

test('verified: a signature by a configured key (P-256, P-384, RSA, Ed25519) over a payload naming this digest and repository', () => {
  const policy = SignaturePolicy.load(loadConfigFile(config([{ match: '**', keys: [p256.path, p384.path, rsa.path, ed.path] }])).verify);
  const keys = policy.keys();
  const payload = simpleSigning(DIGEST, 'registry.example.com/models/llama');
  const signatures: Array<[string, Buffer]> = [
    ['p256', sign('sha256', payload, p256.privateKey)],
    ['p384 (sha256, as cosign v2)', sign('sha256', payload, p384.privateKey)],
    ['p384 (sha384)', sign('sha384', payload, p384.privateKey)],
    ['rsa', sign('sha256', payload, rsa.privateKey)],
    ['ed25519', sign(null, payload, ed.privateKey)],
  ];
  for (const [name, signature] of signatures) {
    const outcome = judgeSignature(classic(payload, signature), keys, DIGEST, 'registry.example.com/models/llama');
    assert.equal(outcome.verdict, 'verified', name);
  }
  // Docker Hub names are compared normalized, as the signer and the pod may spell them differently.
  const hub = simpleSigning(DIGEST, 'index.docker.io/library/llama');
  assert.equal(judgeSignature(classic(hub, sign('sha256', hub, p256.privateKey)), keys, DIGEST, 'docker.io/library/llama').verdict, 'verified');
});

test('each refusal: another key, another digest, another repository, malformed; the most telling one is the code', () => {
  const keys = SignaturePolicy.load(loadConfigFile(config([{ match: '**', keys: [p256.path] }])).verify).keys();
  const repository = 'registry.example.com/models/llama';
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const good = simpleSigning(DIGEST, repository);
  const untrusted = judgeSignature(classic(good, sign('sha256', good, stranger)), keys, DIGEST, repository);
  const tampered = judgeSignature(classic(simpleSigning(DIGEST, 'evil.example.com/x'), sign('sha256', good, p256.privateKey)), keys, DIGEST, repository);
  const forOther = simpleSigning(OTHER, repository);
  const otherDigest = judgeSignature(classic(forOther, sign('sha256', forOther, p256.privateKey)), keys, DIGEST, repository);
  const elsewhere = simpleSigning(DIGEST, 'registry.example.com/models/other');
  const otherRepository = judgeSignature(classic(elsewhere, sign('sha256', elsewhere, p256.privateKey)), keys, DIGEST, repository);
  const notPayload = Buffer.from('{"critical":{}}');
  const malformed = judgeSignature(classic(notPayload, sign('sha256', notPayload, p256.privateKey)), keys, DIGEST, repository);
  assert.deepEqual(
    [untrusted, tampered, otherDigest, otherRepository, malformed].map((o) => o.verdict),
    ['untrusted', 'untrusted', 'other-digest', 'other-repository', 'malformed'],
  );
  assert.equal(refusalCode([]), 'SIGNATURE_MISSING');
  assert.equal(refusalCode([malformed]), 'SIGNATURE_MALFORMED');
  assert.equal(refusalCode([malformed, untrusted]), 'SIGNATURE_UNTRUSTED');
  assert.equal(refusalCode([untrusted, otherDigest]), 'SIGNATURE_DIGEST_MISMATCH');
  assert.equal(refusalCode([otherDigest, otherRepository]), 'SIGNATURE_REPOSITORY_MISMATCH');
});

test('a DSSE bundle statement: the signature covers the PAE; a subject without a name (cosign v2.6) names no repository; one with a name is checked', () => {
  const keys = SignaturePolicy.load(loadConfigFile(config([{ match: '**', keys: [ed.path] }])).verify).keys();
  const statement = (subject: object) => Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [subject], predicateType: 'https://sigstore.dev/cosign/sign/v1' }));
  const bundle = (payload: Buffer, signed = preAuthEncoding('application/vnd.in-toto+json', payload)): FoundSignature => ({
    form: 'bundle',
    source: 'referrer x',
    ok: true,
    signed: preAuthEncoding('application/vnd.in-toto+json', payload),
    signatures: [sign(null, signed, ed.privateKey)],
    subjects: statementSubjects(payload)!,
  });
  const unnamed = statement({ digest: { sha256: 'a'.repeat(64) } });
  assert.equal(judgeSignature(bundle(unnamed), keys, DIGEST, 'r.example.com/m').verdict, 'verified');
  assert.equal(judgeSignature(bundle(unnamed, unnamed), keys, DIGEST, 'r.example.com/m').verdict, 'untrusted', 'a signature over the bare payload, not the PAE');
  assert.equal(judgeSignature(bundle(statement({ name: 'r.example.com/other', digest: { sha256: 'a'.repeat(64) } })), keys, DIGEST, 'r.example.com/m').verdict, 'other-repository');
  assert.equal(
    statementSubjects(Buffer.from(JSON.stringify({ _type: 'https://in-toto.io/Statement/v1', subject: [], predicateType: 'https://spdx.dev/Document' }))),
    undefined,
    'an attestation is not a signature',
  );
});

test('a refusal before any pull is one PullFailed Warning for the pod, as a failed pull tells', () => {
  const events: PodEvent[] = [];
  const sink: EventSink = { emit: (_pod: PodRef, event: PodEvent) => events.push(event) };
  const pullEvents = new PullEvents(sink);
  pullEvents.refused({ namespace: 'ns', name: 'p', uid: 'u' }, 'reg/m:v1', { code: 'SIGNATURE_MISSING', message: 'reg/m:v1 is not signed' });
  pullEvents.refused(undefined, 'reg/m:v1', { code: 'SIGNATURE_MISSING', message: 'x' });
  assert.deepEqual(events, [{ type: 'Warning', reason: 'PullFailed', message: 'Pulling reg/m:v1 failed: SIGNATURE_MISSING: reg/m:v1 is not signed' }]);
});
