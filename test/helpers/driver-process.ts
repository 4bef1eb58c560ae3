import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { credentials, type Client } from '@grpc/grpc-js';
import { loadCsi } from '../../src/csi/proto.js';

/**
 * Runs the plugin as kubelet would see it: a separate process serving a unix socket. Uses
 * `node --import tsx src/main.ts`, or the build (`dist/main.js`) when MODEL_CSI_TEST_DIST=1.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));

export interface DriverProcess {
  child: ChildProcess;
  endpoint: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal name). */
  exited: Promise<number | string>;
}

export function mainCommand(): string[] {
  return process.env['MODEL_CSI_TEST_DIST'] === '1' ? ['dist/main.js'] : ['--import', 'tsx', 'src/main.ts'];
}

export interface SpawnOptions {
  /** A command the driver runs under, e.g. `['unshare', '-m', '--propagation', 'unchanged']`; it must exec the driver (no fork). */
  wrapper?: string[];
}

/** Start `model-csi <mode> ...args` without waiting for it to serve. */
export function spawnDriver(mode: string, args: string[], env: NodeJS.ProcessEnv = {}, options: SpawnOptions = {}): DriverProcess {
  const command = [...(options.wrapper ?? []), process.execPath, ...mainCommand(), mode, ...args];
  const child = spawn(command[0]!, command.slice(1), {
    cwd: REPO,
    env: { ...process.env, MODEL_CSI_DEBUG: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const endpointArg = args.indexOf('--endpoint');
  return { child, endpoint: endpointArg >= 0 ? args[endpointArg + 1]! : '', stdout: () => out, stderr: () => err, exited };
}

/** Start the plugin and wait until it answers GetPluginInfo on its socket. */
export async function startDriver(
  mode: 'node' | 'controller',
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: SpawnOptions = {},
): Promise<DriverProcess> {
  const driver = spawnDriver(mode, args, env, options);
  const clients = csiClients(driver.endpoint);
  const deadline = Date.now() + 20_000;
  let exitedEarly: number | string | undefined;
  void driver.exited.then((code) => (exitedEarly = code));
  try {
    for (;;) {
      if (exitedEarly !== undefined) throw new Error(`driver exited with ${exitedEarly} before serving:\n${driver.stderr()}`);
      try {
        await callCsi(clients.identity, 'GetPluginInfo', {}, 1_000);
        return driver;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`driver did not serve ${driver.endpoint} within 20 s: ${(err as Error).message}\n${driver.stderr()}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  } finally {
    closeClients(clients);
  }
}

/** SIGTERM and wait for the exit code (SIGKILL after 15 s). */
export async function stopDriver(driver: DriverProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<number | string> {
  if (driver.child.exitCode !== null || driver.child.signalCode !== null) return driver.exited;
  driver.child.kill(signal);
  const timer = setTimeout(() => driver.child.kill('SIGKILL'), 15_000);
  try {
    return await driver.exited;
  } finally {
    clearTimeout(timer);
  }
}

export interface CsiClients {
  identity: Client;
  node: Client;
  controller: Client;
}

export function csiClients(endpoint: string): CsiClients {
  const csi = loadCsi();
  const target = endpoint.startsWith('unix://') ? endpoint : `unix://${endpoint}`;
  const insecure = credentials.createInsecure();
  return {
    identity: new csi.Identity(target, insecure),
    node: new csi.Node(target, insecure),
    controller: new csi.Controller(target, insecure),
  };
}

export function closeClients(clients: CsiClients): void {
  clients.identity.close();
  clients.node.close();
  clients.controller.close();
}

/** One unary call; rejects with the grpc ServiceError (`code`, `details`). */
export function callCsi<T = any>(client: Client, method: string, request: object, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method];
    if (typeof fn !== 'function') return reject(new Error(`no method ${method}`));
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err: Error | null, response: T) => (err ? reject(err) : resolve(response)));
  });
}
