/**
 * OCI image-spec / distribution-spec shapes the driver reads. Only the fields we use.
 * https://github.com/opencontainers/image-spec/blob/main/manifest.md
 */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  artifactType?: string;
  platform?: { os?: string; architecture?: string; variant?: string };
  urls?: string[];
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType?: string;
  artifactType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export const MediaTypes = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
} as const;

/** A manifest resolved from a registry: the digest is of the exact bytes received. */
export interface ResolvedManifest {
  /** `sha256:…` of the image manifest (after index → platform selection). */
  digest: string;
  /** Digest the reference first resolved to (the index, when there was one). */
  rootDigest: string;
  mediaType: string;
  manifest: ImageManifest;
  /** Raw bytes, verified against `digest`. */
  bytes: Buffer;
}
