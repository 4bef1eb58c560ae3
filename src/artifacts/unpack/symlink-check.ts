import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { checkResolvesInside } from './safe-path.js';

/**
 * After every layer is unpacked: each symlink of the model, followed through the other
 * symlinks as the kernel would, must stay inside the model. Per-entry checks are lexical and
 * layers unpack in parallel, so only the finished tree can be judged as a whole.
 */
export async function checkSymlinksInside(root: string, where: string, dir = ''): Promise<void> {
  for (const name of await readdir(join(root, dir))) {
    const rel = dir === '' ? name : `${dir}/${name}`;
    const info = await lstat(join(root, rel));
    if (info.isDirectory()) await checkSymlinksInside(root, where, rel);
    else if (info.isSymbolicLink()) await checkResolvesInside(root, rel, where);
  }
}
