// What of the kind e2e can run without docker and kind: its skip contract, its manifests, and
// the model artifact it pushes (built and pushed by the same shell code, with the real oras,
// to a real registry on loopback).
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { startRegistry, type TestRegistry } from '../../helpers/registry.js';
import { REPO } from './render.js';

const RUN = join(REPO, 'test/e2e/run.sh');
const LIB = join(REPO, 'test/e2e/lib.sh');
const SKIP_LINE = /^e2e skipped: (\S+) (not found|daemon not reachable) \(needs docker, kind, kubectl, helm\)\n$/;

/** A PATH holding only bash, coreutils-ish basics and the named fake tools (each `true`). */
function pathWith(tools: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'model-csi-e2e-path-'));
  for (const tool of ['bash', 'dirname', 'cat', 'env']) symlinkSync(`/bin/${tool}`, join(dir, tool));
  for (const tool of tools) symlinkSync('/bin/true', join(dir, tool));
  return dir;
}

function runE2e(path: string): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('/bin/bash', [RUN], { encoding: 'utf8', env: { PATH: path, HOME: tmpdir() }, timeout: 30_000 });
}

describe('test/e2e/run.sh without the tools', () => {
  const cases: [string, string[], string][] = [
    ['no docker', [], 'docker'],
    ['no kind', ['docker'], 'kind'],
    ['no kubectl', ['docker', 'kind'], 'kubectl'],
    ['no helm', ['docker', 'kind', 'kubectl'], 'helm'],
  ];
  for (const [what, tools, missing] of cases) {
    test(`${what}: one line naming ${missing}, exit status 3`, () => {
      const result = runE2e(pathWith(tools));
      assert.equal(result.status, 3, result.stderr);
      assert.match(result.stdout, SKIP_LINE);
      assert.equal(SKIP_LINE.exec(result.stdout)![1], missing);
      assert.equal(result.stderr, '');
    });
  }

  test('a docker CLI without a daemon is a skip too, not a failure', () => {
    const dir = pathWith(['kind', 'kubectl', 'helm']);
    symlinkSync('/bin/false', join(dir, 'docker'));
    const result = runE2e(dir);
    assert.equal(result.status, 3);
    assert.equal(result.stdout, 'e2e skipped: docker daemon not reachable (needs docker, kind, kubectl, helm)\n');
  });
});

test('the e2e manifests parse and use the placeholders run.sh fills', () => {
  const inline = readFileSync(join(REPO, 'test/e2e/manifests/inline-pod.yaml'), 'utf8');
  const pvc = readFileSync(join(REPO, 'test/e2e/manifests/pvc-pods.yaml'), 'utf8');
  const script = readFileSync(RUN, 'utf8');
  for (const text of [inline, pvc]) {
    for (const doc of parseAllDocuments(text)) assert.deepEqual(doc.errors, []);
    for (const placeholder of text.match(/__[A-Z_]+__/g) ?? []) assert.ok(script.includes(`s|${placeholder}|`), `run.sh fills ${placeholder}`);
  }
  const kinds = parseAllDocuments(pvc).map((d) => (d.toJS() as { kind: string; metadata: { name: string } }));
  assert.deepEqual(kinds.map((o) => `${o.kind}/${o.metadata.name}`), ['PersistentVolumeClaim/model', 'Pod/pvc-reader-a', 'Pod/pvc-reader-b']);
  const pod = parseAllDocuments(inline)[0]!.toJS() as any;
  assert.equal(pod.spec.volumes[0].csi.driver, 'model.csi.example.org');
  assert.equal(pod.spec.containers[0].volumeMounts[0].readOnly, undefined, 'the container mount is writable: only the driver makes it read-only');
});

describe('the e2e model artifact', () => {
  let registry: TestRegistry;
  let dir: string;
  let pushedDigest: string;
  let files: string[];
  before(async () => {
    const oras = spawnSync('oras', ['version'], { encoding: 'utf8' });
    if (oras.error) throw new Error('oras not found on PATH: run scripts/install-test-deps.sh (go install oras.land/oras/cmd/oras) and put $(go env GOPATH)/bin on PATH');
    registry = await startRegistry();
    dir = join(mkdtempSync(join(tmpdir(), 'model-csi-e2e-model-')), 'model');
    mkdirSync(dir);
    const script = `set -euo pipefail; source "${LIB}"; make_model "$1"; push_model "$1" "$2" oras; printf '%s\\n' "\${E2E_MODEL_FILES[@]}"`;
    const result = spawnSync('bash', ['-c', script, 'push', dir, `${registry.host}/models/e2e-tiny:v1`], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    [pushedDigest, ...files] = result.stdout.trim().split('\n') as [string, ...string[]];
  });
  after(async () => registry?.stop());

  test('is a ModelPack manifest with one raw layer per file, at its path, with the file\'s digest', async () => {
    const res = await fetch(`${registry.url}/v2/models/e2e-tiny/manifests/v1`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    assert.equal(res.status, 200);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(pushedDigest, `sha256:${createHash('sha256').update(body).digest('hex')}`, 'push_model prints the manifest digest');
    const manifest = JSON.parse(body.toString('utf8'));
    assert.equal(manifest.artifactType, 'application/vnd.cncf.model.manifest.v1+json');
    assert.equal(manifest.config.mediaType, 'application/vnd.cncf.model.config.v1+json');
    assert.ok(files.includes('model.safetensors') && files.includes('config.json') && files.includes('tokenizer.json'));
    assert.ok(files.some((f) => f.includes('/')), 'a nested path is exercised');
    assert.deepEqual(manifest.layers.map((l: any) => l.annotations['org.cncf.model.filepath']), files);
    for (const layer of manifest.layers) {
      const path = layer.annotations['org.cncf.model.filepath'];
      const bytes = readFileSync(join(dir, path));
      assert.equal(layer.digest, `sha256:${createHash('sha256').update(bytes).digest('hex')}`, path);
      assert.match(layer.mediaType, /^application\/vnd\.cncf\.model\.(weight|weight\.config|doc)\.v1\.raw$/);
    }
    assert.equal(manifest.layers[0].mediaType, 'application/vnd.cncf.model.weight.v1.raw');
  });

  test('the weight file is a valid safetensors file', () => {
    const bytes = readFileSync(join(dir, 'model.safetensors'));
    const headerLength = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8'));
    const [start, end] = header.weight.data_offsets;
    assert.equal(start, 0);
    assert.equal(end, bytes.length - 8 - headerLength);
    assert.equal(end, header.weight.shape[0] * header.weight.shape[1] * 4);
  });
});
