/**
 * The signature policy on the product's main path, all real: artifacts signed by the real
 * cosign (v2.6, offline: generated key pairs, no transparency log) in a docker-registry 2.8
 * (no referrers API: cosign's bundles land under the referrers tag schema), the node plugin
 * as a process, real mounts. Every refusal is checked for zero blob GETs of the model's
 * layers at the counting proxy the driver talks to.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { request } from 'undici';
import { stringify } from 'yaml';
import { readMountInfo, topMountAt } from '../../../src/mount/mountinfo.js';
import { generateKeyPair, importKeyPair, sign, type CosignKey } from '../../helpers/cosign.js';
import { callCsi, mainCommand } from '../../helpers/driver-process.js';
import { pushArtifact, pushBlob, pushManifest } from '../../helpers/registry.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from '../publish/fixture.js';

let stage: Stage;
let keys: string;
let release: CosignKey;
let stranger: CosignKey;
const imported: Record<string, CosignKey> = {};

function policy(extra: object[] = []) {
  return [
    ...extra,
    { match: '*/open/**', keys: [] },
    { match: '*/signed/**', keys: [release.pub, ...Object.values(imported).map((k) => k.pub)] },
  ];
}

before(async () => {
  keys = await mkdtemp(join(tmpdir(), 'model-csi-cosign-'));
  release = generateKeyPair(keys, 'release');
  stranger = generateKeyPair(keys, 'stranger');
  const pems = {
    rsa: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
    p384: generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey,
    ed25519: generateKeyPairSync('ed25519').privateKey,
  };
  for (const [name, key] of Object.entries(pems)) {
    const pem = join(keys, `${name}.pem`);
    await writeFile(pem, key.export({ type: name === 'rsa' ? 'pkcs1' : name === 'p384' ? 'sec1' : 'pkcs8', format: 'pem' }));
    imported[name] = importKeyPair(keys, pem, name);
  }
  stage = await startStage({ config: { verify: policy() } });
});
after(async () => {
  await stage.close();
  await rm(keys, { recursive: true, force: true });
});

type Model = Awaited<ReturnType<typeof pushModel>>;

/** Where cosign signs: the registry itself, naming the repository as the driver sees it (through the proxy). */
function signModel(model: Model, repository: string, key: CosignKey, options: { bundle?: boolean; identity?: string } = {}): void {
  sign(keys, `${stage.registry.host}/${repository}@${model.digest}`, key, { bundle: options.bundle, identity: options.identity ?? `${stage.proxy.host}/${repository}` });
}

function layerDigests(model: Model): string[] {
  return [model.config.digest, ...model.layers.map((layer: { digest: string }) => layer.digest)];
}

async function manifestAt(repository: string, reference: string): Promise<{ layers: Array<{ digest: string }>; manifests?: Array<{ digest: string }> }> {
  const res = await request(`${stage.registry.url}/v2/${repository}/manifests/${reference}`, {
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
  });
  assert.equal(res.statusCode, 200, `${repository}:${reference}`);
  return (await res.body.json()) as { layers: Array<{ digest: string }> };
}

/** The blobs cosign wrote for `model`'s signature: the driver reads them, and only them, before it fetches anything of the model. */
async function signatureBlobs(repository: string, model: Model, form: 'classic' | 'bundle'): Promise<string[]> {
  const tag = model.digest.replace(':', '-');
  if (form === 'classic') return (await manifestAt(repository, `${tag}.sig`)).layers.map((layer) => layer.digest);
  const index = await manifestAt(repository, tag);
  const referrer = await manifestAt(repository, index.manifests![0]!.digest);
  return referrer.layers.map((layer) => layer.digest);
}

/** The signature was read at the registry (the policy ran), and the model came after. */
async function assertSignatureRead(repository: string, model: Model, form: 'classic' | 'bundle'): Promise<void> {
  for (const digest of await signatureBlobs(repository, model, form)) {
    assert.ok((stage.proxy.blobGets.get(digest) ?? 0) >= 1, `the ${form} signature blob ${digest} was read`);
    const first = stage.proxy.blobRequests.findIndex((r) => r.digest === digest);
    const firstLayer = stage.proxy.blobRequests.findIndex((r) => layerDigests(model).includes(r.digest));
    assert.ok(first < firstLayer, 'the signature is read before any blob of the model');
  }
}

async function assertMounted(path: string, model: Model): Promise<void> {
  assert.ok(topMountAt(await readMountInfo(), path), `${path} is mounted`);
  assert.ok((await readFile(join(path, 'config.json'))).equals(model.expected['config.json']!));
}

/** Refused with `code`, the reference named, no blob of the model fetched, nothing mounted or cached. */
async function assertRefused(name: string, reference: string, model: Model, code: string, also?: RegExp): Promise<string> {
  stage.proxy.reset();
  const path = target(stage, name);
  let details = '';
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference, pullPolicy: 'Always' })), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.FAILED_PRECONDITION, err.details);
    assert.ok(err.details.startsWith(`${code}: `), err.details);
    assert.ok(err.details.includes(reference.split('@')[0]!.split(':').slice(0, 2).join(':')), `the message names the reference: ${err.details}`);
    if (also) assert.match(err.details, also);
    details = err.details;
    return true;
  });
  for (const digest of layerDigests(model)) assert.equal(stage.proxy.blobGets.get(digest) ?? 0, 0, `blob ${digest} of the refused model was fetched`);
  await assert.rejects(stat(path), { code: 'ENOENT' }, 'nothing is left at the target');
  assert.equal(existsSync(join(stage.root, 'models', 'sha256', model.digest.slice(7))), false, 'nothing is cached');
  return details;
}

test('a model signed by cosign (classic sha256-<hex>.sig tag) mounts; a warm publish makes no registry request at all', async () => {
  const model = await pushModel(stage, 'signed/classic', 'v1', modelFiles('classic'));
  signModel(model, 'signed/classic', release);
  stage.proxy.reset();
  const first = target(stage, 'classic');
  await publishUntilReady(stage, publishRequest(first, { reference: model.reference }));
  await assertMounted(first, model);
  await assertSignatureRead('signed/classic', model, 'classic');

  stage.proxy.reset();
  const warm = target(stage, 'classic-warm');
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(warm, { reference: model.reference }));
  await assertMounted(warm, model);
  assert.equal(stage.proxy.requests, 0, 'the verification result is reused: no registry request');
});

test('a model signed as a sigstore bundle (OCI 1.1 referrer, found through the sha256-<hex> referrers tag on a registry without the referrers API) mounts', async () => {
  const model = await pushModel(stage, 'signed/bundle', 'v1', modelFiles('bundle'));
  signModel(model, 'signed/bundle', release, { bundle: true });
  const api = await request(`${stage.registry.url}/v2/signed/bundle/referrers/${model.digest}`);
  await api.body.dump();
  assert.equal(api.statusCode, 404, 'distribution 2.8 has no referrers API');
  const sigTag = await request(`${stage.registry.url}/v2/signed/bundle/manifests/${model.digest.replace(':', '-')}.sig`);
  await sigTag.body.dump();
  assert.equal(sigTag.statusCode, 404, 'the bundle form writes no classic .sig tag');
  stage.proxy.reset();
  const path = target(stage, 'bundle');
  await publishUntilReady(stage, publishRequest(path, { reference: model.reference }));
  await assertMounted(path, model);
  await assertSignatureRead('signed/bundle', model, 'bundle');
});

test('keys of every supported type verify: RSA, ECDSA P-384 and Ed25519 key pairs imported into cosign', async () => {
  for (const [name, key] of Object.entries(imported)) {
    const model = await pushModel(stage, `signed/${name}`, 'v1', modelFiles(name, 4096));
    signModel(model, `signed/${name}`, key);
    stage.proxy.reset();
    const path = target(stage, `key-${name}`);
    await publishUntilReady(stage, publishRequest(path, { reference: model.reference }));
    await assertMounted(path, model);
    await assertSignatureRead(`signed/${name}`, model, 'classic');
  }
});

test('unsigned: refused (SIGNATURE_MISSING) by tag and by a pinned digest (a PVC), with no blob GET and nothing mounted; an exempt repository mounts unsigned', async () => {
  const model = await pushModel(stage, 'signed/unsigned', 'v1', modelFiles('unsigned'));
  await assertRefused('unsigned', model.reference, model, 'SIGNATURE_MISSING', /verify\[1\].*release\.pub.*found no sha256-[0-9a-f]{64}\.sig tag and no sigstore bundle referrer/);
  await assertRefused('unsigned-pinned', `${stage.proxy.host}/signed/unsigned@${model.digest}`, model, 'SIGNATURE_MISSING');
  const open = await pushModel(stage, 'open/unsigned', 'v1', modelFiles('open', 4096));
  const path = target(stage, 'open');
  await publishUntilReady(stage, publishRequest(path, { reference: open.reference }));
  await assertMounted(path, open);
});

test('signed by another key: refused (SIGNATURE_UNTRUSTED), in both forms', async () => {
  const classic = await pushModel(stage, 'signed/stranger-classic', 'v1', modelFiles('stranger-classic'));
  signModel(classic, 'signed/stranger-classic', stranger);
  await assertRefused('stranger-classic', classic.reference, classic, 'SIGNATURE_UNTRUSTED', /classic signature sha256-[0-9a-f]{64}\.sig layer 0: signed by a key that is not configured/);
  const bundle = await pushModel(stage, 'signed/stranger-bundle', 'v1', modelFiles('stranger-bundle'));
  signModel(bundle, 'signed/stranger-bundle', stranger, { bundle: true });
  await assertRefused('stranger-bundle', bundle.reference, bundle, 'SIGNATURE_UNTRUSTED', /bundle signature referrer sha256:[0-9a-f]{64}: signed by a key that is not configured/);
});

test('a signature for another digest, copied next to this one: refused (SIGNATURE_DIGEST_MISMATCH)', async () => {
  const signed = await pushModel(stage, 'signed/copied', 'signed', modelFiles('copied-signed', 4096));
  signModel(signed, 'signed/copied', release);
  const victim = await pushModel(stage, 'signed/copied', 'v1', modelFiles('copied-victim'));
  // The registry holds the blobs already: the real cosign signature manifest, under the other digest's tag.
  const sig = await request(`${stage.registry.url}/v2/signed/copied/manifests/${signed.digest.replace(':', '-')}.sig`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
  const bytes = Buffer.from(await sig.body.arrayBuffer());
  await pushManifest(stage.registry, 'signed/copied', `${victim.digest.replace(':', '-')}.sig`, bytes, 'application/vnd.oci.image.manifest.v1+json');
  await assertRefused('copied', victim.reference, victim, 'SIGNATURE_DIGEST_MISMATCH', new RegExp(`signed by .*release\\.pub but for ${signed.digest}`));
});

test('a payload naming another repository: refused (SIGNATURE_REPOSITORY_MISMATCH)', async () => {
  const model = await pushModel(stage, 'signed/moved-repo', 'v1', modelFiles('moved-repo'));
  signModel(model, 'signed/moved-repo', release, { identity: `${stage.proxy.host}/signed/somewhere-else` });
  await assertRefused('moved-repo', model.reference, model, 'SIGNATURE_REPOSITORY_MISMATCH', /but for repository 127\.0\.0\.1:\d+\/signed\/somewhere-else/);
});

test('a malformed signature or bundle: refused (SIGNATURE_MALFORMED), in both forms', async () => {
  const classic = await pushModel(stage, 'signed/malformed-classic', 'v1', modelFiles('malformed-classic'));
  await pushArtifact(stage.registry, 'signed/malformed-classic', `${classic.digest.replace(':', '-')}.sig`, {
    layers: [{ bytes: '{"critical":{}}', mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json' }],
  });
  await assertRefused('malformed-classic', classic.reference, classic, 'SIGNATURE_MALFORMED', /no base64 dev\.cosignproject\.cosign\/signature annotation/);

  const bundle = await pushModel(stage, 'signed/malformed-bundle', 'v1', modelFiles('malformed-bundle'));
  const bundleType = 'application/vnd.dev.sigstore.bundle.v0.3+json';
  const config = await pushBlob(stage.registry, 'signed/malformed-bundle', '{}');
  const layer = await pushBlob(stage.registry, 'signed/malformed-bundle', 'this is not a sigstore bundle');
  const referrer = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: bundleType,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', ...config },
    layers: [{ mediaType: bundleType, ...layer }],
    subject: { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: bundle.digest, size: bundle.size },
  };
  const pushed = await pushManifest(stage.registry, 'signed/malformed-bundle', 'broken-bundle', referrer, referrer.mediaType);
  const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ mediaType: referrer.mediaType, ...pushed, artifactType: bundleType }] };
  await pushManifest(stage.registry, 'signed/malformed-bundle', bundle.digest.replace(':', '-'), index, index.mediaType);
  await assertRefused('malformed-bundle', bundle.reference, bundle, 'SIGNATURE_MALFORMED', /the bundle is not JSON/);
});

test('a tag moved to an unsigned manifest after a signed pull: refused (SIGNATURE_TAG_MOVED), naming the signed digest to pin', async () => {
  const signed = await pushModel(stage, 'signed/moving', 'v1', modelFiles('moving-signed', 4096));
  signModel(signed, 'signed/moving', release);
  const path = target(stage, 'moving');
  await publishUntilReady(stage, publishRequest(path, { reference: signed.reference, pullPolicy: 'Always' }));
  await assertMounted(path, signed);
  const moved = await pushModel(stage, 'signed/moving', 'v1', modelFiles('moving-unsigned'));
  await assertRefused('moving-again', moved.reference, moved, 'SIGNATURE_TAG_MOVED', new RegExp(`now points to ${moved.digest}.*pointed to ${signed.digest}, signed.*pin the signed digest \\(127\\.0\\.0\\.1:\\d+/signed/moving@${signed.digest}\\)`));
});

test('model-csi inspect lists the signatures found and which configured keys verify them', async () => {
  const model = await pushModel(stage, 'signed/inspected', 'v1', modelFiles('inspected', 4096));
  signModel(model, 'signed/inspected', release);
  signModel(model, 'signed/inspected', stranger, { bundle: true });
  const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, [...mainCommand(), 'inspect', model.reference, '--json', '--config', stage.configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
  assert.equal(out.code, 0, out.stderr);
  const inspection = JSON.parse(out.stdout) as { signatures: Array<{ form: string; verdict: string; verifiedBy: string[] }>; policy: string };
  assert.deepEqual(
    inspection.signatures.map((s) => [s.form, s.verdict, s.verifiedBy]),
    [
      ['classic', 'verified', [release.pub]],
      ['bundle', 'untrusted', []],
    ],
  );
  assert.match(inspection.policy, /^verify\[1\] \("\*\/signed\/\*\*"\): verified$/);
});

test('a restarted plugin mounts a verified cached model with the registry down: the result is kept in state/verified', async () => {
  const model = await pushModel(stage, 'signed/offline', 'v1', modelFiles('offline', 4096));
  signModel(model, 'signed/offline', release);
  const before = target(stage, 'offline-before');
  await publishUntilReady(stage, publishRequest(before, { reference: model.reference }));
  await assertMounted(before, model);
  await stage.restartDriver();
  await stage.proxy.down();
  try {
    const after = target(stage, 'offline-after');
    await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(after, { reference: model.reference }));
    await assertMounted(after, model);
  } finally {
    await stage.proxy.up();
  }
});

test('a cached model that a rule now covers is verified before it is mounted again; signed later, it mounts at the next retry', async () => {
  const model = await pushModel(stage, 'later/model', 'v1', modelFiles('later'));
  const before = target(stage, 'later-before');
  await publishUntilReady(stage, publishRequest(before, { reference: model.reference }));
  await assertMounted(before, model);
  await callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-later-before', target_path: before });

  await writeFile(stage.configPath, stringify({ logLevel: 'debug', verify: policy([{ match: '*/later/**', keys: [release.pub] }]) }));
  await stage.restartDriver();
  stage.proxy.reset();
  const path = target(stage, 'later-after');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference })), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.match(err.details, /^SIGNATURE_MISSING: .*later\/model:v1/);
    return true;
  });
  assert.equal(stage.proxy.totalBlobBytes(), 0);
  await assert.rejects(stat(path), { code: 'ENOENT' });
  assert.ok(existsSync(join(stage.root, 'models', 'sha256', model.digest.slice(7))), 'the model is still cached: only the policy refused it');

  signModel(model, 'later/model', release);
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference }));
  await assertMounted(path, model);
});
