import { lstat, mkdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { DriverError } from '../../errors/driver-error.js';

/**
 * Checks that keep every write inside the model's temp dir (DESIGN "Safety of unpacking").
 * Paths from an artifact are untrusted: tar entry names, link targets, raw-layer file paths.
 */

/**
 * Normalize an archive path to a model-relative one (`./a//b/` → `a/b`), refusing absolute
 * paths, `..` components, NUL bytes and the empty path. `where` names the layer for the message.
 */
export function checkEntryPath(name: string, where: string): string {
  if (name.includes('\0')) throw unsafePath(name, where, 'contains a NUL byte');
  if (name.startsWith('/')) throw unsafePath(name, where, 'is absolute');
  const parts = name.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw unsafePath(name, where, 'contains ".."');
  if (parts.length === 0) throw unsafePath(name, where, 'is empty');
  return parts.join('/');
}

/**
 * A symlink at `linkPath` pointing at `target` must be relative and, read lexically from the
 * link's directory, stay inside the model. (The whole tree is checked again physically once
 * assembled: see `checkSymlinksInside`.)
 */
export function checkSymlinkTarget(linkPath: string, target: string, where: string): void {
  if (target === '' || target.includes('\0')) throw unsafePath(linkPath, where, 'is a symlink with an empty or invalid target');
  if (target.startsWith('/')) throw unsafePath(linkPath, where, `is a symlink to the absolute path "${target}"`);
  const resolved = posix.normalize(posix.join(posix.dirname(linkPath), target));
  if (resolved === '..' || resolved.startsWith('../')) throw unsafePath(linkPath, where, `is a symlink to "${target}", outside the model`);
}

/**
 * Create the parent directories of `relPath` under `root`, refusing any component that
 * exists as something other than a real directory: writing through a symlink the archive
 * created is how "symlink then write" escapes work.
 */
export async function makeParents(root: string, relPath: string, where: string): Promise<void> {
  const parts = relPath.split('/').slice(0, -1);
  let current = root;
  for (const [index, part] of parts.entries()) {
    current = join(current, part);
    const shown = parts.slice(0, index + 1).join('/');
    try {
      await mkdir(current, { mode: 0o755 });
      continue;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const info = await lstat(current);
    if (info.isSymbolicLink()) throw unsafePath(relPath, where, `goes through the symlink "${shown}"`);
    if (!info.isDirectory()) throw new DriverError('UNSAFE_ENTRY', `entry "${relPath}" in ${where} needs "${shown}" to be a directory, but the archive made it a file; the artifact is refused`);
  }
}

/**
 * Resolve `relPath` inside `root` the way the kernel would, following the archive's symlinks
 * component by component (a missing component is taken lexically). Throws UNSAFE_PATH when
 * the walk ever climbs above the root: `a -> ..` plus `b -> a/../..` passes the lexical check
 * of each link alone but escapes when followed.
 */
export async function checkResolvesInside(root: string, relPath: string, where: string): Promise<void> {
  const pending = relPath.split('/');
  const stack: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const part = pending.shift()!;
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (stack.length === 0) throw unsafePath(relPath, where, 'resolves outside the model through its symlinks');
      stack.pop();
      continue;
    }
    stack.push(part);
    let target: string;
    try {
      const info = await lstat(join(root, ...stack));
      if (!info.isSymbolicLink()) continue;
      target = await readlink(join(root, ...stack));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
      throw err;
    }
    if (++hops > 40) throw unsafePath(relPath, where, 'has a symlink loop');
    if (target.startsWith('/')) throw unsafePath(relPath, where, `resolves through the absolute symlink "${target}"`);
    stack.pop();
    pending.unshift(...target.split('/'));
  }
}

export function unsafePath(path: string, where: string, why: string): DriverError {
  return new DriverError('UNSAFE_PATH', `entry "${path}" in ${where} ${why}; the artifact is refused and nothing was kept`);
}

export function unsafeEntry(path: string, where: string, why: string): DriverError {
  return new DriverError('UNSAFE_ENTRY', `entry "${path}" in ${where} ${why}; the artifact is refused and nothing was kept`);
}
