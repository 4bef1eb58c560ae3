// Time from NodePublishVolume to mounted for a model already in the node cache: the latency a
// pod start pays once the model is on the node. Real components: docker-registry on loopback,
// a ModelPack model pushed to it, the node plugin from dist/main.js on its unix socket, real
// bind mounts. One warm-up publish pulls the model; then each series publishes to a new target
// per call (timed: the gRPC call from request to OK, as kubelet sees it), checks the target is
// a mount point (untimed), and unpublishes it (timed separately). A second model, signed by
// the real cosign and covered by a `verify` rule, is timed beside it: the signature policy's
// cost on a warm publish (the verification is remembered, so none should show).
//
// usage: npm run build && node --import tsx bench/publish-bench.ts   (root: it mounts)
// env: BENCH_PUBLISHES (default 100), BENCH_ALWAYS_PUBLISHES (default 20), BENCH_VERBOSE=1
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type TestRegistry } from '../test/helpers/registry.js';
import { callCsi, closeClients, csiClients, startDriver, stopDriver, type CsiClients, type DriverProcess } from '../test/helpers/driver-process.js';
import { generateKeyPair, sign } from '../test/helpers/cosign.js';

const repoRoot = new URL('..', import.meta.url).pathname;
const publishes = Number(process.env['BENCH_PUBLISHES'] ?? 100);
const alwaysPublishes = Number(process.env['BENCH_ALWAYS_PUBLISHES'] ?? 20);
const verbose = Boolean(process.env['BENCH_VERBOSE']);
const PREFIX = 'model.csi.example.org/';

function mountPoints(): Set<string> {
  return new Set(readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')[4]!.replace(/\\040/g, ' ')));
}

interface Series {
  name: string;
  publish: number[];
  unpublish: number[];
}

const ms = (from: bigint) => Number(process.hrtime.bigint() - from) / 1e6;

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  // Nearest-rank percentiles: p99 of 100 samples is the 99th smallest.
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
  return { n: sorted.length, min: sorted[0]!, p50: pct(50), p99: pct(99), max: sorted.at(-1)!, mean: sorted.reduce((s, v) => s + v, 0) / sorted.length };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the publish bench mounts: run it as root');
  if (!existsSync(join(repoRoot, 'dist/main.js'))) throw new Error('run `npm run build` first');
  process.env['MODEL_CSI_TEST_DIST'] = '1'; // driver-process.ts: run dist/main.js, not src via tsx

  const work = mkdtempSync(join(tmpdir(), 'model-csi-publish-bench-'));
  const root = join(work, 'root');
  const targets = join(work, 'targets');
  mkdirSync(targets);
  const mounted = new Set<string>(); // targets published and not yet unpublished
  let registry: TestRegistry | undefined;
  let driver: DriverProcess | undefined;
  let clients: CsiClients | undefined;
  try {
    registry = await startRegistry();
    // A small model in the shape of a real one (config, tokenizer, two weight shards), pushed
    // as ModelPack (one .raw layer per file) by the demo's pusher, as the pull bench does.
    const modelDir = join(work, 'model');
    mkdirSync(modelDir);
    const files: Record<string, Buffer | string> = {
      'config.json': JSON.stringify({ architectures: ['Bench'], hidden_size: 64 }),
      'tokenizer.json': randomBytes(256 * 1024).toString('base64'),
      'model-00001-of-00002.safetensors': randomBytes(8 * 2 ** 20),
      'model-00002-of-00002.safetensors': randomBytes(8 * 2 ** 20),
    };
    for (const [name, content] of Object.entries(files)) writeFileSync(join(modelDir, name), content);
    const modelBytes = Object.values(files).reduce((sum, c) => sum + Buffer.byteLength(c), 0);
    const byTag = `${registry.host}/bench/publish:v1`;
    const pushed = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/demo/push-model.ts'), modelDir, byTag], { encoding: 'utf8' });
    if (pushed.status !== 0) throw new Error(`push failed: ${pushed.stderr}`);
    const digest = /@(sha256:[0-9a-f]{64})\s*$/.exec(pushed.stdout)?.[1];
    if (!digest) throw new Error(`push printed no digest: ${pushed.stdout}`);
    const byDigest = `${registry.host}/bench/publish@${digest}`;

    // The same files under another config.json (so another digest), signed with a cosign key
    // pair (classic .sig tag, no transparency log); the rule covers only this repository.
    const signedDir = join(work, 'signed-model');
    mkdirSync(signedDir);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(signedDir, name), name === 'config.json' ? JSON.stringify({ architectures: ['BenchSigned'] }) : content);
    const signedTag = `${registry.host}/bench/signed:v1`;
    const pushedSigned = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/demo/push-model.ts'), signedDir, signedTag], { encoding: 'utf8' });
    const signedDigest = /@(sha256:[0-9a-f]{64})\s*$/.exec(pushedSigned.stdout)?.[1];
    if (pushedSigned.status !== 0 || !signedDigest) throw new Error(`push of the signed model failed: ${pushedSigned.stderr}`);
    const key = generateKeyPair(work, 'bench');
    sign(work, `${registry.host}/bench/signed@${signedDigest}`, key);
    const configPath = join(work, 'config.yaml');
    writeFileSync(configPath, JSON.stringify({ verify: [{ match: `${registry.host}/bench/signed`, keys: [key.pub] }] }));

    const endpoint = `unix://${join(work, 'csi.sock')}`;
    driver = await startDriver('node', ['--endpoint', endpoint, '--root', root, '--node-id', 'bench', '--config', configPath]);
    clients = csiClients(endpoint);
    const node = clients.node;

    let seq = 0;
    const publish = async (reference: string, attributes: Record<string, string> = {}) => {
      const id = `bench-${seq++}`;
      const target = join(targets, id);
      const request = {
        volume_id: id,
        target_path: target,
        volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } },
        readonly: true,
        volume_context: {
          [`${PREFIX}reference`]: reference,
          ...attributes,
          'csi.storage.k8s.io/ephemeral': 'true',
          'csi.storage.k8s.io/pod.name': id,
        },
      };
      const started = process.hrtime.bigint();
      await callCsi(node, 'NodePublishVolume', request, 60_000);
      const elapsed = ms(started);
      mounted.add(target);
      return { id, target, elapsed };
    };
    const unpublish = async (id: string, target: string) => {
      const started = process.hrtime.bigint();
      await callCsi(node, 'NodeUnpublishVolume', { volume_id: id, target_path: target }, 60_000);
      const elapsed = ms(started);
      mounted.delete(target);
      return elapsed;
    };

    // Warm-up: the one pull (kubelet would retry UNAVAILABLE while it runs; 16 MiB on loopback
    // finishes within publishWaitSeconds, so one call is enough, but retry to be safe).
    const warmUp = async (reference: string): Promise<number> => {
      const warmStarted = process.hrtime.bigint();
      for (let attempt = 0; ; attempt++) {
        try {
          const first = await publish(reference);
          const elapsed = ms(warmStarted);
          await unpublish(first.id, first.target);
          return elapsed;
        } catch (err) {
          if ((err as { code?: number }).code !== 14 || attempt > 60) throw err;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    const warmMs = await warmUp(byTag);
    const warmSignedMs = await warmUp(signedTag);

    const runSeries = async (name: string, reference: string, count: number, attributes: Record<string, string> = {}): Promise<Series> => {
      const series: Series = { name, publish: [], unpublish: [] };
      for (let i = 0; i < count; i++) {
        const { id, target, elapsed } = await publish(reference, attributes);
        series.publish.push(elapsed);
        // Untimed: the target really is a read-only mount of the model.
        if (!mountPoints().has(target)) throw new Error(`${name}: ${target} is not a mount point after NodePublishVolume returned`);
        if (!existsSync(join(target, 'config.json'))) throw new Error(`${name}: ${target} does not show the model`);
        series.unpublish.push(await unpublish(id, target));
        if (mountPoints().has(target)) throw new Error(`${name}: ${target} is still mounted after NodeUnpublishVolume`);
      }
      if (verbose) console.error(`${name}: ${JSON.stringify(stats(series.publish))}`);
      return series;
    };
    const all = [
      await runSeries('by tag, IfNotPresent (default)', byTag, publishes),
      await runSeries('by digest', byDigest, publishes),
      await runSeries('by tag, pullPolicy: Always', byTag, alwaysPublishes, { [`${PREFIX}pullPolicy`]: 'Always' }),
      await runSeries('signed, verified (cosign key), by tag', signedTag, publishes),
      await runSeries('signed, verified (cosign key), by digest', `${registry.host}/bench/signed@${signedDigest}`, publishes),
    ];

    const [fstype, size, source] = spawnSync('df', ['--output=fstype,size,source', work], { encoding: 'utf8' }).stdout.trim().split('\n').at(-1)?.trim().split(/\s+/) ?? [];
    const disk = `${source} ${fstype} ${(Number(size) / 2 ** 20).toFixed(0)} GiB`;
    console.log(`\npublish → mounted for a cached model (${Object.keys(files).length} files, ${(modelBytes / 2 ** 20).toFixed(1)} MiB), node plugin from dist/main.js, docker-registry on loopback`);
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, disk ${disk}, node ${process.version}`);
    console.log(`warm-up publish (the pull, by tag): ${warmMs.toFixed(0)} ms; of the signed model (the pull and its first verification): ${warmSignedMs.toFixed(0)} ms. Each timed publish goes to a new target and is unpublished before the next; times are the NodePublishVolume / NodeUnpublishVolume calls over the unix socket, in ms (p99 of 20 is the max)\n`);
    console.log('| series | call | n | min | p50 | p99 | max | mean |');
    console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const s of all) {
      for (const [call, values] of [['publish', s.publish], ['unpublish', s.unpublish]] as const) {
        const st = stats(values);
        console.log(`| ${s.name} | ${call} | ${st.n} | ${st.min.toFixed(2)} | ${st.p50.toFixed(2)} | ${st.p99.toFixed(2)} | ${st.max.toFixed(2)} | ${st.mean.toFixed(2)} |`);
      }
    }
  } finally {
    // Leave nothing mounted, even on failure: unpublish through the driver if it still runs,
    // then unmount whatever is left under the work directory (targets, and the cache root).
    for (const target of mounted) {
      try {
        if (clients) await callCsi(clients.node, 'NodeUnpublishVolume', { volume_id: target.split('/').pop()!, target_path: target }, 10_000);
      } catch {
        /* unmounted below */
      }
    }
    if (clients) closeClients(clients);
    if (driver) await stopDriver(driver);
    const leftovers = [...mountPoints()].filter((m) => m.startsWith(`${work}/`)).sort((a, b) => b.length - a.length);
    for (const m of leftovers) spawnSync('umount', ['-l', m]);
    if (registry) await registry.stop();
    if (leftovers.length === 0 || [...mountPoints()].every((m) => !m.startsWith(`${work}/`))) rmSync(work, { recursive: true, force: true });
    else console.error(`bench: mounts left under ${work}; not removing it`);
  }
}

main().catch((err: Error) => {
  console.error(`publish bench: ${err.message}`);
  process.exit(1);
});
