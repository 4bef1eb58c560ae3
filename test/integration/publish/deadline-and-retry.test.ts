/**
 * "Pulls outlive the RPC", against real processes: a throttled registry makes a pull last
 * longer than the driver's publish wait (`publishWaitSeconds: 1`) and longer than a caller's
 * gRPC deadline. The publish answers UNAVAILABLE with the pull's progress, the pull keeps
 * going without any RPC, and kubelet-style retries join that one pull (each blob GET once).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { callCsi } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

const MiB = 1024 * 1024;
const WEIGHT = 8 * MiB;
const RATE = 2 * MiB; // 8 MiB at 2 MiB/s: ~4 s of pull against a 1 s publish wait

let stage: Stage;

before(async () => {
  stage = await startStage({ config: { publishWaitSeconds: 1 } });
});
after(() => stage.close());

type Pushed = Awaited<ReturnType<typeof pushModel>>;

function weightDigest(model: Pushed): string {
  const layer = model.manifest.layers.find((l: { size: number }) => l.size >= WEIGHT);
  assert.ok(layer, 'the model has its 8 MiB weight layer');
  return layer.digest;
}

async function assertMountedBytes(path: string, model: Pushed): Promise<void> {
  for (const [file, bytes] of Object.entries(model.expected)) assert.ok((await readFile(join(path, file))).equals(bytes), `${file} differs`);
}

/** Every blob of the model crossed the proxy in exactly one GET, and the weight exactly once in bytes. */
function assertFetchedOnce(model: Pushed): void {
  for (const layer of model.manifest.layers as Array<{ digest: string; size: number }>) {
    assert.ok((stage.proxy.blobGets.get(layer.digest) ?? 0) <= 1, `blob ${layer.digest} was fetched ${stage.proxy.blobGets.get(layer.digest)} times`);
  }
  const weight = weightDigest(model);
  assert.equal(stage.proxy.blobGets.get(weight), 1, 'the weight was fetched in one GET');
  assert.equal(stage.proxy.blobBytes.get(weight), WEIGHT, 'the weight crossed the wire exactly once');
}

test('a publish that outlasts publishWaitSeconds answers UNAVAILABLE with progress; retries join the one pull and mount', async () => {
  const model = await pushModel(stage, 'models/slow', 'v1', modelFiles('slow', WEIGHT));
  stage.proxy.reset();
  stage.proxy.rate = RATE;
  const path = target(stage, 'slow');
  const request = publishRequest(path, { reference: model.reference });

  const started = Date.now();
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', request, 30_000), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.UNAVAILABLE, err.details);
    assert.match(err.details, /pulling .*: .* of .* \(\d+ percent\)/);
    assert.ok(err.details.includes(model.reference), `the message names the reference: ${err.details}`);
    return true;
  });
  const waited = Date.now() - started;
  assert.ok(waited >= 900 && waited < 5_000, `the publish waited ${waited} ms; publishWaitSeconds is 1`);

  const messages: string[] = [];
  await publishUntilReady(stage, request, { timeoutMs: 30_000, messages });
  assert.ok(messages.length >= 2, `kubelet-style retries saw the pull in progress (${messages.length} retries)`);
  const percents = messages.map((m) => Number(/\((\d+) percent\)/.exec(m)?.[1] ?? NaN));
  assert.ok(percents.every((p) => Number.isFinite(p)), `every retry shows progress: ${messages.join(' | ')}`);
  assert.ok(percents.every((p, i) => i === 0 || p >= percents[i - 1]!), `progress never goes back: ${percents.join(', ')}`);
  assert.ok(percents.at(-1)! > percents[0]!, `progress advances between retries: ${percents.join(', ')}`);

  await assertMountedBytes(path, model);
  assertFetchedOnce(model);
});

test('a call whose gRPC deadline expires does not cancel the pull it started', async () => {
  const model = await pushModel(stage, 'models/deadline', 'v1', modelFiles('deadline', WEIGHT));
  const weight = weightDigest(model);
  stage.proxy.reset();
  stage.proxy.rate = RATE;
  // The tag lookup outlasts the caller's 300 ms deadline, so the call is cut while the
  // driver is still working on it; the driver starts the pull after the caller is gone.
  stage.proxy.manifestDelayMs = 600;
  const path = target(stage, 'deadline');
  const request = publishRequest(path, { reference: model.reference });
  try {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', request, 300), (err: { code: number; details: string }) => {
      assert.equal(err.code, status.DEADLINE_EXCEEDED, err.details);
      return true;
    });
    // No RPC is open from here on: the bytes must still flow.
    const deadline = Date.now() + 10_000;
    while ((stage.proxy.blobBytes.get(weight) ?? 0) === 0) {
      assert.ok(Date.now() < deadline, 'the pull started by the expired call never fetched the weight');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    stage.proxy.manifestDelayMs = 0;
  }
  const first = stage.proxy.blobBytes.get(weight) ?? 0;
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const second = stage.proxy.blobBytes.get(weight) ?? 0;
  assert.ok(second - first >= RATE / 2, `with no call open the pull went on: ${first} → ${second} bytes in 1 s`);
  assert.equal(stage.proxy.blobGets.get(weight), 1);

  const messages: string[] = [];
  await publishUntilReady(stage, request, { timeoutMs: 30_000, messages });
  assert.ok(messages.length >= 1, 'the retry found the pull still running and joined it');
  assert.ok(messages.every((m) => /pulling .*: .* of .* \(\d+ percent\)/.test(m)), messages.join(' | '));
  await assertMountedBytes(path, model);
  assertFetchedOnce(model);
});
