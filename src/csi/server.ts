import { chmod, lstat, mkdir, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { socketPath } from '../config/settings.js';
import { DriverError } from '../errors/driver-error.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { wrapHandlers, type CsiHandlers } from './call-wrapper.js';
import { serviceDefinition, type CsiServiceName } from './proto.js';

export interface CsiServerOptions {
  endpoint: string;
  services: Partial<Record<CsiServiceName, CsiHandlers>>;
  logger: Logger;
  metrics: Metrics;
}

export interface RunningCsiServer {
  socket: string;
  /**
   * Stop accepting calls, let in-flight ones finish for up to `graceMs`, then cut the rest.
   * Resolves once the server is down and the socket file is gone.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** Serve the given CSI services on the unix socket of `endpoint`. */
export async function startCsiServer(options: CsiServerOptions): Promise<RunningCsiServer> {
  const socket = socketPath(options.endpoint);
  await claimSocketPath(socket);

  let draining = false;
  const server = new Server({ 'grpc.max_receive_message_length': 4 * 1024 * 1024 });
  for (const [name, handlers] of Object.entries(options.services)) {
    if (handlers === undefined) continue;
    server.addService(
      serviceDefinition(name as CsiServiceName),
      wrapHandlers(handlers, { logger: options.logger, metrics: options.metrics, draining: () => draining }),
    );
  }
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
  });
  // Only root (kubelet, the sidecars) may talk to the driver: a socket other pods can reach
  // would let them unmount each other's volumes.
  await chmod(socket, 0o600);
  options.logger.info({ socket, services: Object.keys(options.services) }, 'serving CSI');

  return {
    socket,
    async shutdown(graceMs: number): Promise<void> {
      draining = true;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          options.logger.warn({ graceMs }, 'calls still running after the grace period; cutting them');
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await rm(socket, { force: true });
    },
  };
}

/**
 * A socket file left by a crashed driver is removed; one that a live process answers on is
 * not stolen (two drivers on one socket would race on the same mounts).
 */
async function claimSocketPath(socket: string): Promise<void> {
  await mkdir(dirname(socket), { recursive: true });
  let stat;
  try {
    stat = await lstat(socket);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!stat.isSocket()) {
    throw new DriverError('CONFIG_INVALID', `--endpoint ${socket} exists and is not a socket; refusing to replace it`);
  }
  if (await socketAnswers(socket)) {
    throw new DriverError(
      'ENDPOINT_IN_USE',
      `another live process serves ${socket}; stop it first (two drivers on one socket would race)`,
    );
  }
  await rm(socket, { force: true });
}

function socketAnswers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = connect(socket);
    conn.once('connect', () => {
      conn.destroy();
      resolve(true);
    });
    conn.once('error', () => resolve(false));
  });
}
