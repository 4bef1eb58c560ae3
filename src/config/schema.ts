import { z } from 'zod';
import { parseQuantity } from './quantity.js';
import { repositoryGlobProblem } from '../verify/repository-glob.js';

/**
 * The YAML config file (`--config` / MODEL_CSI_CONFIG). Every key is optional; unknown keys
 * are an error so a typo does not silently fall back to a default.
 */
const registrySchema = z
  .object({
    /** PEM bundle trusted for this registry in addition to the system roots. */
    ca: z.string().min(1).optional(),
    /** Plain HTTP, or HTTPS without verification. Only when asked for. */
    insecure: z.boolean().default(false),
    /** Tried in order before the origin; the origin is the fallback. */
    mirrors: z.array(z.string().url()).default([]),
  })
  .strict();

const quantity = z
  .union([z.string(), z.number().int().nonnegative()])
  .transform((value, ctx) => {
    try {
      return parseQuantity(value);
    } catch (err) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, message: (err as Error).message });
      return z.NEVER;
    }
  });

/**
 * One rule of the signature policy (src/verify/signature-policy.ts): a glob over
 * `host[:port]/repository` and the public keys (PEM files) one of which must have signed the
 * manifest. `keys: []` matches without checking (an exemption ahead of a wider rule). The key
 * files are read once, at start-up, by SignaturePolicy.load.
 */
const verifyRuleSchema = z
  .object({
    match: z.string().min(1).superRefine((glob, ctx) => {
      const problem = repositoryGlobProblem(glob);
      if (problem !== undefined) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
    }),
    keys: z.array(z.string().min(1).refine((path) => path.startsWith('/'), 'a key file must be an absolute path')),
  })
  .strict();

export const configFileSchema = z
  .object({
    /** LRU eviction of unused models above this many bytes (`500Gi`). Unset: no budget. */
    cacheBudget: quantity.optional(),
    maxConcurrentDownloads: z.number().int().min(1).max(64).default(8),
    /**
     * Blob connections open at once on the node, and to one registry host (a mirror or an
     * origin counts as its own host): the caps of ranged multi-connection downloads
     * (store/ranged-download.ts) and of single-stream ones alike.
     */
    maxConnectionsPerNode: z.number().int().min(1).max(256).default(32),
    maxConnectionsPerRegistry: z.number().int().min(1).max(256).default(16),
    /**
     * Blobs of this size and more are fetched as ranged pieces over several connections;
     * smaller ones as one stream. Set it above the largest blob to keep one stream per blob.
     */
    rangedMinBlobSize: quantity.default('64Mi'),
    /**
     * Write large blobs with O_DIRECT (past the page cache) where the filesystem allows:
     * much less CPU per byte, but the model is not left in the page cache for the pod's
     * first read. store/blob-file.ts.
     */
    directWrites: z.boolean().default(true),
    dockerConfig: z.string().min(1).optional(),
    registries: z.record(z.string().min(1), registrySchema).default({}),
    /**
     * How long NodePublishVolume waits for a pull before answering UNAVAILABLE with progress.
     * Must stay well under kubelet's 2-minute call deadline.
     */
    publishWaitSeconds: z.number().min(0).max(110).default(60),
    /** Signature policy: rules in order, the first whose glob matches a reference applies. */
    verify: z.array(verifyRuleSchema).default([]),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
    /**
     * ModelCache resources (kube/model-cache*.ts): node plugins warm and pin what selects their
     * node, the controller keeps the summaries. Needs the API server; off: neither watches.
     */
    modelCache: z.object({ enabled: z.boolean().default(true) }).strict().default({}),
  })
  .strict();

export type ConfigFile = z.output<typeof configFileSchema>;
export type RegistryConfig = z.output<typeof registrySchema>;
export type VerifyRule = z.output<typeof verifyRuleSchema>;
