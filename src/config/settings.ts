import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { parseArgs } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { DriverError } from '../errors/driver-error.js';
import { configFileSchema, type ConfigFile } from './schema.js';

/**
 * Process settings: flags, each with an env twin, plus the YAML config file. Parsed once in
 * main, validated, deep-frozen and passed down; no other module reads process.env.
 */
export interface Settings {
  readonly endpoint: string;
  readonly nodeId: string;
  readonly root: string;
  readonly metricsAddr: string | undefined;
  readonly configPath: string | undefined;
  readonly config: Readonly<ConfigFile>;
  /** Serve kubelet's plugin registration API (the node plugin registers itself, no sidecar). */
  readonly registration: Readonly<{ dir: string; kubeletEndpoint: string }> | undefined;
  /** Running in a pod (KUBERNETES_SERVICE_HOST is set): the API server is reachable for events. */
  readonly inCluster: boolean;
  /** A kubeconfig file for the API server when not in a pod (a plugin run by hand, tests). */
  readonly kubeconfig: string | undefined;
}

const DEFAULT_ROOT = '/var/lib/model-csi';
const DEFAULT_ENDPOINT = 'unix:///csi/csi.sock';

/** Flag name → env twin, per the process contract. */
const FLAGS = {
  endpoint: 'CSI_ENDPOINT',
  'node-id': 'NODE_ID',
  root: 'MODEL_CSI_ROOT',
  config: 'MODEL_CSI_CONFIG',
  'metrics-addr': 'MODEL_CSI_METRICS_ADDR',
  'registration-dir': 'MODEL_CSI_REGISTRATION_DIR',
  'kubelet-registration-path': 'MODEL_CSI_KUBELET_REGISTRATION_PATH',
  kubeconfig: 'KUBECONFIG',
} as const;

export interface ParsedCommandLine {
  settings: Settings;
  positionals: string[];
  /** Extra boolean/string flags a subcommand declared. */
  extra: Record<string, string | boolean | undefined>;
}

export interface ExtraFlag {
  type: 'string' | 'boolean';
}

export function parseCommandLine(
  argv: string[],
  env: NodeJS.ProcessEnv,
  hostname: string,
  extraFlags: Record<string, ExtraFlag> = {},
): ParsedCommandLine {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        endpoint: { type: 'string' },
        'node-id': { type: 'string' },
        root: { type: 'string' },
        config: { type: 'string' },
        'metrics-addr': { type: 'string' },
        'registration-dir': { type: 'string' },
        'kubelet-registration-path': { type: 'string' },
        kubeconfig: { type: 'string' },
        ...extraFlags,
      },
    });
  } catch (err) {
    throw new DriverError('CONFIG_INVALID', (err as Error).message);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const pick = (flag: keyof typeof FLAGS): string | undefined => {
    const fromFlag = values[flag];
    if (typeof fromFlag === 'string') return fromFlag;
    const fromEnv = env[FLAGS[flag]];
    return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
  };

  const configPath = pick('config');
  const endpoint = pick('endpoint') ?? DEFAULT_ENDPOINT;
  validateEndpoint(endpoint);
  const settings: Settings = {
    endpoint,
    nodeId: pick('node-id') ?? hostname,
    root: pick('root') ?? DEFAULT_ROOT,
    metricsAddr: pick('metrics-addr'),
    configPath,
    config: loadConfigFile(configPath),
    registration: registrationSettings(pick('registration-dir'), pick('kubelet-registration-path'), endpoint),
    inCluster: (env['KUBERNETES_SERVICE_HOST'] ?? '') !== '',
    kubeconfig: pick('kubeconfig'),
  };
  if (settings.metricsAddr !== undefined) parseListenAddress(settings.metricsAddr);

  const extra: Record<string, string | boolean | undefined> = {};
  for (const name of Object.keys(extraFlags)) extra[name] = values[name];
  return { settings: deepFreeze(settings), positionals: parsed.positionals, extra };
}

export function loadConfigFile(path: string | undefined): ConfigFile {
  let raw: unknown = {};
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new DriverError('CONFIG_INVALID', `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    try {
      raw = parseYaml(text) ?? {};
    } catch (err) {
      throw new DriverError('CONFIG_INVALID', `config file ${path} is not valid YAML: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  const result = configFileSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const where = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    throw new DriverError('CONFIG_INVALID', `config file ${path ?? '(defaults)'}: ${where}: ${issue.message}`);
  }
  return result.data;
}

/**
 * `--registration-dir` turns self-registration on; `--kubelet-registration-path` is the CSI
 * socket as kubelet sees it, which differs from `--endpoint` when the plugin runs in a pod
 * (default: the endpoint's own path, right for a plugin on the host).
 */
function registrationSettings(dir: string | undefined, kubeletPath: string | undefined, endpoint: string): Settings['registration'] {
  if (dir === undefined) {
    if (kubeletPath !== undefined) throw new DriverError('CONFIG_INVALID', '--kubelet-registration-path needs --registration-dir');
    return undefined;
  }
  if (!isAbsolute(dir)) throw new DriverError('CONFIG_INVALID', `--registration-dir must be an absolute path, got "${dir}"`);
  const kubeletEndpoint = kubeletPath ?? socketPath(endpoint);
  if (!isAbsolute(kubeletEndpoint)) {
    throw new DriverError('CONFIG_INVALID', `--kubelet-registration-path must be an absolute path, got "${kubeletEndpoint}"`);
  }
  return { dir, kubeletEndpoint };
}

function validateEndpoint(endpoint: string): void {
  if (!endpoint.startsWith('unix://') || endpoint.length <= 'unix://'.length) {
    throw new DriverError('CONFIG_INVALID', `--endpoint must be unix:///path/to/csi.sock, got "${endpoint}"`);
  }
}

/** Socket path from a `unix://` endpoint (`unix:///csi/csi.sock` → `/csi/csi.sock`). */
export function socketPath(endpoint: string): string {
  return endpoint.slice('unix://'.length);
}

/** `:9808`, `127.0.0.1:9808`, `[::1]:9808` → host and port. */
export function parseListenAddress(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(addr);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) {
    throw new DriverError('CONFIG_INVALID', `--metrics-addr must be [host]:port, got "${addr}"`);
  }
  return { host: match[1] ?? (match[2] || '0.0.0.0'), port };
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as object)) deepFreeze(child);
  }
  return value;
}
