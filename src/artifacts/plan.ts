import type { ImageManifest } from '../registry/oci-types.js';
import { describeArtifact, type ArtifactKind, type LayerInfo } from './artifact.js';
import { checkEntryPath } from './unpack/safe-path.js';
import { createPathFilter, normalizeSelection, type PathFilter } from './selection.js';

export interface PlannedLayer extends LayerInfo {
  /** False for a raw layer whose path the selection leaves out: it is never downloaded. */
  fetch: boolean;
}

export interface PullPlan {
  kind: ArtifactKind;
  layers: PlannedLayer[];
  /** Bytes to download: the layers with `fetch`. */
  totalBytes: number;
  include: string[];
  exclude: string[];
  filter: PathFilter;
}

/**
 * Which layers a pull needs. A raw (single-file) layer is fetched only when its path is
 * selected, so a partial pull downloads only what matches; a tar layer's file list is inside
 * it, so it is always fetched and only its selected entries are written.
 */
export function planPull(manifest: ImageManifest, include: readonly string[], exclude: readonly string[], reference: string): PullPlan {
  const description = describeArtifact(manifest, reference);
  const selection = normalizeSelection(include, exclude);
  const filter = createPathFilter(selection.include, selection.exclude);
  const layers = description.layers.map((layer): PlannedLayer => {
    if (layer.format !== 'raw') return { ...layer, fetch: true };
    // Validated here too, so a hostile name is refused before a byte is downloaded.
    const path = checkEntryPath(layer.path!, `layer ${layer.descriptor.digest} of ${reference}`);
    return { ...layer, path, fetch: filter(path) };
  });
  const totalBytes = layers.filter((layer) => layer.fetch).reduce((sum, layer) => sum + layer.descriptor.size, 0);
  return { kind: description.kind, layers, totalBytes, include: selection.include, exclude: selection.exclude, filter };
}
