import type { Logger } from '../log/logger.js';
import { ContentStore } from './content-store.js';
import { ModelStore } from './model-store.js';

/** Both stores over one cache root (they share it: models link blobs by hardlink). */
export async function openCache(
  root: string,
  options: { logger?: Logger; directWrites?: boolean; rangedMinBlobBytes?: number } = {},
): Promise<{ content: ContentStore; models: ModelStore }> {
  const { logger, directWrites, rangedMinBlobBytes } = options;
  const content = await ContentStore.open(root, {
    ...(logger ? { logger } : {}),
    ...(directWrites !== undefined ? { directWrites } : {}),
    ...(rangedMinBlobBytes !== undefined ? { rangedMinBlobBytes } : {}),
  });
  const models = await ModelStore.open(root, { content, ...(logger ? { logger } : {}) });
  return { content, models };
}
