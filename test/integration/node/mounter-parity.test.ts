import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { LinuxMounter } from '../../../src/mount/linux-mounter.js';
import type { Mounter } from '../../../src/mount/mounter.js';
import { FakeMounter } from '../../helpers/fake-mounter.js';

/**
 * The unit tests' FakeMounter must fail where LinuxMounter fails, with the same code: the
 * node service's error paths are tested over the fake. Each case runs on both (LinuxMounter
 * for real, as root), each in a fresh directory, and the outcomes are compared.
 */
let work: string;
let linux: LinuxMounter;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'model-csi-parity-'));
  linux = await LinuxMounter.open(join(work, 'staging'));
});
after(async () => {
  for (const mount of (await linux.listMounts()).filter((m) => m.mountPoint.startsWith(work)).reverse()) await linux.unmount(mount.mountPoint);
  await rm(work, { recursive: true, force: true });
});

interface Place {
  dir: string;
  model: string;
  file: string;
  target: string;
  fileTarget: string;
}

const cases: Array<[string, (m: Mounter, p: Place) => Promise<void>]> = [
  ['a directory onto a directory', (m, p) => m.bindReadOnly(p.model, p.target)],
  ['a file onto a file', (m, p) => m.bindReadOnly(p.file, p.fileTarget)],
  ['a target that does not exist', (m, p) => m.bindReadOnly(p.model, join(p.dir, 'missing'))],
  ['a source that does not exist', (m, p) => m.bindReadOnly(join(p.dir, 'no-model'), p.target)],
  ['a directory onto a file', (m, p) => m.bindReadOnly(p.model, p.fileTarget)],
  ['a file onto a directory', (m, p) => m.bindReadOnly(p.file, p.target)],
  ['a second mount stacked on a mounted target', async (m, p) => {
    await m.bindReadOnly(p.model, p.target);
    await m.bindReadOnly(p.model, p.target);
  }],
  ['unmounting a target that is not mounted', (m, p) => m.unmount(p.target)],
  ['unmounting a target that does not exist', (m, p) => m.unmount(join(p.dir, 'missing'))],
];

async function place(name: string): Promise<Place> {
  const dir = join(work, name);
  const p: Place = { dir, model: join(dir, 'model'), file: join(dir, 'model', 'weights.bin'), target: join(dir, 'target'), fileTarget: join(dir, 'file-target') };
  await mkdir(p.model, { recursive: true });
  await writeFile(p.file, 'weights');
  await mkdir(p.target);
  await writeFile(p.fileTarget, '');
  return p;
}

async function outcome(run: () => Promise<void>): Promise<string> {
  try {
    await run();
    return 'ok';
  } catch (err) {
    return isDriverError(err) ? err.code : `not a DriverError: ${String(err)}`;
  }
}

test('FakeMounter fails with the same codes as LinuxMounter, case by case', async () => {
  const fake = new FakeMounter();
  const compared: Array<{ name: string; linux: string; fake: string }> = [];
  for (const [index, [name, run]] of cases.entries()) {
    const onLinux = await place(`linux-${index}`);
    const onFake = await place(`fake-${index}`);
    compared.push({ name, linux: await outcome(() => run(linux, onLinux)), fake: await outcome(() => run(fake, onFake)) });
  }
  // The real outcomes first: the cases must exercise LinuxMounter's failures, not only its successes.
  assert.deepEqual(compared.map((c) => `${c.name}: ${c.linux}`), [
    'a directory onto a directory: ok',
    'a file onto a file: ok',
    'a target that does not exist: MOUNT_FAILED',
    'a source that does not exist: MOUNT_FAILED',
    'a directory onto a file: MOUNT_FAILED',
    'a file onto a directory: MOUNT_FAILED',
    'a second mount stacked on a mounted target: MOUNT_FAILED',
    'unmounting a target that is not mounted: ok',
    'unmounting a target that does not exist: ok',
  ]);
  assert.deepEqual(compared.map((c) => `${c.name}: ${c.fake}`), compared.map((c) => `${c.name}: ${c.linux}`));
});
