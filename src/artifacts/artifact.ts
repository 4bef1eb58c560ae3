import { DriverError } from '../errors/driver-error.js';
import type { Descriptor, ImageManifest } from '../registry/oci-types.js';
import { Annotations, IMAGE_LAYER_FORMATS, ImageConfigTypes, MAX_CONFIG_BYTES, MODELPACK_LAYER, ModelPackTypes, type LayerFormat } from './media-types.js';

export type ArtifactKind = 'modelpack' | 'oras' | 'image';

/** `org.cncf.model.file.metadata+json`, the fields the puller applies (ModelPack annotations.md). */
export interface FileMetadata {
  mode?: number;
  mtime?: Date;
}

export interface LayerInfo {
  descriptor: Descriptor;
  format: LayerFormat;
  /**
   * Model-relative path of a raw layer's single file. For an archive layer, the path its
   * annotation names (ModelPack filepath, ORAS directory title): shown by inspect, never
   * used to place files — the archive's entries say where they go.
   */
  path?: string;
  /** ModelPack role (weight, weight.config, doc, code, dataset), when the media type says. */
  role?: string;
  /** A layer whose tar entries are overlaid like image layers (docker/OCI rootfs diffs). */
  imageLayer: boolean;
  metadata?: FileMetadata;
}

export interface ArtifactDescription {
  kind: ArtifactKind;
  layers: LayerInfo[];
}

/**
 * What the manifest holds and how each layer becomes files. Throws UNSUPPORTED_MEDIA_TYPE
 * naming the media type and the reference for anything not listed in media-types.ts.
 */
export function describeArtifact(manifest: ImageManifest, reference: string): ArtifactDescription {
  if (manifest.config && manifest.config.size > MAX_CONFIG_BYTES) {
    throw new DriverError('MANIFEST_TOO_LARGE', `config blob of ${reference} is ${manifest.config.size} bytes, over the ${MAX_CONFIG_BYTES}-byte cap; the artifact is malformed`);
  }
  if (!Array.isArray(manifest.layers) || manifest.layers.length === 0) {
    throw new DriverError('UNSUPPORTED_MEDIA_TYPE', `${reference} has no layers; there is no model to mount`);
  }
  const kind = artifactKind(manifest);
  return { kind, layers: manifest.layers.map((layer) => describeLayer(layer, kind, reference)) };
}

function artifactKind(manifest: ImageManifest): ArtifactKind {
  const modelpack: readonly string[] = [...ModelPackTypes.manifest, ...ModelPackTypes.config];
  if (
    (manifest.artifactType !== undefined && modelpack.includes(manifest.artifactType)) ||
    modelpack.includes(manifest.config?.mediaType ?? '') ||
    manifest.layers.some((layer) => MODELPACK_LAYER.test(layer.mediaType))
  ) {
    return 'modelpack';
  }
  const imageConfig: readonly string[] = ImageConfigTypes;
  const hasTitles = manifest.layers.some((layer) => layer.annotations?.[Annotations.title] !== undefined);
  if (imageConfig.includes(manifest.config?.mediaType ?? '') && !hasTitles) return 'image';
  return hasTitles ? 'oras' : 'image';
}

function describeLayer(layer: Descriptor, kind: ArtifactKind, reference: string): LayerInfo {
  const annotations = layer.annotations ?? {};
  const modelpack = MODELPACK_LAYER.exec(layer.mediaType);
  if (modelpack) {
    const format = modelpack[2] as LayerFormat;
    const info: LayerInfo = { descriptor: layer, format, role: modelpack[1], imageLayer: false };
    if (format === 'raw') {
      const path = firstAnnotation(annotations, Annotations.filepath) ?? annotations[Annotations.title];
      if (path === undefined || path === '') {
        throw new DriverError('UNSUPPORTED_MEDIA_TYPE', `raw layer ${layer.digest} of ${reference} has no org.cncf.model.filepath (or title) annotation, so it has no file name`);
      }
      info.path = path;
      const metadata = parseFileMetadata(firstAnnotation(annotations, Annotations.fileMetadata));
      if (metadata) info.metadata = metadata;
    } else {
      const shown = firstAnnotation(annotations, Annotations.filepath);
      if (shown !== undefined) info.path = shown;
    }
    return info;
  }
  const imageFormat = IMAGE_LAYER_FORMATS[layer.mediaType];
  if (annotations[Annotations.orasUnpack] === 'true') {
    // oras packs a directory as tar+gzip whose entries start with the directory name.
    const format = imageFormat ?? (/\+zstd$/.test(layer.mediaType) ? 'tar+zstd' : /gzip$/.test(layer.mediaType) ? 'tar+gzip' : undefined);
    if (format === undefined || format === 'raw') throw unsupported(layer, reference);
    const title = annotations[Annotations.title];
    return { descriptor: layer, format, imageLayer: false, ...(title ? { path: title } : {}) };
  }
  const title = annotations[Annotations.title];
  if (title !== undefined && title !== '' && kind !== 'image') {
    // An ORAS file keeps its bytes as they are, whatever media type it was pushed with.
    return { descriptor: layer, format: 'raw', path: title, imageLayer: false };
  }
  if (imageFormat !== undefined) return { descriptor: layer, format: imageFormat, imageLayer: true };
  throw unsupported(layer, reference);
}

function unsupported(layer: Descriptor, reference: string): DriverError {
  return new DriverError(
    'UNSUPPORTED_MEDIA_TYPE',
    `layer ${layer.digest} of ${reference} has media type "${layer.mediaType}", which is not a ModelPack, ORAS file or image layer; model-csi cannot mount it`,
  );
}

function firstAnnotation(annotations: Record<string, string>, keys: readonly string[]): string | undefined {
  for (const key of keys) if (annotations[key] !== undefined) return annotations[key];
  return undefined;
}

/**
 * `{"name":…,"mode":420,"uid":0,"gid":0,"size":…,"mtime":"2024-…Z","typeflag":48}`. Only mode
 * and mtime are applied (ownership is the node's; the file is ours). Malformed → ignored: the
 * annotation is advisory and the bytes are verified by digest anyway.
 */
function parseFileMetadata(text: string | undefined): FileMetadata | undefined {
  if (text === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (parsed === null || typeof parsed !== 'object') return undefined;
  const { mode, mtime } = parsed as { mode?: unknown; mtime?: unknown };
  const metadata: FileMetadata = {};
  if (typeof mode === 'number' && Number.isInteger(mode) && mode >= 0) metadata.mode = mode;
  if (typeof mtime === 'string') {
    const date = new Date(mtime);
    if (!Number.isNaN(date.getTime())) metadata.mtime = date;
  }
  return metadata;
}
