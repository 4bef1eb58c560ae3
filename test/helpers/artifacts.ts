import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pushArtifact, type PushTarget } from './registry.js';
import { buildTar, gzip, zstd, type TarEntrySpec } from './hostile-tar.js';

/**
 * Artifacts the puller tests pull: built here byte by byte (ModelPack, legacy cnai, plain
 * image layers) or by the real clients (`oras push`, `skopeo copy`), pushed to a real
 * docker-registry. Each returns the files the pulled model must hold, for byte comparison.
 */
export type ExpectedFiles = Record<string, Buffer>;

export interface ModelPackFile {
  path: string;
  content: Buffer | string;
  format: 'raw' | 'tar' | 'tar+gzip' | 'tar+zstd';
  role?: 'weight' | 'weight.config' | 'doc' | 'code' | 'dataset';
  mode?: number;
  mtime?: string;
}

const GO_BIN = join(process.env['HOME'] ?? '/root', 'go', 'bin');

function requireTool(name: string, hint: string): string {
  for (const candidate of [name, join(GO_BIN, name)]) {
    const probe = spawnSync(candidate, ['--version'], { encoding: 'utf8' });
    if (!probe.error) return candidate;
  }
  throw new Error(`${name} is not installed (${hint}); this test needs the real client`);
}

/** A ModelPack artifact, one layer per file, `legacy` spelling it the pre-CNCF cnai way. */
export async function pushModelPack(target: PushTarget, repository: string, tag: string, files: ModelPackFile[], options: { legacy?: boolean } = {}) {
  const vendor = options.legacy ? 'cnai' : 'cncf';
  const annotationPrefix = options.legacy ? 'org.cnai.model' : 'org.cncf.model';
  const layers = [];
  const expected: ExpectedFiles = {};
  for (const file of files) {
    const content = Buffer.from(file.content);
    expected[file.path] = content;
    const metadata = JSON.stringify({ name: file.path.split('/').pop(), mode: file.mode ?? 0o644, uid: 0, gid: 0, size: content.length, mtime: file.mtime ?? '2024-01-02T03:04:05Z', typeflag: 48 });
    let bytes: Buffer;
    if (file.format === 'raw') {
      bytes = content;
    } else {
      const entry: TarEntrySpec = { name: file.path, content, mode: file.mode ?? 0o644, mtime: new Date(file.mtime ?? '2024-01-02T03:04:05Z') };
      const tar = await buildTar([entry]);
      bytes = file.format === 'tar+gzip' ? gzip(tar) : file.format === 'tar+zstd' ? zstd(tar) : tar;
    }
    layers.push({
      bytes,
      mediaType: `application/vnd.${vendor}.model.${file.role ?? 'weight'}.v1.${file.format}`,
      annotations: { [`${annotationPrefix}.filepath`]: file.path, [`${annotationPrefix}.file.metadata+json`]: metadata },
    });
  }
  const config = JSON.stringify({ descriptor: { name: repository }, config: { format: 'safetensors' }, modelfs: { type: 'layers', diffIds: [] } });
  const pushed = await pushArtifact(target, repository, tag, {
    artifactType: `application/vnd.${vendor}.model.manifest.v1+json`,
    config: { bytes: config, mediaType: `application/vnd.${vendor}.model.config.v1+json` },
    layers,
  });
  return { ...pushed, expected };
}

/** A plain image: a config and rootfs layers (tar / tar+gzip / tar+zstd) holding the model. */
export async function pushImage(target: PushTarget, repository: string, tag: string, layers: Array<{ format: 'tar' | 'tar+gzip' | 'tar+zstd'; entries: TarEntrySpec[] }>, options: { docker?: boolean } = {}) {
  const expected: ExpectedFiles = {};
  const built = [];
  const diffIds: string[] = [];
  for (const layer of layers) {
    for (const entry of layer.entries) if ((entry.type ?? 'file') === 'file') expected[entry.name.replace(/^\.\//, '')] = Buffer.from(entry.content ?? '');
    const tar = await buildTar(layer.entries);
    diffIds.push(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    const bytes = layer.format === 'tar+gzip' ? gzip(tar) : layer.format === 'tar+zstd' ? zstd(tar) : tar;
    const mediaType = options.docker
      ? layer.format === 'tar+gzip' ? 'application/vnd.docker.image.rootfs.diff.tar.gzip' : 'application/vnd.docker.image.rootfs.diff.tar'
      : `application/vnd.oci.image.layer.v1.${layer.format}`;
    built.push({ bytes, mediaType });
  }
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds }, config: {} });
  const pushed = await pushArtifact(target, repository, tag, {
    config: { bytes: config, mediaType: options.docker ? 'application/vnd.docker.container.image.v1+json' : 'application/vnd.oci.image.config.v1+json' },
    layers: built,
  });
  return { ...pushed, expected };
}

/**
 * `oras push` of files and one directory (which oras packs as tar+gzip with
 * io.deis.oras.content.unpack). Runs in `workDir` so titles are relative paths.
 */
export function orasPush(workDir: string, reference: string, files: Record<string, Buffer | string>, directory: { name: string; files: Record<string, Buffer | string> }): ExpectedFiles {
  const oras = requireTool('oras', 'go install oras.land/oras/cmd/oras@v1.3.6');
  const expected: ExpectedFiles = {};
  for (const [name, content] of Object.entries(files)) {
    writeFileSync(join(workDir, name), content);
    expected[name] = Buffer.from(content);
  }
  mkdirSync(join(workDir, directory.name), { recursive: true });
  for (const [name, content] of Object.entries(directory.files)) {
    writeFileSync(join(workDir, directory.name, name), content);
    expected[`${directory.name}/${name}`] = Buffer.from(content);
  }
  const out = spawnSync(oras, ['push', '--plain-http', '--disable-path-validation', reference, ...Object.keys(files), directory.name], { cwd: workDir, encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`oras push failed: ${out.stderr}${out.stdout}`);
  return expected;
}

/**
 * An OCI image layout on disk (index.json, oci-layout, blobs) with one gzip layer, copied to
 * the registry by the real `skopeo copy` (which recompresses nothing for OCI→registry).
 */
export async function skopeoCopyImage(workDir: string, reference: string, entries: TarEntrySpec[]): Promise<ExpectedFiles> {
  const skopeo = requireTool('skopeo', 'apt-get install skopeo');
  const layout = join(workDir, 'layout');
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  const put = (bytes: Buffer): { digest: string; size: number } => {
    const hex = createHash('sha256').update(bytes).digest('hex');
    writeFileSync(join(blobs, hex), bytes);
    return { digest: `sha256:${hex}`, size: bytes.length };
  };
  const tar = await buildTar(entries);
  const layer = put(gzip(tar));
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  const config = put(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [diffId] }, config: {} })));
  const manifest = put(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
      }),
    ),
  );
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }] }),
  );
  const out = spawnSync(skopeo, ['copy', '--dest-tls-verify=false', `oci:${layout}:v1`, `docker://${reference}`], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`skopeo copy failed: ${out.stderr}${out.stdout}`);
  const expected: ExpectedFiles = {};
  for (const entry of entries) if ((entry.type ?? 'file') === 'file') expected[entry.name.replace(/^\.\//, '')] = Buffer.from(entry.content ?? '');
  return expected;
}
