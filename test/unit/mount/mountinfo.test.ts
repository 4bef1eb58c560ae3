import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseMountInfo, topMountAt, unescapeMountPath } from '../../../src/mount/mountinfo.js';

const SAMPLE = [
  '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro',
  '36 22 8:1 /var/lib/model-csi/models/sha256/ab /var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/model/mount ro,nosuid,nodev,relatime shared:1 - ext4 /dev/sda1 rw',
  '37 22 0:45 / /mnt/with\\040space\\134and\\011tab rw,nosuid master:3 - tmpfs tmp\\040fs rw,size=1024k',
  '38 37 0:46 /x /mnt/stacked ro - tmpfs tmpfs rw',
  '39 37 0:47 /y /mnt/stacked rw,nosuid,nodev - tmpfs tmpfs rw',
  '',
].join('\n');

test('fields, optional fields and the separator are parsed', () => {
  const mounts = parseMountInfo(SAMPLE);
  assert.equal(mounts.length, 5);
  const model = mounts[1]!;
  assert.equal(model.id, 36);
  assert.equal(model.parentId, 22);
  assert.equal(model.device, '8:1');
  assert.equal(model.root, '/var/lib/model-csi/models/sha256/ab');
  assert.equal(model.mountPoint, '/var/lib/kubelet/pods/p/volumes/kubernetes.io~csi/model/mount');
  assert.deepEqual(model.options, ['ro', 'nosuid', 'nodev', 'relatime']);
  assert.equal(model.fsType, 'ext4');
  assert.equal(model.source, '/dev/sda1');
  assert.deepEqual(mounts[0]!.superOptions, ['rw', 'errors=remount-ro']);
});

test('octal escapes in paths are decoded', () => {
  const mount = parseMountInfo(SAMPLE)[2]!;
  assert.equal(mount.mountPoint, '/mnt/with space\\and\ttab');
  assert.equal(mount.source, 'tmp fs');
  assert.equal(unescapeMountPath('a\\012b'), 'a\nb');
});

test('the topmost of stacked mounts is found', () => {
  assert.equal(topMountAt(parseMountInfo(SAMPLE), '/mnt/stacked')?.id, 39);
  assert.equal(topMountAt(parseMountInfo(SAMPLE), '/nowhere'), undefined);
});

test('a line without the separator is an error, not a silent skip', () => {
  assert.throws(() => parseMountInfo('1 2 3:4 / /x rw\n'), /malformed mountinfo line/);
});
