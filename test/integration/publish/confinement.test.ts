/**
 * Nothing outside the cache root and the target is touched. The node plugin runs with its
 * cwd, HOME and TMPDIR pointed at empty directories through a publish/unpublish cycle with a
 * pull cut by the publish wait, a partial (include/exclude) pull, a missing tag and a registry
 * outage; afterwards those directories are still empty and the stage's work dir holds only
 * root/, pods/ (empty), the socket and the config. The default cache root
 * (/var/lib/model-csi) is never created, by the plugin or by `model-csi inspect`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { callCsi, csiClients, type DriverProcess } from '../../helpers/driver-process.js';
import { modelFiles, publishRequest, publishUntilReady, pushModel, startStage, target, type Stage } from './fixture.js';

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = join(REPO, 'src', 'main.ts');
const TSX = import.meta.resolve('tsx');
const DEFAULT_ROOT = '/var/lib/model-csi';
const MiB = 1024 * 1024;

let stage: Stage;
let outside: string;
let dirs: { cwd: string; home: string; tmp: string };
const defaultRootExisted = existsSync(DEFAULT_ROOT);

/** The process environment with nowhere to write but what the test watches. */
function confinedEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: dirs.home, TMPDIR: dirs.tmp, TMP: dirs.tmp, TEMP: dirs.tmp, MODEL_CSI_DEBUG: '', TSX_DISABLE_CACHE: '1' };
  for (const key of Object.keys(env)) if (key.startsWith('MODEL_CSI_') && key !== 'MODEL_CSI_DEBUG') delete env[key];
  return env;
}

/** `model-csi <args>` from the confined cwd, as its own process (tsx loaded by absolute URL, its disk cache off). */
function spawnConfined(args: string[], extraEnv: NodeJS.ProcessEnv = {}): DriverProcess {
  const child = spawn(process.execPath, ['--import', TSX, MAIN, ...args], { cwd: dirs.cwd, env: { ...confinedEnv(), ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const endpoint = args.includes('--endpoint') ? args[args.indexOf('--endpoint') + 1]! : '';
  return { child, endpoint, stdout: () => out, stderr: () => err, exited };
}

async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    out.push(prefix + entry.name);
    if (entry.isDirectory()) out.push(...(await listTree(join(dir, entry.name), `${prefix}${entry.name}/`)));
  }
  return out.sort();
}

before(async () => {
  outside = await mkdtemp(join(tmpdir(), 'model-csi-confined-'));
  dirs = { cwd: join(outside, 'cwd'), home: join(outside, 'home'), tmp: join(outside, 'tmp') };
  for (const dir of Object.values(dirs)) await mkdir(dir);
  stage = await startStage({ config: { publishWaitSeconds: 1 } });
  // Swap the stage's plugin for one started from the confined cwd and environment.
  await stage.stopDriver('SIGKILL');
  const args = ['node', '--endpoint', `unix://${stage.work}/csi.sock`, '--root', stage.root, '--node-id', 'node-a', '--config', stage.configPath];
  stage.driver = spawnConfined(args);
  stage.clients = csiClients(stage.driver.endpoint);
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await callCsi(stage.clients.identity, 'GetPluginInfo', {}, 1_000);
      break;
    } catch (err) {
      if (stage.driver.child.exitCode !== null || Date.now() > deadline) throw new Error(`confined driver did not serve: ${(err as Error).message}\n${stage.driver.stderr()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
});
after(async () => {
  await stage?.close();
  await rm(outside, { recursive: true, force: true });
});

test('a publish/unpublish cycle (cut pull, partial pull, missing tag, registry outage) writes only under the cache root and the targets', async () => {
  const model = await pushModel(stage, 'models/confined', 'v1', modelFiles('confined', 8 * MiB));
  const full = target(stage, 'full');
  stage.proxy.rate = 4 * MiB;
  try {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(full, { reference: model.reference })), { code: status.UNAVAILABLE });
  } finally {
    stage.proxy.rate = 0;
  }
  await publishUntilReady(stage, publishRequest(full, { reference: model.reference }));
  assert.ok((await readFile(join(full, 'model.safetensors'))).equals(model.expected['model.safetensors']!));

  const partial = target(stage, 'partial');
  await publishUntilReady(stage, publishRequest(partial, { reference: model.reference, include: 'config.json', exclude: 'docs/**' }));
  assert.deepEqual(await listTree(partial), ['config.json']);

  const missing = target(stage, 'missing');
  await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(missing, { reference: `${stage.proxy.host}/models/confined:v404` })), { code: status.NOT_FOUND });
  const other = await pushModel(stage, 'models/unreachable', 'v1', modelFiles('unreachable'));
  await stage.proxy.down();
  try {
    await assert.rejects(callCsi(stage.clients.node, 'NodePublishVolume', publishRequest(missing, { reference: other.reference })), { code: status.UNAVAILABLE });
  } finally {
    await stage.proxy.up();
  }

  await callCsi(stage.clients.node, 'NodeGetVolumeStats', { volume_id: 'vol-full', volume_path: full });
  for (const path of [full, partial, missing]) await callCsi(stage.clients.node, 'NodeUnpublishVolume', { volume_id: `vol-${path.split('/').pop()}`, target_path: path });
  await stage.stopDriver(); // SIGTERM: whatever it writes on the way out is written too
  assert.equal(await stage.driver.exited, 0, stage.driver.stderr());

  for (const [name, dir] of Object.entries(dirs)) assert.deepEqual(await listTree(dir), [], `the driver wrote into its ${name}`);
  assert.deepEqual((await readdir(stage.work)).filter((name) => !['config.yaml', 'csi.sock', 'pods', 'root'].includes(name)), [], 'only root/, pods/, the socket and the config in the work dir');
  assert.deepEqual(await listTree(join(stage.work, 'pods')), [], 'every target was removed');
  if (!defaultRootExisted) assert.equal(existsSync(DEFAULT_ROOT), false, `${DEFAULT_ROOT} was created`);
});

test('model-csi inspect reads the registry only: it creates no cache root', async () => {
  const model = await pushModel(stage, 'models/inspected', 'v1', modelFiles('inspected'));
  const root = join(outside, 'never-created');
  const inspect = spawnConfined(['inspect', model.reference, '--json'], { MODEL_CSI_ROOT: root });
  assert.equal(await inspect.exited, 0, inspect.stderr());
  assert.equal(JSON.parse(inspect.stdout()).digest, model.digest);
  assert.equal(existsSync(root), false, `inspect created the cache root ${root}`);
  // Without a root flag it would have been the default one.
  const plain = spawnConfined(['inspect', model.reference, '--json']);
  assert.equal(await plain.exited, 0, plain.stderr());
  if (!defaultRootExisted) assert.equal(existsSync(DEFAULT_ROOT), false, `inspect created ${DEFAULT_ROOT}`);
  for (const [name, dir] of Object.entries(dirs)) assert.deepEqual(await listTree(dir), [], `inspect wrote into its ${name}`);
});
