// Packs a model directory as a ModelPack artifact (one `.raw` layer per file, as modctl does
// for weights) and pushes it to a plain-HTTP registry through the OCI distribution API.
// usage: tsx scripts/demo/push-model.ts DIR HOST:PORT/REPO:TAG
// Prints the pushed reference with its digest.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';

const [dir, target] = process.argv.slice(2);
if (!dir || !target) {
  console.error('usage: push-model.ts DIR HOST:PORT/REPO:TAG');
  process.exit(2);
}
const match = /^([^/]+)\/(.+):([\w][\w.-]*)$/.exec(target);
if (!match) throw new Error(`bad target ${target}`);
const [, host, repo, tag] = match as unknown as [string, string, string, string];
const base = `http://${host}/v2/${repo}`;

async function walk(root: string, at = root): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(at, { withFileTypes: true })) {
    const path = join(at, entry.name);
    if (entry.isDirectory()) out.push(...(await walk(root, path)));
    else if (entry.isFile()) out.push(relative(root, path));
  }
  return out.sort();
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return `sha256:${hash.digest('hex')}`;
}

async function pushBlob(body: Buffer | string, digest: string, size: number): Promise<void> {
  if ((await fetch(`${base}/blobs/${digest}`, { method: 'HEAD' })).ok) return;
  const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' });
  if (start.status !== 202) throw new Error(`upload start: HTTP ${start.status}`);
  const location = new URL(start.headers.get('location')!, `http://${host}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
    body: typeof body === 'string' ? createReadStream(body) : body,
    duplex: 'half',
  } as RequestInit);
  if (put.status !== 201) throw new Error(`upload ${digest}: HTTP ${put.status} ${await put.text()}`);
}

function layerMediaType(path: string): string {
  if (/\.(safetensors|bin|pt|gguf|onnx|h5)$/.test(path)) return 'application/vnd.cncf.model.weight.v1.raw';
  if (/\.(md|txt)$/i.test(path) && !path.endsWith('vocab.txt')) return 'application/vnd.cncf.model.doc.v1.raw';
  if (/\.py$/.test(path)) return 'application/vnd.cncf.model.code.v1.raw';
  return 'application/vnd.cncf.model.weight.config.v1.raw';
}

const files = await walk(dir);
const layers = [];
for (const path of files) {
  const full = join(dir, path);
  const info = await stat(full);
  const digest = await sha256File(full);
  await pushBlob(full, digest, info.size);
  const metadata = { name: path.split('/').pop(), mode: info.mode & 0o777, uid: 0, gid: 0, size: info.size, mtime: info.mtime.toISOString(), typeflag: 48 };
  layers.push({
    mediaType: layerMediaType(path),
    digest,
    size: info.size,
    // The title lets ORAS-aware tools (oras pull) name the file too.
    annotations: { 'org.cncf.model.filepath': path, 'org.cncf.model.file.metadata+json': JSON.stringify(metadata), 'org.opencontainers.image.title': path },
  });
}
const config = JSON.stringify({
  descriptor: { name: repo.split('/').pop(), createdAt: new Date(0).toISOString() },
  config: { format: 'safetensors' },
  modelfs: { type: 'layers', diffIds: layers.map((l) => l.digest) },
});
const configDigest = `sha256:${createHash('sha256').update(config).digest('hex')}`;
await pushBlob(Buffer.from(config), configDigest, Buffer.byteLength(config));
const manifest = JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  artifactType: 'application/vnd.cncf.model.manifest.v1+json',
  config: { mediaType: 'application/vnd.cncf.model.config.v1+json', digest: configDigest, size: Buffer.byteLength(config) },
  layers,
});
const put = await fetch(`${base}/manifests/${tag}`, {
  method: 'PUT',
  headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  body: manifest,
});
if (put.status !== 201) throw new Error(`manifest: HTTP ${put.status} ${await put.text()}`);
const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
console.log(`${host}/${repo}:${tag}@${manifestDigest}`);
