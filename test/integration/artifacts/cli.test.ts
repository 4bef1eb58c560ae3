import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pushModelPack } from '../../helpers/artifacts.js';
import { mainCommand } from '../../helpers/driver-process.js';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';

let registry: TestRegistry;
let work: string;
before(async () => {
  registry = await startRegistry();
  work = await mkdtemp(join(tmpdir(), 'model-csi-cli-'));
});
after(async () => {
  await registry.stop();
  await rm(work, { recursive: true, force: true });
});

/** `model-csi ARGS` as a child process, off a terminal (so: JSON output); the build with MODEL_CSI_TEST_DIST=1. */
function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...mainCommand(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk) => (stdout += chunk));
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

test('model-csi inspect, pull, cache ls and cache gc against a real registry', { timeout: 60_000 }, async () => {
  const pushed = await pushModelPack(registry, 'cli/model', 'v1', [
    { path: 'weights.bin', content: Buffer.alloc(100_000, 1), format: 'raw' },
    { path: 'config.json', content: '{"cli":1}', format: 'tar+gzip' },
  ]);
  const reference = `${registry.host}/cli/model:v1`;
  const root = join(work, 'cache');

  const inspected = await cli(['inspect', reference, '--json']);
  assert.equal(inspected.code, 0, inspected.stderr);
  const inspection = JSON.parse(inspected.stdout);
  assert.equal(inspection.kind, 'modelpack');
  assert.equal(inspection.digest, pushed.digest);
  assert.deepEqual(inspection.layers.map((l: { path?: string; format: string }) => [l.path, l.format]), [['weights.bin', 'raw'], ['config.json', 'tar+gzip']]);

  const pulled = await cli(['pull', reference, '--root', root]);
  assert.equal(pulled.code, 0, pulled.stderr);
  const lines = pulled.stdout.trim().split('\n').map((line) => JSON.parse(line));
  assert.ok(lines.some((line) => line.event === 'progress'));
  const done = lines.at(-1);
  assert.equal(done.event, 'done');
  assert.equal(done.path, join(root, 'models', 'sha256', pushed.digest.slice(7)));
  assert.equal(await readFile(join(done.path, 'config.json'), 'utf8'), '{"cli":1}');

  const listed = await cli(['cache', 'ls', '--root', root]);
  assert.equal(listed.code, 0, listed.stderr);
  const models = listed.stdout.trim().split('\n').map((line) => JSON.parse(line));
  assert.deepEqual(models.map((m) => [m.key, m.reference]), [[`sha256/${pushed.digest.slice(7)}`, reference]]);

  // The tar+gzip layer's blob is no longer needed once unpacked; gc removes it.
  const collected = await cli(['cache', 'gc', '--root', root]);
  assert.equal(collected.code, 0, collected.stderr);
  assert.equal(JSON.parse(collected.stdout).removed.blobs, 1);

  const missing = await cli(['pull', `${registry.host}/cli/nothing:v1`, '--root', root]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^model-csi pull: MANIFEST_NOT_FOUND: .*cli\/nothing/);
  assert.equal(missing.stderr.trim().split('\n').length, 1, 'one line');

  const usage = await cli(['pull']);
  assert.equal(usage.code, 2);
});

test('a CLI pull whose registry goes away mid-pull exits with one error line instead of hanging', { timeout: 90_000 }, async () => {
  // Bug: idle hash workers were re-ref'd by their message listener, so a pull that failed
  // before any digest was asked kept the process alive forever.
  const { startCountingProxy } = await import('../../helpers/counting-proxy.js');
  const big = (n: number) => Buffer.alloc(12 * 2 ** 20, n);
  await pushModelPack(registry, 'cli/gone', 'v1', [
    { path: 'a.safetensors', content: big(1), format: 'raw' },
    { path: 'b.safetensors', content: big(2), format: 'raw' },
  ]);
  const proxy = await startCountingProxy(registry.url, { rate: 2 * 2 ** 20 });
  try {
    const run = cli(['pull', `${proxy.host}/cli/gone:v1`, '--root', join(work, 'gone')]);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await proxy.down();
    const { code, stderr } = await run;
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n').filter((line) => !line.startsWith('{'));
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, /^model-csi pull: REGISTRY_UNAVAILABLE: registry 127\.0\.0\.1:\d+ could not be reached/);
  } finally {
    await proxy.close();
  }
});

test('a CLI pull of a model with many layers prints nothing on stderr (no listener-leak warning from the shared abort signal)', { timeout: 60_000 }, async () => {
  // 8 MiB each: large blobs, each on a connection of its own, 8 running at once.
  const files = Array.from({ length: 12 }, (_, i) => ({ path: `shard-${i}.bin`, content: Buffer.alloc(8 * 2 ** 20, i), format: 'raw' as const }));
  await pushModelPack(registry, 'cli/many', 'v1', files);
  const pulled = await cli(['pull', `${registry.host}/cli/many:v1`, '--root', join(work, 'many')]);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.equal(pulled.stderr, '');
});
