import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pushModelPack } from '../../helpers/artifacts.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';

// A real full filesystem: the cache root is a 4 MiB tmpfs (needs root).
let registry: TestRegistry;
let work: string;
let root: string;
before(async () => {
  assert.equal(process.getuid?.(), 0, 'this test mounts a tmpfs: run as root');
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'model-csi-full-'));
  root = join(work, 'root');
  await mkdir(root);
  execFileSync('/bin/mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', root]);
});
after(async () => {
  execFileSync('/bin/umount', [root]);
  await rm(work, { recursive: true, force: true });
  await registry.stop();
});

test('a pull that fills the cache filesystem is NO_SPACE at once (no registry retries) and leaves no model', { timeout: 60_000 }, async () => {
  await pushModelPack(registry, 'full/model', 'v1', [{ path: 'w.safetensors', content: Buffer.alloc(12 * 2 ** 20, 7), format: 'raw' }]);
  const started = Date.now();
  const { code, stderr } = await new Promise<{ code: number; stderr: string }>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'pull', `${registry.host}/full/model:v1`, '--root', root], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (chunk) => (err += chunk));
    child.on('error', reject);
    child.on('exit', (exit) => resolve({ code: exit ?? -1, stderr: err }));
  });
  assert.equal(code, 1);
  assert.match(stderr, /model-csi pull: NO_SPACE: pulling 127\.0\.0\.1:\d+\/full\/model:v1\b.*the cache filesystem ran out of space \(ENOSPC/);
  assert.ok(Date.now() - started < 15_000, 'a full disk must not be retried like a flaky registry');
  assert.deepEqual(await readdir(join(root, 'models', 'sha256')).catch(() => []), []);
  assert.deepEqual(await readdir(join(root, 'tmp')), []);
});
