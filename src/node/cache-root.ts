import { randomBytes } from 'node:crypto';
import { mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DriverError } from '../errors/driver-error.js';

/**
 * The node's cache root must be a writable directory. Created with 0700 when missing (models
 * of other tenants live there). Writability is tested by writing, not by access(2): a
 * read-only filesystem or a full disk only shows up that way.
 */
export async function prepareCacheRoot(root: string): Promise<void> {
  const problem = await cacheRootProblem(root, { create: true });
  if (problem !== undefined) throw new DriverError('CACHE_UNUSABLE', `cache root ${root} is unusable: ${problem}`);
}

export async function cacheRootUsable(root: string): Promise<boolean> {
  return (await cacheRootProblem(root, { create: false })) === undefined;
}

/** mkdir -p, with the last component made on its own: a recursive mkdir reports ENOENT where the truth is EROFS. */
async function createDirectory(root: string): Promise<void> {
  await mkdir(dirname(root), { recursive: true });
  await mkdir(root, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

async function cacheRootProblem(root: string, { create }: { create: boolean }): Promise<string | undefined> {
  try {
    if (create) await createDirectory(root);
    if (!(await stat(root)).isDirectory()) return 'not a directory';
    const probe = join(root, `.probe-${randomBytes(4).toString('hex')}`);
    await writeFile(probe, '');
    await rm(probe, { force: true });
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTDIR' || code === 'EEXIST' ? 'not a directory' : `not writable (${code ?? (err as Error).message})`;
  }
}
