/**
 * Media types and annotations the puller understands, with the specs they come from.
 *
 * ModelPack (github.com/modelpack/model-spec, docs/spec.md and docs/annotations.md):
 *   manifest artifactType  application/vnd.cncf.model.manifest.v1+json
 *   config                 application/vnd.cncf.model.config.v1+json
 *   layers                 application/vnd.cncf.model.<role>.v1.<format>,
 *                          role ∈ weight | weight.config | doc | code | dataset,
 *                          format ∈ raw | tar | tar+gzip | tar+zstd
 *   layer annotations      org.cncf.model.filepath, org.cncf.model.file.metadata+json
 * Before the CNCF move the same spec used `vnd.cnai.model` media types and `org.cnai.model`
 * annotations; early packers (ramalama) also wrote `vnd.cnai.model.layer.v1.tar[+gzip]`.
 *
 * ORAS (oras.land docs, "file" content): a layer per file named by
 * org.opencontainers.image.title; a directory is a tar+gzip layer with
 * io.deis.oras.content.unpack: "true".
 *
 * OCI image layers (image-spec layer.md) and their Docker v2 schema 2 twins.
 */
export const ModelPackTypes = {
  manifest: ['application/vnd.cncf.model.manifest.v1+json', 'application/vnd.cnai.model.manifest.v1+json'],
  config: ['application/vnd.cncf.model.config.v1+json', 'application/vnd.cnai.model.config.v1+json'],
} as const;

/** `application/vnd.{cncf|cnai}.model.<role>.v1.<format>` */
export const MODELPACK_LAYER = /^application\/vnd\.(?:cncf|cnai)\.model\.(weight|weight\.config|doc|code|dataset|layer)\.v1\.(raw|tar|tar\+gzip|tar\+zstd)$/;

export const Annotations = {
  filepath: ['org.cncf.model.filepath', 'org.cnai.model.filepath'],
  fileMetadata: ['org.cncf.model.file.metadata+json', 'org.cnai.model.file.metadata+json'],
  title: 'org.opencontainers.image.title',
  orasUnpack: 'io.deis.oras.content.unpack',
} as const;

export const ImageConfigTypes = ['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json'] as const;

export type LayerFormat = 'raw' | 'tar' | 'tar+gzip' | 'tar+zstd';

/** Image layer media type → how its bytes are packed. */
export const IMAGE_LAYER_FORMATS: Readonly<Record<string, LayerFormat>> = {
  'application/vnd.oci.image.layer.v1.tar': 'tar',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'tar+gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'tar+zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'tar+zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'tar',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd': 'tar+zstd',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'tar+gzip',
};

/** Config blobs are small JSON documents; a bigger one is malformed or hostile. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;
