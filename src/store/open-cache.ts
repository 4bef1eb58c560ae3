import type { Logger } from '../log/logger.js';
import { ContentStore } from './content-store.js';
import { ModelStore } from './model-store.js';

/** Both stores over one cache root (they share it: models link blobs by hardlink). */
export async function openCache(root: string, options: { logger?: Logger; directWrites?: boolean } = {}): Promise<{ content: ContentStore; models: ModelStore }> {
  const { logger, directWrites } = options;
  const content = await ContentStore.open(root, { ...(logger ? { logger } : {}), ...(directWrites !== undefined ? { directWrites } : {}) });
  const models = await ModelStore.open(root, { content, ...(logger ? { logger } : {}) });
  return { content, models };
}
