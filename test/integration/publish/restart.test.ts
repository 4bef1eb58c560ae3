/**
 * Restart and reboot of the node plugin, against real processes: SIGKILL mid-pull resumes the
 * download from `<root>/ingest` with a Range request; a volume published before a SIGKILL is
 * still served, known again (idempotent re-publish, unpublish); after a "reboot" (mounts gone,
 * cache on disk, registry down) a cached model mounts without any registry.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { readMountInfo } from '../../../src/mount/mountinfo.js';
import { PieceMap } from '../../../src/store/piece-map.js';
import { RANGED_PIECE_BYTES } from '../../../src/store/ranged-download.js';
import { recordsDir } from '../../../src/node/volume-records.js';
import { callCsi } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, unmountUnder, type Stage } from './fixture.js';

const MiB = 1024 * 1024;

let stage: Stage;

before(async () => {
  // Ranged pulls from 32 MiB: the 24 MiB weight below is one stream, the 64 MiB one is pieces.
  stage = await startStage({ config: { publishWaitSeconds: 1, rangedMinBlobSize: '32Mi' } });
});
after(() => stage.close());

type Pushed = Awaited<ReturnType<typeof pushModel>>;

async function assertMountedBytes(path: string, model: Pushed): Promise<void> {
  for (const [file, bytes] of Object.entries(model.expected)) assert.ok((await readFile(join(path, file))).equals(bytes), `${file} differs at ${path}`);
}

async function mountsAt(path: string): Promise<number> {
  return (await readMountInfo()).filter((m) => m.mountPoint === path).length;
}

async function until(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('SIGKILL mid-pull: the retried publish after the restart resumes the blob with Range from <root>/ingest', async () => {
  const size = 24 * MiB;
  const model = await pushModel(stage, 'models/killed', 'v1', modelFiles('killed', size));
  const weight = (model.manifest.layers as Array<{ digest: string; size: number }>).find((l) => l.size === size)!.digest;
  stage.proxy.reset();
  stage.proxy.rate = 4 * MiB;
  const path = target(stage, 'killed');
  const request = publishRequest(path, { reference: model.reference });
  const ingestSize = () => stat(join(stage.root, 'ingest', weight.slice('sha256:'.length))).then((info) => info.size, () => 0);
  try {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', request), { code: status.UNAVAILABLE });
    await until('8 MiB of the weight are on disk', async () => (await ingestSize()) >= 8 * MiB);
    await stage.restartDriver(true);
  } finally {
    stage.proxy.rate = 0;
  }
  const proxied = stage.proxy.blobBytes.get(weight) ?? 0;
  const partial = await ingestSize();
  assert.ok(partial >= 8 * MiB && partial < size, `the killed driver left ${partial} bytes of ${size} in ingest/`);

  stage.proxy.reset();
  await publishUntilReady(stage, request, { timeoutMs: 30_000 });
  await assertMountedBytes(path, model);

  const refetched = stage.proxy.blobBytes.get(weight) ?? 0;
  const ranges = stage.proxy.blobRequests.filter((r) => r.digest === weight).map((r) => r.range);
  assert.deepEqual(ranges, [`bytes=${partial}-`], 'one ranged GET from the bytes on disk');
  assert.equal(refetched, size - partial, `after the restart ${refetched} bytes of the ${size}-byte weight were fetched, ${partial} were already on disk`);
  assert.ok(refetched < size * 0.7, `re-fetched ${refetched} of ${size} bytes`);
  assert.deepEqual((await readdir(join(stage.root, 'ingest'))).filter((name) => weight.endsWith(name)), [], 'the finished blob left ingest/');
  console.log(`SIGKILL mid-pull: ${proxied} bytes sent before the kill, ${partial} of ${size} on disk; ${refetched} fetched after the restart`);
});

test('SIGKILL mid ranged pull: after the restart every completed piece is kept, not only a prefix', async () => {
  const size = 64 * MiB; // 8 pieces
  const model = await pushModel(stage, 'models/killed-ranged', 'v1', modelFiles('killed-ranged', size));
  const weight = (model.manifest.layers as Array<{ digest: string; size: number }>).find((l) => l.size === size)!.digest;
  const ingest = join(stage.root, 'ingest', weight.slice('sha256:'.length));
  const kept = async (): Promise<number[]> => {
    const map = await PieceMap.load(PieceMap.pathFor(ingest), size, RANGED_PIECE_BYTES);
    return map === undefined ? [] : Array.from({ length: map.count }, (_, i) => i).filter((i) => map.isDone(i));
  };
  stage.proxy.reset();
  stage.proxy.rate = 8 * MiB;
  const path = target(stage, 'killed-ranged');
  const request = publishRequest(path, { reference: model.reference });
  let before: number[];
  try {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', request), { code: status.UNAVAILABLE });
    await until('three pieces are recorded in the piece map', async () => (await kept()).length >= 3, 30_000);
    await stage.restartDriver(true);
    before = await kept();
  } finally {
    stage.proxy.rate = 0;
  }
  // What the killed driver had in flight ends on its closed sockets: let it end before counting.
  await until("the killed driver's last connection is closed", () => stage.proxy.openBlobBodies === 0);
  assert.ok(before.length >= 3 && before.length < 8, `the killed driver recorded pieces ${before.join(', ')} of 8`);

  stage.proxy.reset();
  await publishUntilReady(stage, request, { timeoutMs: 30_000 });
  await assertMountedBytes(path, model);
  // The pieces each request after the restart covered (one piece, or a span of several).
  const asked = stage.proxy.blobRequests
    .filter((r) => r.digest === weight)
    .flatMap((r) => {
      const m = /^bytes=(\d+)-(\d*)$/.exec(r.range ?? '')!;
      const first = Number(m[1]) / RANGED_PIECE_BYTES;
      const end = m[2] === '' ? size : Number(m[2]) + 1;
      return Array.from({ length: Math.ceil(end / RANGED_PIECE_BYTES) - first }, (_, i) => first + i);
    });
  assert.deepEqual(asked.filter((piece) => before.includes(piece)), [], `kept pieces ${before.join(', ')} were not fetched again (asked: ${asked.join(', ')})`);
  const missing = [0, 1, 2, 3, 4, 5, 6, 7].filter((piece) => !before.includes(piece));
  // A span whose tail another connection took overlaps that request (it was cut there), so
  // pieces are counted once per request start, and as a set.
  const starts = stage.proxy.blobRequests.filter((r) => r.digest === weight).map((r) => Number(/^bytes=(\d+)-/.exec(r.range ?? '')![1]));
  assert.equal(new Set(starts).size, starts.length, `no piece asked for twice (starts: ${starts.join(', ')})`);
  assert.deepEqual([...new Set(asked)].sort(), missing, 'each missing piece fetched, and nothing else');
  assert.deepEqual((await readdir(join(stage.root, 'ingest'))).filter((name) => name.startsWith(weight.slice('sha256:'.length))), [], 'the blob and its piece map left ingest/');
  console.log(`SIGKILL mid ranged pull: pieces ${before.join(', ')} of 8 kept; ${asked.length} pieces fetched after the restart`);
});

test('a volume published before a SIGKILL restart is still served, known again, re-published idempotently and unpublished', async () => {
  const model = await pushModel(stage, 'models/kept', 'v1', modelFiles('kept'));
  const path = target(stage, 'kept');
  const request = publishRequest(path, { reference: model.reference });
  await publishUntilReady(stage, request);
  assert.equal(await mountsAt(path), 1);

  await stage.restartDriver(true);
  await assertMountedBytes(path, model);

  // Known again: the record came back, so another volume id at this target is refused...
  await assert.rejects(callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-someone-else', target_path: path }), { code: status.NOT_FOUND });
  assert.equal(await mountsAt(path), 1, 'a mismatched unpublish unmounted nothing');
  // ...and the identical publish is OK without stacking a second mount.
  stage.proxy.reset();
  await callCsi(stage.clients.node, 'NodePublishVolume', request);
  await callCsi(stage.clients.node, 'NodePublishVolume', request);
  assert.equal(await mountsAt(path), 1, 'no stacked mount after repeated publishes');
  assert.equal(stage.proxy.totalBlobBytes() + stage.proxy.manifestGets, 0, 'the re-publish downloaded nothing');
  const stats = await callCsi(stage.clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-kept', volume_path: path });
  assert.equal(stats.volume_condition?.abnormal ?? false, false);

  await callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: 'vol-kept', target_path: path });
  assert.equal(await mountsAt(path), 0);
  await assert.rejects(stat(path), { code: 'ENOENT' }, 'the target is removed');
  const records = await Promise.all((await readdir(recordsDir(stage.root))).map(async (name) => JSON.parse(await readFile(join(recordsDir(stage.root), name), 'utf8')) as { targetPath: string }));
  assert.deepEqual(records.filter((r) => r.targetPath === path), [], 'the volume record is gone');
});

test('reboot: mounts gone, cache on disk, registry down: a publish of the cached model by tag mounts without any registry', async () => {
  const model = await pushModel(stage, 'models/reboot', 'v1', modelFiles('reboot'));
  const before = target(stage, 'reboot-a');
  await publishUntilReady(stage, publishRequest(before, { reference: model.reference }));

  await stage.stopDriver();
  await unmountUnder(stage.work); // the node rebooted: no mount survives
  assert.equal(await mountsAt(before), 0);
  await stage.registry.stop();
  await stage.restartDriver();
  stage.proxy.reset();

  const after = target(stage, 'reboot-b');
  for (const path of [before, after]) {
    // One call each, no retry: a cached model mounts at once.
    await callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(path, { reference: model.reference }));
    await assertMountedBytes(path, model);
    assert.equal(await mountsAt(path), 1);
  }
  assert.equal(stage.proxy.manifestGets, 0, 'no manifest request');
  assert.equal(stage.proxy.blobGets.size, 0, 'no blob request');
});
