/**
 * The stage for the product's main path, all real: a docker-registry process, a counting
 * proxy in front of it (the registry host the driver talks to), the node plugin as its own
 * process on a unix socket, and real bind mounts. Each test file gets its own stage.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { readMountInfo } from '../../../src/mount/mountinfo.js';
import { pushModelPack, type ModelPackFile } from '../../helpers/artifacts.js';
import { startCountingProxy, type CountingProxy } from '../../helpers/counting-proxy.js';
import { callCsi, closeClients, csiClients, startDriver, stopDriver, type CsiClients, type DriverProcess } from '../../helpers/driver-process.js';
import { startRegistry, type StartRegistryOptions, type TestRegistry } from '../../helpers/registry.js';

export const PREFIX = 'model.csi.example.org/';

export interface Stage {
  work: string;
  root: string;
  registry: TestRegistry;
  proxy: CountingProxy;
  driver: DriverProcess;
  clients: CsiClients;
  configPath: string;
  /** Restart the node plugin (SIGKILL when `kill`), same root and socket. */
  restartDriver(kill?: boolean): Promise<void>;
  stopDriver(signal?: NodeJS.Signals): Promise<void>;
  close(): Promise<void>;
}

export async function startStage(options: { config?: Record<string, unknown>; registry?: StartRegistryOptions; rate?: number; /** More node plugin flags (`--metrics-addr …`). */ args?: string[] } = {}): Promise<Stage> {
  assert.equal(process.getuid?.(), 0, 'integration tests need root: they make real bind mounts');
  const work = await mkdtemp(join(tmpdir(), 'model-csi-publish-'));
  const root = join(work, 'root');
  await mkdir(join(work, 'pods'), { recursive: true });
  const registry = await startRegistry(options.registry ?? {});
  const proxy = await startCountingProxy(registry.url, options.rate === undefined ? {} : { rate: options.rate });
  const configPath = join(work, 'config.yaml');
  await writeFile(configPath, stringify({ logLevel: 'debug', ...options.config }));
  const args = ['--endpoint', `unix://${work}/csi.sock`, '--root', root, '--node-id', 'node-a', '--config', configPath, ...(options.args ?? [])];
  const stage: Stage = {
    work,
    root,
    registry,
    proxy,
    configPath,
    driver: await startDriver('node', args),
    clients: undefined as unknown as CsiClients,
    async restartDriver(kill = false) {
      closeClients(stage.clients);
      await stopDriver(stage.driver, kill ? 'SIGKILL' : 'SIGTERM');
      stage.driver = await startDriver('node', args);
      stage.clients = csiClients(stage.driver.endpoint);
    },
    async stopDriver(signal: NodeJS.Signals = 'SIGTERM') {
      closeClients(stage.clients);
      await stopDriver(stage.driver, signal);
    },
    async close() {
      closeClients(stage.clients);
      await stopDriver(stage.driver, 'SIGKILL');
      await unmountUnder(work);
      await proxy.close();
      await registry.stop();
      await rm(work, { recursive: true, force: true });
    },
  };
  stage.clients = csiClients(stage.driver.endpoint);
  return stage;
}

export async function unmountUnder(dir: string): Promise<void> {
  for (const mount of (await readMountInfo()).filter((m) => m.mountPoint.startsWith(dir)).reverse()) {
    execFileSync('/bin/umount', [mount.mountPoint]);
  }
}

/** A small ModelPack model: weights (raw), config, tokenizer, docs in a sub-directory. */
export function modelFiles(seed: string, weightBytes = 256 * 1024): ModelPackFile[] {
  return [
    { path: 'model.safetensors', content: randomBytesFromSeed(seed, weightBytes), format: 'raw', role: 'weight' },
    { path: 'config.json', content: JSON.stringify({ model: seed, hidden: 384 }), format: 'raw', role: 'weight.config' },
    { path: 'tokenizer/tokenizer.json', content: JSON.stringify({ vocab: seed }), format: 'tar', role: 'weight.config' },
    { path: 'docs/README.md', content: `# ${seed}\n`, format: 'tar+gzip', role: 'doc' },
  ];
}

function randomBytesFromSeed(seed: string, size: number): Buffer {
  // Distinct content per seed (so models do not share blobs unless a test wants them to).
  const head = Buffer.from(`${seed}:`);
  return Buffer.concat([head, randomBytes(Math.max(0, size - head.length))]);
}

export async function pushModel(stage: Stage, repository: string, tag: string, files: ModelPackFile[]) {
  const pushed = await pushModelPack({ url: stage.registry.url, ...(stage.registry.authorization ? { authorization: stage.registry.authorization } : {}) }, repository, tag, files);
  return { ...pushed, reference: `${stage.proxy.host}/${repository}:${tag}` };
}

export function publishRequest(target: string, attributes: Record<string, string>, extra: Record<string, unknown> = {}) {
  const context: Record<string, string> = { 'csi.storage.k8s.io/ephemeral': 'true', 'csi.storage.k8s.io/pod.name': 'p' };
  for (const [key, value] of Object.entries(attributes)) context[key.includes('/') ? key : PREFIX + key] = value;
  return {
    volume_id: `vol-${target.split('/').pop()}`,
    target_path: target,
    volume_capability: { mount: {}, access_mode: { mode: 'MULTI_NODE_READER_ONLY' } },
    readonly: true,
    volume_context: context,
    ...extra,
  };
}

/** Publish as kubelet does: retry while the driver answers UNAVAILABLE (pull in progress). */
export async function publishUntilReady(stage: Stage, request: object, options: { timeoutMs?: number; messages?: string[] } = {}): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  for (;;) {
    try {
      await callCsi(stage.clients.node, 'NodePublishVolume', request, 30_000);
      return;
    } catch (err) {
      const e = err as { code?: number; details?: string };
      if (e.code !== 14 || Date.now() > deadline) throw err;
      options.messages?.push(e.details ?? '');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export function target(stage: Stage, name: string): string {
  return join(stage.work, 'pods', name);
}
