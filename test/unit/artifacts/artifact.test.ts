import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { describeArtifact } from '../../../src/artifacts/artifact.js';
import { planPull } from '../../../src/artifacts/plan.js';
import type { Descriptor, ImageManifest } from '../../../src/registry/oci-types.js';

const digest = (n: number): string => `sha256:${n.toString(16).padStart(64, '0')}`;
const layer = (mediaType: string, annotations?: Record<string, string>, n = 1, size = 10): Descriptor => ({ mediaType, digest: digest(n), size, ...(annotations ? { annotations } : {}) });
const manifest = (layers: Descriptor[], extra: Partial<ImageManifest> = {}): ImageManifest => ({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: digest(99), size: 2 },
  layers,
  ...extra,
});

describe('artifact classification', () => {
  const roles = ['weight', 'weight.config', 'doc', 'code', 'dataset'];
  const formats = ['raw', 'tar', 'tar+gzip', 'tar+zstd'] as const;
  for (const vendor of ['cncf', 'cnai']) {
    for (const role of roles) {
      for (const format of formats) {
        const mediaType = `application/vnd.${vendor}.model.${role}.v1.${format}`;
        test(mediaType, () => {
          const pathKey = vendor === 'cncf' ? 'org.cncf.model.filepath' : 'org.cnai.model.filepath';
          const described = describeArtifact(
            manifest([layer(mediaType, { [pathKey]: 'dir/file.bin' })], { artifactType: `application/vnd.${vendor}.model.manifest.v1+json` }),
            'r/m:v1',
          );
          assert.equal(described.kind, 'modelpack');
          assert.equal(described.layers[0]!.format, format);
          assert.equal(described.layers[0]!.role, role);
          if (format === 'raw') assert.equal(described.layers[0]!.path, 'dir/file.bin');
        });
      }
    }
  }

  test('ModelPack is recognized by its config media type alone', () => {
    const m = manifest([layer('application/vnd.cncf.model.weight.v1.tar')], {
      config: { mediaType: 'application/vnd.cncf.model.config.v1+json', digest: digest(5), size: 100 },
    });
    assert.equal(describeArtifact(m, 'r/m:v1').kind, 'modelpack');
  });

  test('raw layer: mode and mtime from org.cncf.model.file.metadata+json', () => {
    const metadata = JSON.stringify({ name: 'run.sh', mode: 0o755, uid: 0, gid: 0, size: 10, mtime: '2024-03-04T05:06:07Z', typeflag: 48 });
    const described = describeArtifact(
      manifest([layer('application/vnd.cncf.model.code.v1.raw', { 'org.cncf.model.filepath': 'run.sh', 'org.cncf.model.file.metadata+json': metadata })]),
      'r/m:v1',
    );
    assert.equal(described.layers[0]!.metadata?.mode, 0o755);
    assert.equal(described.layers[0]!.metadata?.mtime?.toISOString(), '2024-03-04T05:06:07.000Z');
  });

  test('legacy ramalama layer type vnd.cnai.model.layer.v1.tar+gzip', () => {
    assert.equal(describeArtifact(manifest([layer('application/vnd.cnai.model.layer.v1.tar+gzip')]), 'r/m:v1').layers[0]!.format, 'tar+gzip');
  });

  test('ORAS: a titled file is raw whatever its media type; an unpack dir is tar+gzip', () => {
    const described = describeArtifact(
      manifest(
        [
          layer('application/vnd.oci.image.layer.v1.tar', { 'org.opencontainers.image.title': 'weights.bin' }, 1),
          layer('application/x-custom', { 'org.opencontainers.image.title': 'notes.txt' }, 2),
          layer('application/vnd.oci.image.layer.v1.tar+gzip', { 'org.opencontainers.image.title': 'tokenizer', 'io.deis.oras.content.unpack': 'true' }, 3),
        ],
        { artifactType: 'application/vnd.unknown.artifact.v1' },
      ),
      'r/m:v1',
    );
    assert.equal(described.kind, 'oras');
    assert.deepEqual(described.layers.map((l) => [l.format, l.path]), [['raw', 'weights.bin'], ['raw', 'notes.txt'], ['tar+gzip', 'tokenizer']]);
  });

  const imageTypes: Array<[string, string]> = [
    ['application/vnd.oci.image.layer.v1.tar', 'tar'],
    ['application/vnd.oci.image.layer.v1.tar+gzip', 'tar+gzip'],
    ['application/vnd.oci.image.layer.v1.tar+zstd', 'tar+zstd'],
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', 'tar+gzip'],
    ['application/vnd.docker.image.rootfs.diff.tar.gzip', 'tar+gzip'],
    ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', 'tar+gzip'],
  ];
  for (const [mediaType, format] of imageTypes) {
    test(`image layer ${mediaType}`, () => {
      const described = describeArtifact(
        manifest([layer(mediaType)], { config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: digest(7), size: 300 } }),
        'r/m:v1',
      );
      assert.equal(described.kind, 'image');
      assert.equal(described.layers[0]!.format, format);
      assert.equal(described.layers[0]!.imageLayer, true);
    });
  }

  test('anything else is UNSUPPORTED_MEDIA_TYPE naming the media type and the reference', () => {
    const helm = manifest([layer('application/vnd.cncf.helm.chart.content.v1.tar+gzip')], {
      config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: digest(8), size: 100 },
    });
    assert.throws(
      () => describeArtifact(helm, 'charts/nginx:1.0'),
      (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE') && err.message.includes('application/vnd.cncf.helm.chart.content.v1.tar+gzip') && err.message.includes('charts/nginx:1.0'),
    );
  });

  test('a raw layer without a path, an empty manifest and an oversized config are refused', () => {
    assert.throws(() => describeArtifact(manifest([layer('application/vnd.cncf.model.weight.v1.raw')]), 'r/m:v1'), (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE'));
    assert.throws(() => describeArtifact(manifest([]), 'r/m:v1'), (err: unknown) => isDriverError(err, 'UNSUPPORTED_MEDIA_TYPE'));
    const big = manifest([layer('application/vnd.cncf.model.weight.v1.tar')], { config: { mediaType: 'application/vnd.cncf.model.config.v1+json', digest: digest(9), size: 64 << 20 } });
    assert.throws(() => describeArtifact(big, 'r/m:v1'), (err: unknown) => isDriverError(err, 'MANIFEST_TOO_LARGE'));
  });
});

describe('partial pull plan', () => {
  const raw = (path: string, n: number, size: number): Descriptor => layer('application/vnd.cncf.model.weight.v1.raw', { 'org.cncf.model.filepath': path }, n, size);
  const m = manifest([raw('model-00001.safetensors', 1, 1000), raw('model-00002.safetensors', 2, 1000), raw('config.json', 3, 10), raw('docs/README.md', 4, 5), layer('application/vnd.cncf.model.code.v1.tar', undefined, 5, 50)]);

  test('only selected raw layers are fetched; tar layers always are', () => {
    const plan = planPull(m, ['*.json'], [], 'r/m:v1');
    assert.deepEqual(plan.layers.map((l) => l.fetch), [false, false, true, false, true]);
    assert.equal(plan.totalBytes, 60);
  });

  test('exclude drops matching layers; a directory glob selects its subtree', () => {
    assert.deepEqual(planPull(m, [], ['*.safetensors'], 'r/m:v1').layers.map((l) => l.fetch), [false, false, true, true, true]);
    assert.deepEqual(planPull(m, ['docs'], [], 'r/m:v1').layers.map((l) => l.fetch), [false, false, false, true, true]);
    assert.equal(planPull(m, [], [], 'r/m:v1').totalBytes, 2065);
  });

  test('a raw layer with a hostile path is refused before anything is downloaded', () => {
    assert.throws(() => planPull(manifest([raw('../../etc/passwd', 1, 10)]), [], [], 'r/m:v1'), (err: unknown) => isDriverError(err, 'UNSAFE_PATH'));
    assert.throws(() => planPull(manifest([raw('/etc/passwd', 1, 10)]), [], [], 'r/m:v1'), (err: unknown) => isDriverError(err, 'UNSAFE_PATH'));
  });
});
