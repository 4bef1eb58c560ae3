// Cold pull throughput, side by side in one run: model-csi against curl, skopeo copy and oras
// pull, each into an empty directory, timed until the bytes are durable on disk (the client,
// then `sync`). Printed as MB/s and as a ratio, because these machines are noisy and only
// ratios from one run compare. Three cases:
// - loopback: a sharded model from docker-registry on loopback; curl (every blob in parallel
//   straight to disk) is the wire limit here;
// - throttled: a 1 GiB single-blob model behind a proxy that limits each connection (20 MB/s
//   by default), as object storage behind a registry does; ratios to skopeo;
// - large: a 10 GiB model, model-csi alone, for its peak RSS.
// model-csi's peak RSS is reported in every case.
//
// usage: npm run bench  [-- --size-mib 2048 --files 4 --rounds 3 --cases loopback,throttled,large
//                           --throttle-mbps 20 --throttled-mib 1024 --large-gib 10]
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { startCountingProxy, type CountingProxy } from '../test/helpers/counting-proxy.js';
import { blobDataPath, startRegistry, type TestRegistry } from '../test/helpers/registry.js';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    files: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    cases: { type: 'string', default: 'loopback,throttled,large' },
    'throttle-mbps': { type: 'string', default: '20' },
    'throttled-mib': { type: 'string', default: '1024' },
    'large-gib': { type: 'string', default: '10' },
  },
});
const sizeMiB = Number(values['size-mib']);
const fileCount = Number(values.files);
const rounds = Number(values.rounds);
const cases = new Set(values.cases.split(','));
const throttleBytesPerSecond = Number(values['throttle-mbps']) * 1e6;
const repoRoot = new URL('..', import.meta.url).pathname;
const goBin = join(process.env['HOME'] ?? '/root', 'go', 'bin');
const env = { ...process.env, PATH: `${goBin}:${process.env['PATH']}` };

function need(tool: string): void {
  if (spawnSync('sh', ['-c', `command -v ${tool}`], { env }).status !== 0) {
    throw new Error(`bench needs ${tool}; run ./scripts/install-test-deps.sh`);
  }
}

async function writeRandomFile(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  const chunk = 8 * 2 ** 20;
  for (let written = 0; written < bytes; written += chunk) {
    const n = Math.min(chunk, bytes - written);
    if (!out.write(randomBytes(n))) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/**
 * The same starting state for every client: earlier writes on disk, the page cache emptied
 * (where this runs as root) and the registry's blobs read back into it, so the registry serves
 * from memory for everyone and no client pays for reclaiming pages an earlier one left.
 */
function settle(storageDir: string, layers: ReadonlyArray<{ digest: string }>): void {
  spawnSync('sync');
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '1');
  } catch {
    // not root: the page cache stays as the previous client left it
  }
  for (const layer of layers) spawnSync('cat', [blobDataPath(storageDir, layer.digest)], { stdio: 'ignore' });
  spawnSync('sleep', ['1']);
}

function run(cmd: string, args: string[], extraEnv: Record<string, string> = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (process.env['BENCH_STDERR']) process.stderr.write(stderr);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} exited ${code}: ${stderr.slice(-500)}`));
    });
  });
}

interface Pushed {
  reference: string;
  layers: Array<{ digest: string; size: number }>;
  totalBytes: number;
}

/** A model of `files` random files of `bytesEach`, pushed to the registry as `bench/<name>:v1`. */
async function pushModel(registry: TestRegistry, work: string, name: string, files: number, bytesEach: number): Promise<Pushed> {
  const modelDir = join(work, `model-${name}`);
  mkdirSync(modelDir);
  for (let i = 0; i < files; i++) await writeRandomFile(join(modelDir, `model-0000${i + 1}-of-0000${files}.safetensors`), bytesEach);
  const reference = `${registry.host}/bench/${name}:v1`;
  const pushed = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/demo/push-model.ts'), modelDir, reference], { env, encoding: 'utf8' });
  if (pushed.status !== 0) throw new Error(`push failed: ${pushed.stderr}`);
  rmSync(modelDir, { recursive: true, force: true });
  const manifest = (await (await fetch(`${registry.url}/v2/bench/${name}/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as Pushed;
  return { reference, layers: manifest.layers, totalBytes: manifest.layers.reduce((sum, l) => sum + l.size, 0) };
}

type Peers = Record<string, (out: string) => Promise<void>>;

/** The clients, fetching `name` through `host` (the registry, or the throttling proxy in front of it). */
function peersFor(host: string, model: Pushed, name: string, rssFile: string): Peers {
  const reference = `${host}/bench/${name}:v1`;
  const peers: Peers = {
    curl: (out) => Promise.all(model.layers.map((l, i) => run('curl', ['-sSf', '-o', join(out, `blob-${i}`), `http://${host}/v2/bench/${name}/blobs/${l.digest}`]))).then(() => undefined),
    'model-csi pull': (out) =>
      run(process.execPath, ['--import', join(repoRoot, 'bench/max-rss.mjs'), join(repoRoot, 'dist/main.js'), 'pull', reference, '--root', out], { BENCH_RSS_FILE: rssFile }),
    'skopeo copy': (out) => run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reference}`, `dir:${join(out, 'dir')}`]),
    'oras pull': (out) => run('oras', ['pull', '--plain-http', '--concurrency', '8', reference, '-o', join(out, 'files')]),
  };
  // BENCH_BASELINE=/path/to/an/older/checkout[,another]: those builds of model-csi too, side by
  // side (a change's effect, measured in one run); the first is "baseline", others by folder.
  for (const [i, dir] of (process.env['BENCH_BASELINE'] ?? '').split(',').filter(Boolean).entries()) {
    peers[i === 0 ? 'model-csi baseline' : `model-csi ${basename(dir)}`] = (out) => run(process.execPath, [join(dir, 'dist/main.js'), 'pull', reference, '--root', out]);
  }
  // BENCH_ONLY=model: curl (or skopeo, the throttled case's yardstick) and the named client only.
  const only = process.env['BENCH_ONLY'];
  if (only) for (const client of Object.keys(peers)) if (client !== 'curl' && client !== 'skopeo copy' && !client.startsWith(only)) delete peers[client];
  return peers;
}

interface Timed {
  seconds: Record<string, number[]>;
  /** model-csi's peak RSS in bytes, the most of any round. */
  rss: number;
}

/**
 * Each client `rounds` times, from the same starting state (settle), each round starting with
 * another client. `during`, when given, is told when each client starts and ends.
 */
async function timeClients(work: string, registry: TestRegistry, model: Pushed, peers: Peers, roundCount: number, rssFile: string, during?: { start(name: string): void; end(name: string): void }): Promise<Timed> {
  const seconds: Record<string, number[]> = {};
  let rss = 0;
  const names = Object.keys(peers);
  for (let round = 0; round < roundCount; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    const outputs: string[] = [];
    for (const name of order) {
      const out = join(work, `out-${round}-${name.replace(/\W+/g, '-')}`);
      mkdirSync(out);
      settle(registry.storageDir, model.layers);
      during?.start(name);
      const started = process.hrtime.bigint();
      await peers[name]!(out);
      // Durable on disk, for every client alike: model-csi fsyncs before it publishes (a
      // crash must never leave a half-written model visible); curl, skopeo and oras leave
      // dirty pages behind. Without this the table would compare page-cache writes to disk writes.
      spawnSync('sync');
      (seconds[name] ??= []).push(Number(process.hrtime.bigint() - started) / 1e9);
      during?.end(name);
      if (name === 'model-csi pull') rss = Math.max(rss, Number(readFileSync(rssFile, 'utf8')));
      if (process.env['BENCH_VERBOSE']) console.error(`${name}: ${seconds[name]!.at(-1)!.toFixed(2)} s`);
      // A client that fetched less than the model (a skipped layer) must not look fast.
      const got = Number(spawnSync('du', ['-sb', '--count-links', out], { encoding: 'utf8' }).stdout.split('\t')[0]);
      if (got < model.totalBytes) throw new Error(`${name} wrote ${got} bytes, expected at least ${model.totalBytes}`);
      outputs.push(out);
    }
    // Outputs are deleted between rounds, not between clients, and given time to settle: on a
    // filesystem mounted with `discard` (this machine's root is), deleting gigabytes queues
    // TRIMs that slow the next client's fsync/sync; measured here, the client right after a
    // deletion lost up to 2 s of 4.
    for (const out of outputs) rmSync(out, { recursive: true, force: true });
    spawnSync('sync');
    await new Promise((resolve) => setTimeout(resolve, 5000));
  }
  return { seconds, rss };
}

function printTable(model: Pushed, timed: Timed, against: string): void {
  const best = (name: string) => Math.min(...timed.seconds[name]!);
  const mbps = (name: string) => model.totalBytes / 1e6 / best(name);
  console.log(`| client | seconds | MB/s | × ${against} |`);
  console.log('| --- | ---: | ---: | ---: |');
  for (const name of Object.keys(timed.seconds)) console.log(`| ${name} | ${best(name).toFixed(2)} | ${mbps(name).toFixed(0)} | ${(mbps(name) / mbps(against)).toFixed(2)} |`);
  console.log(`\nmodel-csi peak RSS: ${(timed.rss / 2 ** 20).toFixed(0)} MiB`);
}

const machine = (): string => `machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}`;

async function loopbackCase(work: string, registry: TestRegistry, rssFile: string): Promise<void> {
  const model = await pushModel(registry, work, 'model', fileCount, Math.floor((sizeMiB * 2 ** 20) / fileCount));
  const peers = peersFor(registry.host, model, 'model', rssFile);
  const timed = await timeClients(work, registry, model, peers, rounds, rssFile);
  console.log(`\ncold pull of ${(model.totalBytes / 2 ** 30).toFixed(2)} GiB in ${fileCount} blobs from docker-registry on loopback, until durable on disk (client + sync)`);
  console.log(`${machine()}; best of ${rounds}\n`);
  printTable(model, timed, 'curl');
}

/**
 * The proxy limits each blob response (one per connection for these clients) to the rate; it
 * also counts how many are open at once, and the bench samples the bytes it has sent, for
 * model-csi's fastest second.
 */
async function throttledCase(work: string, registry: TestRegistry, rssFile: string): Promise<void> {
  const model = await pushModel(registry, work, 'single', 1, Number(values['throttled-mib']) * 2 ** 20);
  const proxy: CountingProxy = await startCountingProxy(registry.url, { rate: throttleBytesPerSecond });
  let samples: Array<{ at: number; bytes: number }> = [];
  let sampler: NodeJS.Timeout | undefined;
  let connections = 0;
  let peak = 0;
  try {
    const timed = await timeClients(work, registry, model, peersFor(proxy.host, model, 'single', rssFile), 1, rssFile, {
      start: (name) => {
        proxy.reset();
        samples = [];
        if (name === 'model-csi pull') sampler = setInterval(() => samples.push({ at: performance.now(), bytes: proxy.totalBlobBytes() }), 100);
      },
      end: (name) => {
        if (name !== 'model-csi pull') return;
        clearInterval(sampler);
        connections = proxy.maxOpenBlobBodies;
        for (const a of samples) {
          const b = samples.find((s) => s.at >= a.at + 1000);
          if (b) peak = Math.max(peak, (b.bytes - a.bytes) / ((b.at - a.at) / 1000));
        }
      },
    });
    // The ceiling: the same pull through the same proxy with no limit (the proxy, the registry
    // and the client share 2 cores; "up to the loopback limit").
    proxy.rate = 0;
    const ceiling = await timeClients(work, registry, model, { 'model-csi pull': peersFor(proxy.host, model, 'single', rssFile)['model-csi pull']! }, 1, rssFile);
    const ceilingMBps = model.totalBytes / 1e6 / ceiling.seconds['model-csi pull']![0]!;
    const limit = connections * throttleBytesPerSecond;
    console.log(`\ncold pull of a ${(model.totalBytes / 2 ** 30).toFixed(2)} GiB single-blob model through a proxy that limits each connection to ${throttleBytesPerSecond / 1e6} MB/s, until durable on disk`);
    console.log(`${machine()}; one round (the one-connection clients take a minute each)\n`);
    printTable(model, timed, 'skopeo copy');
    console.log(`model-csi: up to ${connections} connections at once; its fastest second ${(peak / 1e6).toFixed(0)} MB/s = ${((100 * peak) / limit).toFixed(0)}% of ${connections} × ${throttleBytesPerSecond / 1e6} MB/s`);
    console.log(`ceiling: the same pull through the proxy unthrottled, ${ceilingMBps.toFixed(0)} MB/s (client + sync); the fastest second is ${((100 * peak) / 1e6 / ceilingMBps).toFixed(0)}% of it`);
  } finally {
    clearInterval(sampler);
    await proxy.close();
  }
}

async function largeCase(work: string, registry: TestRegistry, rssFile: string): Promise<void> {
  const gib = Number(values['large-gib']);
  const model = await pushModel(registry, work, 'large', 4, Math.floor((gib * 2 ** 30) / 4));
  const peers = peersFor(registry.host, model, 'large', rssFile);
  const timed = await timeClients(work, registry, model, { 'model-csi pull': peers['model-csi pull']! }, 1, rssFile);
  const seconds = timed.seconds['model-csi pull']![0]!;
  console.log(`\ncold pull of a ${gib} GiB model in 4 blobs from docker-registry on loopback, model-csi alone`);
  console.log(`model-csi pull: ${seconds.toFixed(2)} s, ${(model.totalBytes / 1e6 / seconds).toFixed(0)} MB/s, peak RSS ${(timed.rss / 2 ** 20).toFixed(0)} MiB`);
}

async function main(): Promise<void> {
  for (const tool of ['docker-registry', 'curl', 'skopeo', 'oras']) need(tool);
  if (spawnSync('test', ['-f', join(repoRoot, 'dist/main.js')]).status !== 0) throw new Error('run `npm run build` first');
  const work = mkdtempSync(join(tmpdir(), 'model-csi-bench-'));
  const rssFile = join(work, 'rss');
  const registry = await startRegistry();
  try {
    if (cases.has('loopback')) await loopbackCase(work, registry, rssFile);
    if (cases.has('throttled')) await throttledCase(work, registry, rssFile);
    if (cases.has('large')) await largeCase(work, registry, rssFile);
    console.log('\nmodctl: not installable here (not served by the Go module proxy), so not measured.');
  } finally {
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: Error) => {
  console.error(`bench: ${err.message}`);
  process.exit(1);
});
