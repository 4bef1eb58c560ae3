#!/usr/bin/env node
import { DriverError } from './errors/driver-error.js';
import { scrubSecrets } from './errors/scrub.js';

/**
 * `model-csi <command>`: the node and controller plugins, plus the operator commands used to
 * debug a node (`pull`, `inspect`, `cache`). Each command module parses its own flags through
 * config/settings.ts and gets a frozen Settings object.
 */
// File writes, fsyncs and hashing of parallel blob streams all run on libuv's thread pool;
// its default of 4 threads lets one slow fsync stall the other streams' writes. Set before
// the pool starts (it starts lazily, at the first fs call).
process.env['UV_THREADPOOL_SIZE'] ??= '16';

const USAGE = `usage: model-csi <command> [flags]

commands:
  node                 run the CSI node plugin
  controller           run the CSI controller plugin
  pull REFERENCE       pull a model into the cache (--root DIR)
  inspect REFERENCE    show what an artifact holds
  cache ls|gc          list or prune the node cache
  version              print the version

common flags (env twin):
  --endpoint (CSI_ENDPOINT)   --node-id (NODE_ID)          --root (MODEL_CSI_ROOT)
  --config (MODEL_CSI_CONFIG) --metrics-addr (MODEL_CSI_METRICS_ADDR)

node flags (env twin):
  --registration-dir (MODEL_CSI_REGISTRATION_DIR)                    register with kubelet through this plugins_registry dir
  --kubelet-registration-path (MODEL_CSI_KUBELET_REGISTRATION_PATH)  the CSI socket as kubelet sees it`;

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, () => Promise<Command>> = {
  node: async () => (await import('./cli/serve.js')).serveCommand('node'),
  controller: async () => (await import('./cli/serve.js')).serveCommand('controller'),
  pull: async () => (await import('./cli/pull.js')).pullCommand,
  inspect: async () => (await import('./cli/inspect.js')).inspectCommand,
  cache: async () => (await import('./cli/cache.js')).cacheCommand,
  version: async () => (await import('./cli/version.js')).versionCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (load === undefined) {
    process.stderr.write(`model-csi: unknown command "${name}"\n${USAGE}\n`);
    return 2;
  }
  const command = await load();
  return command(rest);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // Start-up failures are one line naming the problem, not a stack trace.
    const message = err instanceof DriverError ? err.message : err instanceof Error ? err.message : String(err);
    process.stderr.write(`model-csi: ${scrubSecrets(message)}\n`);
    if (!(err instanceof DriverError) && process.env['MODEL_CSI_DEBUG']) console.error(err);
    process.exitCode = err instanceof DriverError && err.code === 'CONFIG_INVALID' ? 2 : 1;
  },
);
