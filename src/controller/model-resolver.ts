/** A reference resolved once, in the controller, so every node of a PV mounts the same bytes. */
export interface ResolvedModel {
  /** `host/repo@sha256:…` */
  pinnedReference: string;
  /** `sha256:…` */
  digest: string;
  /** Bytes of the model; 0 when unknown. */
  sizeBytes: number;
}

/** The controller's seam to the registry (src/model-source/registry-model-resolver.ts fits it). */
export interface ModelResolver {
  resolve(reference: string, dockerConfigJson?: string): Promise<ResolvedModel>;
}
