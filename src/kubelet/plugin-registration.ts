import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import {
  loadPackageDefinition,
  Server,
  ServerCredentials,
  type GrpcObject,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceClientConstructor,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { DRIVER_NAME } from '../node/driver-identity.js';
import { DriverError } from '../errors/driver-error.js';
import type { Logger } from '../log/logger.js';

const PROTO_PATH = fileURLToPath(new URL('../../proto/pluginregistration.proto', import.meta.url));

/** CSI spec versions the CSI socket serves, as kubelet's csi plugin handler expects them. */
const SUPPORTED_VERSIONS = ['1.0.0'];

/** Kubelet normally calls within seconds of the socket appearing; this long without a call is unhealthy. */
const FIRST_CALL_GRACE_MS = 120_000;

export interface RegistrationOptions {
  /** Kubelet's plugin watcher dir (`<kubelet dir>/plugins_registry`), as this process sees it. */
  dir: string;
  /** The CSI socket path as kubelet sees it on the host. */
  kubeletEndpoint: string;
  logger: Logger;
}

interface RegistrationHealth {
  ok: boolean;
  /** Why not, for the log and `/healthz`. */
  message: string;
}

export interface RunningRegistration {
  socket: string;
  health(): Promise<RegistrationHealth>;
  stop(): Promise<void>;
}

type State = { phase: 'waiting'; since: number } | { phase: 'registered' } | { phase: 'refused'; error: string };

/**
 * The kubelet plugin registration API v1 (what node-driver-registrar does, without the
 * sidecar): a socket `<driver name>-reg.sock` in kubelet's plugin watcher dir. Kubelet finds it
 * by inotify, calls GetInfo to learn the driver name and the CSI socket, then tells the
 * outcome with NotifyRegistrationStatus (kubelet's pkg/kubelet/pluginmanager/pluginwatcher
 * README). A refusal, or a socket that disappeared, makes `/healthz` fail, so the kubelet's
 * probe restarts the plugin and it registers anew.
 */
export async function startPluginRegistration(options: RegistrationOptions): Promise<RunningRegistration> {
  const socket = join(options.dir, `${DRIVER_NAME}-reg.sock`);
  let state: State = { phase: 'waiting', since: Date.now() };
  const log = options.logger.child({ registration: socket });

  const server = new Server();
  server.addService(registrationService().service, {
    GetInfo(_call: ServerUnaryCall<object, object>, callback: sendUnaryData<object>) {
      callback(null, { type: 'CSIPlugin', name: DRIVER_NAME, endpoint: options.kubeletEndpoint, supported_versions: SUPPORTED_VERSIONS });
    },
    NotifyRegistrationStatus(call: ServerUnaryCall<{ plugin_registered: boolean; error: string }, object>, callback: sendUnaryData<object>) {
      const { plugin_registered: registered, error } = call.request;
      if (registered) {
        if (state.phase !== 'registered') log.info({ endpoint: options.kubeletEndpoint }, 'kubelet registered the driver');
        state = { phase: 'registered' };
      } else {
        log.error({ error }, 'kubelet refused to register the driver');
        state = { phase: 'refused', error };
      }
      callback(null, {});
    },
  });

  await mkdir(options.dir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new DriverError('CONFIG_INVALID', `--registration-dir ${options.dir} cannot be created: ${err.code ?? err.message}`);
  });
  // The CSI socket was claimed first, so no live driver serves this one: a file here is a
  // leftover, replaced as kubelet's plugin watcher asks of a restarting plugin.
  await rm(socket, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) =>
      err ? reject(new DriverError('CONFIG_INVALID', `cannot serve the kubelet registration socket ${socket}: ${err.message}`)) : resolve(),
    );
  });
  await chmod(socket, 0o600);
  log.info({ endpoint: options.kubeletEndpoint }, 'serving kubelet plugin registration');

  return {
    socket,
    async health(): Promise<RegistrationHealth> {
      const present = await stat(socket).then((s) => s.isSocket(), () => false);
      if (!present) return { ok: false, message: `the registration socket ${socket} is gone; restart the plugin to register again` };
      if (state.phase === 'refused') return { ok: false, message: `kubelet refused the registration: ${state.error}` };
      if (state.phase === 'waiting' && Date.now() - state.since > FIRST_CALL_GRACE_MS) {
        return {
          ok: false,
          message: `kubelet has not registered the driver within ${FIRST_CALL_GRACE_MS / 1000} s; is ${options.dir} kubelet's plugins_registry dir?`,
        };
      }
      return { ok: true, message: state.phase };
    },
    async stop(): Promise<void> {
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
      await rm(socket, { force: true });
    },
  };
}

let cached: ServiceClientConstructor | undefined;

/** The pluginregistration.Registration service (also the client the tests call it with). */
export function registrationService(): ServiceClientConstructor {
  if (cached === undefined) {
    const definition = loadSync(PROTO_PATH, { keepCase: true, defaults: true });
    cached = (loadPackageDefinition(definition)['pluginregistration'] as GrpcObject)['Registration'] as ServiceClientConstructor;
  }
  return cached;
}
