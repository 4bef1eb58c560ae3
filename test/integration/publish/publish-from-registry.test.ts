import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { readMountInfo, topMountAt } from '../../../src/mount/mountinfo.js';
import { callCsi } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

let stage: Stage;
let model: Awaited<ReturnType<typeof pushModel>>;

before(async () => {
  stage = await startStage();
  model = await pushModel(stage, 'models/tiny', 'v1', modelFiles('tiny'));
});
after(() => stage.close());

async function filesUnder(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix + entry.name;
    if (entry.isDirectory()) out.push(...(await filesUnder(join(dir, entry.name), `${rel}/`)));
    else out.push(rel);
  }
  return out.sort();
}

test('publish of a tag pulls from the registry and mounts the model read-only, byte for byte', async () => {
  const path = target(stage, 'basic');
  await publishUntilReady(stage, publishRequest(path, { reference: model.reference }));
  assert.deepEqual(await filesUnder(path), Object.keys(model.expected).sort());
  for (const [file, bytes] of Object.entries(model.expected)) assert.ok((await readFile(join(path, file))).equals(bytes), `${file} differs`);
  const mount = topMountAt(await readMountInfo(), path);
  assert.ok(mount && ['ro', 'nosuid', 'nodev'].every((o) => mount.options.includes(o)), `mount options: ${mount?.options}`);
  await assert.rejects(writeFile(join(path, 'model.safetensors'), 'x'), { code: 'EROFS' });

  const stats = await callCsi(stage.clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-basic', volume_path: path });
  const bytes = stats.usage.find((u: { unit: string }) => u.unit === 'BYTES');
  const payload = Object.values(model.expected).reduce((sum, b) => sum + b.length, 0);
  assert.ok(Number(bytes.used) >= payload, `stats report ${bytes.used} bytes used, the model holds ${payload}`);
  assert.equal(stats.volume_condition?.abnormal ?? false, false);
});

test('a second volume of the same model is served from the cache without a download', async () => {
  stage.proxy.reset();
  const path = target(stage, 'second');
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference }));
  assert.equal(stage.proxy.totalBlobBytes(), 0, 'no blob bytes for a cached model');
  assert.equal(stage.proxy.manifestGets, 0, 'IfNotPresent reuses the cached tag without asking the registry');
  assert.ok((await readFile(join(path, 'config.json'))).equals(model.expected['config.json']!));
});

test('pullPolicy Always re-resolves the tag and follows it to a new digest', async () => {
  const v2 = await pushModel(stage, 'models/tiny', 'v1', modelFiles('tiny-v2'));
  const cached = target(stage, 'still-v1');
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(cached, { reference: model.reference }));
  assert.ok((await readFile(join(cached, 'config.json'))).equals(model.expected['config.json']!), 'IfNotPresent keeps the cached digest');
  const always = target(stage, 'always');
  await publishUntilReady(stage, publishRequest(always, { reference: model.reference, pullPolicy: 'Always' }));
  assert.ok((await readFile(join(always, 'config.json'))).equals(v2.expected['config.json']!), 'Always mounts what the tag points to now');
});

test('subPath mounts only that directory of the model', async () => {
  const path = target(stage, 'subpath');
  await publishUntilReady(stage, publishRequest(path, { reference: `${stage.proxy.host}/models/tiny@${model.digest}`, subPath: 'tokenizer' }));
  assert.deepEqual(await filesUnder(path), ['tokenizer.json']);
  const missing = target(stage, 'subpath-missing');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(missing, { reference: `${stage.proxy.host}/models/tiny@${model.digest}`, subPath: 'nope' })), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.match(err.details, /nope/);
    return true;
  });
  await assert.rejects(stat(missing), { code: 'ENOENT' }, 'a failed publish leaves no target behind');
});

test('include/exclude fetch only the matching files', async () => {
  const partial = await pushModel(stage, 'models/partial', 'v1', modelFiles('partial', 2 * 1024 * 1024));
  stage.proxy.reset();
  const path = target(stage, 'partial');
  await publishUntilReady(stage, publishRequest(path, { reference: partial.reference, include: '*.json,tokenizer/**', exclude: 'docs/**' }));
  assert.deepEqual(await filesUnder(path), ['config.json', 'tokenizer/tokenizer.json']);
  assert.ok(stage.proxy.totalBlobBytes() < 64 * 1024, `the 2 MiB weight must not be fetched; fetched ${stage.proxy.totalBlobBytes()} bytes`);
});

test('a missing tag is NOT_FOUND naming the tag, and leaves nothing behind', async () => {
  const path = target(stage, 'missing');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: `${stage.proxy.host}/models/tiny:v404` })), (err: { code: number; details: string }) => {
    assert.equal(err.code, status.NOT_FOUND);
    assert.match(err.details, /v404/);
    return true;
  });
  await assert.rejects(stat(path), { code: 'ENOENT' });
});

test('bad attributes are INVALID_ARGUMENT before anything is fetched', async () => {
  stage.proxy.reset();
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ reference: 'UPPER/Case:tag' }, /reference/i],
    [{ reference: model.reference, pullPolicy: 'Sometimes' }, /pullPolicy/],
    [{ reference: model.reference, subPath: '../etc' }, /subPath/],
    [{ reference: model.reference, refrence: 'typo' }, /refrence/],
  ];
  for (const [attributes, pattern] of cases) {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(target(stage, 'bad'), attributes)), (err: { code: number; details: string }) => {
      assert.equal(err.code, status.INVALID_ARGUMENT, JSON.stringify(attributes));
      assert.match(err.details, pattern);
      return true;
    });
  }
  assert.equal(stage.proxy.manifestGets + stage.proxy.totalBlobBytes(), 0);
});

test('NodeGetVolumeStats marks a volume abnormal when its mount disappeared', async () => {
  const path = target(stage, 'vanishing');
  await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference }));
  execFileSync('/bin/umount', [path]); // e.g. an operator or a crashed runtime took it away
  const stats = await callCsi(stage.clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-vanishing', volume_path: path });
  assert.equal(stats.volume_condition?.abnormal, true);
  assert.match(stats.volume_condition?.message ?? '', /mount/i);
  await callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-vanishing', target_path: path });
  await assert.rejects(stat(path), { code: 'ENOENT' });
});
