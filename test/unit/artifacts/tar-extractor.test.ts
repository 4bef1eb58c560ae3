import assert from 'node:assert/strict';
import { lstat, mkdtemp, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPathFilter } from '../../../src/artifacts/selection.js';
import { defaultTarLimits, extractTarLayer } from '../../../src/artifacts/unpack/tar-extractor.js';
import type { LayerFormat } from '../../../src/artifacts/media-types.js';
import { ContentStore } from '../../../src/store/content-store.js';
import { ModelStore } from '../../../src/store/model-store.js';
import { buildTar, gzip, zstd, type TarEntrySpec } from '../../helpers/hostile-tar.js';

let base: string;
let models: ModelStore;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-tar-'));
  models = await ModelStore.open(join(base, 'cache'), { content: await ContentStore.open(join(base, 'cache')) });
});
after(async () => rm(base, { recursive: true, force: true }));

const MODEL: TarEntrySpec[] = [
  { name: './model/', type: 'directory' },
  { name: './model/config.json', content: '{"hidden_size":8}' },
  { name: './model/weights.safetensors', content: Buffer.alloc(300_000, 7) },
  { name: './model/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755, mtime: new Date('2023-05-06T07:08:09Z') },
  { name: './model/latest', type: 'symlink', linkname: 'weights.safetensors' },
  { name: './model/weights.hardlink', type: 'link', linkname: './model/weights.safetensors' },
];

async function unpack(format: LayerFormat, include: string[] = [], exclude: string[] = []): Promise<{ temp: string; files: number }> {
  const raw = await buildTar(MODEL);
  const bytes = format === 'tar+gzip' ? gzip(raw) : format === 'tar+zstd' ? zstd(raw) : raw;
  const blobPath = join(base, `layer-${format}`);
  await writeFile(blobPath, bytes);
  const temp = await models.createTemp();
  const result = await extractTarLayer({
    blobPath,
    format,
    root: temp,
    filter: createPathFilter(include, exclude),
    where: 'test layer',
    limits: defaultTarLimits(bytes.length, format),
    imageLayer: false,
    share: (path, hex, mode) => models.shareFile(path, hex, mode),
  });
  return { temp, files: result.files };
}

describe('tar layers unpack', () => {
  for (const format of ['tar', 'tar+gzip', 'tar+zstd'] as const) {
    test(`${format}: files, modes, mtime, symlink and hardlink as the archive says`, async () => {
      const { temp, files } = await unpack(format);
      assert.equal(files, 5);
      assert.equal(await readFile(join(temp, 'model/config.json'), 'utf8'), '{"hidden_size":8}');
      assert.deepEqual(await readFile(join(temp, 'model/weights.safetensors')), Buffer.alloc(300_000, 7));
      const script = await stat(join(temp, 'model/run.sh'));
      assert.equal(script.mode & 0o7777, 0o555, 'exec bit kept, write bits dropped');
      assert.equal(script.mtime.toISOString(), '2023-05-06T07:08:09.000Z');
      assert.equal((await stat(join(temp, 'model/config.json'))).mode & 0o7777, 0o444);
      assert.equal(await readlink(join(temp, 'model/latest')), 'weights.safetensors');
      assert.equal((await stat(join(temp, 'model/weights.hardlink'))).ino, (await stat(join(temp, 'model/weights.safetensors'))).ino);
      await models.discardTemp(temp);
    });
  }

  test('include/exclude write only the selected entries', async () => {
    const { temp, files } = await unpack('tar', ['*.json', '*.sh'], ['run.sh']);
    assert.equal(files, 1);
    assert.equal(await readFile(join(temp, 'model/config.json'), 'utf8'), '{"hidden_size":8}');
    await assert.rejects(lstat(join(temp, 'model/weights.safetensors')), { code: 'ENOENT' });
    await assert.rejects(lstat(join(temp, 'model/run.sh')), { code: 'ENOENT' });
    await models.discardTemp(temp);
  });

  test('a file identical across two models is stored once (hardlinked through files/)', async () => {
    const first = await unpack('tar');
    const second = await unpack('tar+gzip');
    const a = await stat(join(first.temp, 'model/weights.safetensors'));
    const b = await stat(join(second.temp, 'model/weights.safetensors'));
    assert.equal(a.ino, b.ino, 'same inode in both models');
    await models.discardTemp(first.temp);
    await models.discardTemp(second.temp);
  });
});
