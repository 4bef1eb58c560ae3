// Plays kubelet for the demo: NodePublishVolume with a model reference (retrying while the
// driver answers UNAVAILABLE "pulling … %"), then checks what a pod would see at the target:
// the files, byte for byte against the source model, a read-only mount, a refused write.
// Then NodeUnpublishVolume.
// usage: tsx scripts/demo/publish.ts ENDPOINT REFERENCE TARGET SOURCE_DIR
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { credentials, type Client } from '@grpc/grpc-js';
import { loadCsi } from '../../src/csi/proto.js';

const [endpoint, reference, target, source] = process.argv.slice(2) as [string, string, string, string];
const csi = loadCsi();
const insecure = credentials.createInsecure();
const identity = new csi.Identity(endpoint, insecure);
const node = new csi.Node(endpoint, insecure);

function call<T>(client: Client, method: string, request: object, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (client as unknown as Record<string, (...args: unknown[]) => unknown>)[method]!;
    fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err: Error | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

async function files(dir: string, root = dir): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await files(path, root)));
    else out.push(relative(root, path));
  }
  return out.sort();
}

const sha256 = async (path: string) => createHash('sha256').update(await readFile(path)).digest('hex');

for (let i = 0; ; i++) {
  try {
    await call(identity, 'GetPluginInfo', {}, 1000);
    break;
  } catch (err) {
    if (i > 100) throw err;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const request = {
  volume_id: 'csi-demo-volume',
  target_path: target,
  volume_capability: { mount: {}, access_mode: { mode: 'SINGLE_NODE_READER_ONLY' } },
  readonly: true,
  volume_context: {
    'model.csi.example.org/reference': reference,
    'csi.storage.k8s.io/ephemeral': 'true',
    'csi.storage.k8s.io/pod.name': 'demo',
  },
};
const started = Date.now();
for (;;) {
  try {
    await call(node, 'NodePublishVolume', request);
    break;
  } catch (err) {
    const e = err as { code?: number; details?: string };
    if (e.code !== 14) throw new Error(`NodePublishVolume failed: ${e.details ?? String(err)}`);
    console.log(`kubelet would show: ${e.details}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}
console.log(`published ${reference} at ${target} in ${((Date.now() - started) / 1000).toFixed(1)} s`);

const expected = await files(source);
const mounted = await files(target);
if (JSON.stringify(expected) !== JSON.stringify(mounted)) throw new Error(`files differ: ${mounted.join(', ')}`);
for (const file of mounted) {
  const [a, b] = [await sha256(join(source, file)), await sha256(join(target, file))];
  if (a !== b) throw new Error(`${file}: sha256 ${b} in the volume, ${a} in the source`);
  console.log(`  ${b.slice(0, 16)}…  ${file}`);
}
const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === target);
console.log(`mount: ${line?.split(' ').slice(4, 6).join(' ')}`);
try {
  await writeFile(join(target, 'config.json'), 'overwrite');
  throw new Error('a write into the model volume succeeded');
} catch (err) {
  if ((err as NodeJS.ErrnoException).code !== 'EROFS') throw err;
  console.log('write into the volume: EROFS (read-only), as it must be');
}
await call(node, 'NodeUnpublishVolume', { volume_id: request.volume_id, target_path: target });
console.log(`unpublished; ${mounted.length} files verified`);
identity.close();
node.close();
