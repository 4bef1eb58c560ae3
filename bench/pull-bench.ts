// Cold pull throughput, side by side in one run: model-csi against curl (the wire limit here:
// every blob fetched in parallel straight to disk), skopeo copy and oras pull, all from the
// same docker-registry on loopback, each into an empty directory. Each time runs until the
// bytes are durable on disk (the client, then `sync`). Printed as MB/s and as a ratio to
// curl, because these machines are noisy and only ratios from one run compare.
//
// usage: npm run bench  [-- --size-mib 2048 --files 4 --rounds 2]
import { spawnSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { blobDataPath, startRegistry } from '../test/helpers/registry.js';

const { values } = parseArgs({
  options: {
    'size-mib': { type: 'string', default: '2048' },
    files: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
  },
});
const sizeMiB = Number(values['size-mib']);
const fileCount = Number(values.files);
const rounds = Number(values.rounds);
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

function run(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${stderr.slice(-500)}`))));
  });
}

async function main(): Promise<void> {
  for (const tool of ['docker-registry', 'curl', 'skopeo', 'oras']) need(tool);
  if (spawnSync('test', ['-f', join(repoRoot, 'dist/main.js')]).status !== 0) throw new Error('run `npm run build` first');

  const work = mkdtempSync(join(tmpdir(), 'model-csi-bench-'));
  const registry = await startRegistry();
  try {
    const modelDir = join(work, 'model');
    mkdirSync(modelDir);
    const perFile = Math.floor((sizeMiB * 2 ** 20) / fileCount);
    for (let i = 0; i < fileCount; i++) await writeRandomFile(join(modelDir, `model-0000${i + 1}-of-0000${fileCount}.safetensors`), perFile);
    const reference = `${registry.host}/bench/model:v1`;
    const pushed = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'scripts/demo/push-model.ts'), modelDir, reference], { env, encoding: 'utf8' });
    if (pushed.status !== 0) throw new Error(`push failed: ${pushed.stderr}`);
    const manifest = (await (await fetch(`${registry.url}/v2/bench/model/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).json()) as {
      layers: Array<{ digest: string; size: number }>;
    };
    const totalBytes = manifest.layers.reduce((sum, l) => sum + l.size, 0);

    const peers: Record<string, (out: string) => Promise<void>> = {
      curl: (out) =>
        Promise.all(manifest.layers.map((l, i) => run('curl', ['-sSf', '-o', join(out, `blob-${i}`), `${registry.url}/v2/bench/model/blobs/${l.digest}`]))).then(() => undefined),
      'model-csi pull': (out) => run(process.execPath, [join(repoRoot, 'dist/main.js'), 'pull', reference, '--root', out]),
      'skopeo copy': (out) => run('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reference}`, `dir:${join(out, 'dir')}`]),
      'oras pull': (out) => run('oras', ['pull', '--plain-http', '--concurrency', '8', reference, '-o', join(out, 'files')]),
    };
    const only = process.env['BENCH_ONLY'];
    if (only) for (const name of Object.keys(peers)) if (name !== 'curl' && !name.startsWith(only)) delete peers[name];
    const seconds: Record<string, number[]> = {};
    const names = Object.keys(peers);
    for (let round = 0; round < rounds; round++) {
      // Each round starts with another client, so no client always follows the same one.
      const order = names.map((_, i) => names[(i + round) % names.length]!);
      const outputs: string[] = [];
      for (const name of order) {
        const pull = peers[name]!;
        const out = join(work, `out-${round}-${name.replace(/\W+/g, '-')}`);
        mkdirSync(out);
        settle(registry.storageDir, manifest.layers);
        const started = process.hrtime.bigint();
        await pull(out);
        // Durable on disk, for every client alike: model-csi fsyncs before it publishes (a
        // crash must never leave a half-written model visible); curl, skopeo and oras leave
        // dirty pages behind. Without this the table would compare page-cache writes to disk writes.
        spawnSync('sync');
        (seconds[name] ??= []).push(Number(process.hrtime.bigint() - started) / 1e9);
        if (process.env['BENCH_VERBOSE']) console.error(`${name}: ${seconds[name]!.at(-1)!.toFixed(2)} s`);
        // A client that fetched less than the model (a skipped layer) must not look fast.
        const got = Number(spawnSync('du', ['-sb', '--count-links', out], { encoding: 'utf8' }).stdout.split('\t')[0]);
        if (got < totalBytes) throw new Error(`${name} wrote ${got} bytes, expected at least ${totalBytes}`);
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
    const best = (name: string) => Math.min(...seconds[name]!);
    const mbps = (name: string) => totalBytes / 1e6 / best(name);
    console.log(`\ncold pull of ${(totalBytes / 2 ** 30).toFixed(2)} GiB in ${fileCount} blobs from docker-registry on loopback, until durable on disk (client + sync)`);
    console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, node ${process.version}; best of ${rounds}\n`);
    console.log('| client | seconds | MB/s | × curl |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const name of Object.keys(peers)) {
      console.log(`| ${name} | ${best(name).toFixed(2)} | ${mbps(name).toFixed(0)} | ${(mbps(name) / mbps('curl')).toFixed(2)} |`);
    }
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
