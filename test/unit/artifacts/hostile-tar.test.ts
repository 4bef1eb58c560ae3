import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { createPathFilter } from '../../../src/artifacts/selection.js';
import { checkSymlinksInside } from '../../../src/artifacts/unpack/symlink-check.js';
import { defaultTarLimits, extractTarLayer, type TarLimits } from '../../../src/artifacts/unpack/tar-extractor.js';
import { ContentStore } from '../../../src/store/content-store.js';
import { ModelStore } from '../../../src/store/model-store.js';
import { buildTar, gzip, hostileCases, type TarEntrySpec } from '../../helpers/hostile-tar.js';

let base: string;
let outside: string;
let models: ModelStore;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'model-csi-hostile-'));
  outside = join(base, 'outside');
  await mkdir(outside);
  await writeFile(join(outside, 'target'), 'a file a hardlink would like to share');
  const cache = join(base, 'cache');
  models = await ModelStore.open(cache, { content: await ContentStore.open(cache) });
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** What the puller does with a tar layer: unpack into a temp dir, check, discard on failure. */
async function unpack(entries: TarEntrySpec[], options: { imageLayer?: boolean; limits?: TarLimits; gzipped?: boolean } = {}): Promise<string> {
  const bytes = options.gzipped ? gzip(await buildTar(entries)) : await buildTar(entries);
  const blobPath = join(base, 'layer.tar');
  await writeFile(blobPath, bytes);
  const temp = await models.createTemp();
  try {
    await extractTarLayer({
      blobPath,
      format: options.gzipped ? 'tar+gzip' : 'tar',
      root: temp,
      filter: createPathFilter([], []),
      where: 'layer sha256:test of test/hostile:v1',
      limits: options.limits ?? defaultTarLimits(bytes.length, 'tar'),
      imageLayer: options.imageLayer ?? false,
    });
    await checkSymlinksInside(temp, 'test/hostile:v1');
    return temp;
  } catch (err) {
    await models.discardTemp(temp);
    throw err;
  }
}

async function assertNothingLeaked(): Promise<void> {
  assert.deepEqual((await readdir(outside)).sort(), ['target'], 'nothing may be written outside the model dir');
  assert.deepEqual(await readdir(models.tmpDir), [], 'the partial model must be removed');
  assert.deepEqual(await readdir(join(models.modelsDir, 'sha256')), [], 'no model may become visible');
}

describe('hostile tar layers are refused and write nothing outside the temp dir', () => {
  // temp dir is <base>/cache/tmp/<x>: three levels below <base>, where `outside` lives.
  // Names only; the entries are built per test once `outside` exists.
  for (const name of Object.keys(hostileCases('/placeholder', '../'))) {
    test(name, async () => {
      const { entries, code } = hostileCases(outside, '../../../')[name]!;
      await assert.rejects(unpack(entries), (err: unknown) => {
        assert.ok(isDriverError(err), `expected a DriverError, got ${String(err)}`);
        assert.equal(err.code, code, err.message);
        assert.match(err.message, /test\/hostile:v1/, 'the message names the artifact');
        return true;
      });
      await assertNothingLeaked();
    });
  }

  test('symlinks that each stay inside but escape when followed together', async () => {
    await assert.rejects(
      unpack([
        { name: 'd/', type: 'directory' },
        { name: 'd/up', type: 'symlink', linkname: '..' },
        { name: 'escape', type: 'symlink', linkname: 'd/up/..' },
      ]),
      (err: unknown) => isDriverError(err, 'UNSAFE_PATH'),
    );
    await assertNothingLeaked();
  });

  test('a whiteout in an image layer is refused (lower layers would be edited)', async () => {
    await assert.rejects(unpack([{ name: 'model/.wh.old.bin', content: '' }], { imageLayer: true }), (err: unknown) => isDriverError(err, 'UNSAFE_ENTRY'));
    await assertNothingLeaked();
  });

  test('an entry-count cap stops inode floods', async () => {
    const entries = Array.from({ length: 5 }, (_, i) => ({ name: `f${i}`, content: 'x' }));
    await assert.rejects(unpack(entries, { limits: { maxEntries: 3, maxBytes: 1 << 20 } }), (err: unknown) => isDriverError(err, 'UNSAFE_ENTRY'));
    await assertNothingLeaked();
  });

  test('an unpacked-size cap stops decompression bombs', async () => {
    const bomb = [{ name: 'zeros', content: Buffer.alloc(4 << 20) }];
    await assert.rejects(unpack(bomb, { gzipped: true, limits: { maxEntries: 10, maxBytes: 1 << 20 } }), (err: unknown) => isDriverError(err, 'UNSAFE_ENTRY'));
    await assertNothingLeaked();
  });

  test('a corrupt archive is a clear error, not a crash', async () => {
    const blobPath = join(base, 'garbage.tar.gz');
    await writeFile(blobPath, Buffer.from('not gzip at all'));
    const temp = await models.createTemp();
    await assert.rejects(
      extractTarLayer({ blobPath, format: 'tar+gzip', root: temp, filter: () => true, where: 'layer x of test/hostile:v1', limits: defaultTarLimits(15, 'tar+gzip'), imageLayer: false }),
      (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE') && /test\/hostile:v1/.test(err.message),
    );
    await models.discardTemp(temp);
  });
});
