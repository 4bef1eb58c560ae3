/**
 * A real CNCF distribution registry (Debian's `docker-registry`) on a free loopback port with
 * a temp filesystem store, plus tiny distribution-API push helpers so tests can build
 * artifacts byte by byte, hostile ones included.
 *
 *   const reg = await startRegistry();            // http://127.0.0.1:PORT
 *   const layer = await pushBlob(reg, 'm/x', Buffer.from('hello'));
 *   await pushManifest(reg, 'm/x', 'v1', manifestBytes, MediaTypes.ociManifest);
 *   await reg.stop();
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { makeSelfSignedCert } from './tls.js';

export interface TokenAuthOptions {
  /** Token endpoint URL the registry sends clients to. */
  realm: string;
  service: string;
  issuer: string;
  /** PEM file of the certificate whose key signs the tokens. */
  rootCertBundle: string;
}

export interface StartRegistryOptions {
  htpasswd?: { user: string; password: string };
  tls?: boolean;
  tokenAuth?: TokenAuthOptions;
  /** Run as a pull-through cache of this registry URL (distribution's `proxy.remoteurl`): a mirror. */
  proxyRemoteUrl?: string;
}

export interface TestRegistry {
  /** `127.0.0.1:PORT`: the registry part of a reference. */
  host: string;
  /** `http(s)://127.0.0.1:PORT` */
  url: string;
  storageDir: string;
  /** The self-signed CA (the certificate itself) when started with `tls: true`. */
  caFile?: string;
  /** `Authorization` header value for pushes when started with htpasswd. */
  authorization?: string;
  stop(): Promise<void>;
  /** Stops and starts the registry again on the same port with the same storage. */
  restart(): Promise<void>;
}

/** Where a blob lives in the filesystem driver's layout, to corrupt it in place. */
export function blobDataPath(storageDir: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(storageDir, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data');
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

function requireBinary(name: string, hint: string): void {
  const probe = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' });
  if (probe.status !== 0) throw new Error(`${name} is not installed: ${hint}`);
}

function configYaml(port: number, storageDir: string, opts: StartRegistryOptions, files: { htpasswd?: string; cert?: string; key?: string }): string {
  const lines = [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storageDir}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
  ];
  if (files.cert) lines.push('  tls:', `    certificate: ${files.cert}`, `    key: ${files.key}`);
  if (files.htpasswd) lines.push('auth:', '  htpasswd:', '    realm: model-csi-test', `    path: ${files.htpasswd}`);
  if (opts.proxyRemoteUrl) lines.push('proxy:', `  remoteurl: ${opts.proxyRemoteUrl}`);
  if (opts.tokenAuth) {
    const t = opts.tokenAuth;
    lines.push('auth:', '  token:', `    realm: ${t.realm}`, `    service: ${t.service}`, `    issuer: ${t.issuer}`, `    rootcertbundle: ${t.rootCertBundle}`);
  }
  return lines.join('\n') + '\n';
}

export async function startRegistry(opts: StartRegistryOptions = {}): Promise<TestRegistry> {
  requireBinary('docker-registry', 'apt-get install docker-registry (the CNCF distribution registry)');
  const workDir = mkdtempSync(join(tmpdir(), 'model-csi-registry-'));
  const storageDir = join(workDir, 'storage');
  const files: { htpasswd?: string; cert?: string; key?: string } = {};
  let authorization: string | undefined;
  if (opts.htpasswd) {
    requireBinary('htpasswd', 'apt-get install apache2-utils');
    // distribution only accepts bcrypt entries.
    const out = spawnSync('htpasswd', ['-Bbn', opts.htpasswd.user, opts.htpasswd.password], { encoding: 'utf8' });
    if (out.status !== 0) throw new Error(`htpasswd failed: ${out.stderr}`);
    files.htpasswd = join(workDir, 'htpasswd');
    writeFileSync(files.htpasswd, out.stdout);
    authorization = 'Basic ' + Buffer.from(`${opts.htpasswd.user}:${opts.htpasswd.password}`).toString('base64');
  }
  let caFile: string | undefined;
  if (opts.tls) {
    const cert = makeSelfSignedCert({ dir: workDir, keyType: 'ec' });
    files.cert = cert.certFile;
    files.key = cert.keyFile;
    caFile = cert.certFile;
  }
  const port = await freePort();
  const configFile = join(workDir, 'config.yml');
  writeFileSync(configFile, configYaml(port, storageDir, opts, files));
  const host = `127.0.0.1:${port}`;
  const url = `${opts.tls ? 'https' : 'http'}://${host}`;
  const probeAgent = new Agent({ connect: { rejectUnauthorized: false } });

  let child: ChildProcess | undefined;
  let stderr = '';

  const launch = async (): Promise<void> => {
    stderr = '';
    const proc = spawn('docker-registry', ['serve', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr!.setEncoding('utf8');
    proc.stderr!.on('data', (chunk: string) => {
      if (stderr.length < 20_000) stderr += chunk;
    });
    let exited = false;
    proc.once('exit', () => {
      exited = true;
    });
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (exited) throw new Error(`docker-registry exited at start-up: ${stderr.trim().slice(-2000)}`);
      try {
        const res = await request(`${url}/v2/`, { dispatcher: probeAgent });
        await res.body.dump();
        if (res.statusCode === 200 || res.statusCode === 401) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(`docker-registry did not answer ${url}/v2/ within 15s: ${stderr.trim().slice(-2000)}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const kill = async (): Promise<void> => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.kill('SIGKILL');
    });
  };

  await launch();
  let stopped = false;
  return {
    host,
    url,
    storageDir,
    caFile,
    authorization,
    async stop() {
      if (stopped) return;
      stopped = true;
      await kill();
      await probeAgent.close();
      rmSync(workDir, { recursive: true, force: true });
    },
    async restart() {
      await kill();
      await launch();
    },
  };
}

// ---- push helpers: the distribution API by hand (spec: "Pushing a blob monolithically") ----

export interface PushTarget {
  url: string;
  authorization?: string;
  caFile?: string;
}

const insecureAgent = new Agent({ connect: { rejectUnauthorized: false } });

export function sha256(bytes: Buffer | string): string {
  return 'sha256:' + createHash('sha256').update(bytes).digest('hex');
}

function headers(target: PushTarget, extra: Record<string, string> = {}): Record<string, string> {
  return target.authorization ? { authorization: target.authorization, ...extra } : extra;
}

/** POST an upload session, PUT the bytes with `?digest=`. Returns the blob's descriptor fields. */
export async function pushBlob(target: PushTarget, repository: string, bytes: Buffer | string): Promise<{ digest: string; size: number }> {
  const body = typeof bytes === 'string' ? Buffer.from(bytes) : bytes;
  const digest = sha256(body);
  const start = await request(`${target.url}/v2/${repository}/blobs/uploads/`, {
    method: 'POST',
    headers: headers(target),
    dispatcher: insecureAgent,
  });
  await start.body.dump();
  if (start.statusCode !== 202) throw new Error(`upload start for ${repository} answered ${start.statusCode}`);
  const location = new URL(String(start.headers.location), target.url);
  location.searchParams.set('digest', digest);
  const put = await request(location, {
    method: 'PUT',
    headers: headers(target, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }),
    body,
    dispatcher: insecureAgent,
  });
  const text = await put.body.text();
  if (put.statusCode !== 201) throw new Error(`blob PUT for ${repository} answered ${put.statusCode}: ${text}`);
  return { digest, size: body.length };
}

/** PUT a manifest (any bytes) under a tag or digest. Returns its digest. */
export async function pushManifest(
  target: PushTarget,
  repository: string,
  reference: string,
  manifest: Buffer | string | object,
  mediaType: string,
): Promise<{ digest: string; size: number }> {
  const body = Buffer.isBuffer(manifest) ? manifest : Buffer.from(typeof manifest === 'string' ? manifest : JSON.stringify(manifest));
  const res = await request(`${target.url}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: headers(target, { 'content-type': mediaType }),
    body,
    dispatcher: insecureAgent,
  });
  const text = await res.body.text();
  if (res.statusCode !== 201) throw new Error(`manifest PUT ${repository}:${reference} answered ${res.statusCode}: ${text}`);
  return { digest: sha256(body), size: body.length };
}

/**
 * Pushes config + layers and an OCI manifest referencing them. Layers are
 * `{ bytes, mediaType, annotations }`; returns the manifest digest and descriptors.
 */
export async function pushArtifact(
  target: PushTarget,
  repository: string,
  tag: string,
  spec: {
    config?: { bytes: Buffer | string; mediaType: string };
    layers: Array<{ bytes: Buffer | string; mediaType: string; annotations?: Record<string, string> }>;
    artifactType?: string;
    annotations?: Record<string, string>;
  },
) {
  const config = spec.config ?? { bytes: '{}', mediaType: 'application/vnd.oci.empty.v1+json' };
  const configDesc = { mediaType: config.mediaType, ...(await pushBlob(target, repository, config.bytes)) };
  const layers = [];
  for (const layer of spec.layers) {
    const pushed = await pushBlob(target, repository, layer.bytes);
    layers.push({ mediaType: layer.mediaType, ...pushed, ...(layer.annotations ? { annotations: layer.annotations } : {}) });
  }
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...(spec.artifactType ? { artifactType: spec.artifactType } : {}),
    config: configDesc,
    layers,
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const pushed = await pushManifest(target, repository, tag, bytes, manifest.mediaType);
  return { digest: pushed.digest, size: pushed.size, manifest, bytes, config: configDesc, layers };
}
