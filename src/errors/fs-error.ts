import { DriverError } from './driver-error.js';

/**
 * The one classification of a local filesystem failure (errno) for every writer of the cache:
 * blobs, unpacked files, model and state records. Without it each writer kept its own list
 * (the blob retry loop knew EROFS and EIO, the pull only ENOSPC and EDQUOT) and the tar
 * extractor called every write error "not a readable tar archive", telling the user to push
 * the artifact again when the node's disk had failed.
 *
 * - ENOSPC / EDQUOT → NO_SPACE (RESOURCE_EXHAUSTED): the cache filesystem or its quota is full.
 * - EIO, EROFS, EACCES, EPERM, EMFILE, ENFILE, EFBIG, ENOMEM… → CACHE_IO_FAILED (INTERNAL):
 *   the node's disk or the driver process, never the artifact or the registry.
 *
 * Anything else (ENOENT, EEXIST, ELOOP: usually a meaning the caller decides, such as a
 * duplicate tar entry) is left to the caller.
 */
const NO_SPACE_CODES: ReadonlySet<string> = new Set(['ENOSPC', 'EDQUOT']);

/** errno → what it says about the node, for the message. */
const LOCAL_FAILURES: Readonly<Record<string, string>> = {
  EIO: 'an I/O error of the disk (see the kernel log)',
  EROFS: 'the cache filesystem is read-only (remounted read-only after errors, or mounted so)',
  EACCES: 'permission denied (the cache root must be writable by the driver)',
  EPERM: 'operation not permitted (the cache root must be writable by the driver)',
  EMFILE: 'the driver process has too many open files (raise its file descriptor limit)',
  ENFILE: 'the node has too many open files',
  EFBIG: 'a file is larger than the cache filesystem allows',
  ENOMEM: 'the kernel is out of memory',
  EUCLEAN: 'the cache filesystem is corrupted (run fsck)',
  ESTALE: 'a stale handle on a network filesystem',
};

/** Descriptor-table exhaustion clears up by itself once other calls finish. */
const TRANSIENT_CODES: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOMEM']);

/**
 * Network syscalls report EACCES / EMFILE too (a refused bind, a socket past the fd limit):
 * those are not the cache's disk.
 */
const NETWORK_SYSCALLS: ReadonlySet<string> = new Set(['connect', 'bind', 'listen', 'accept', 'getaddrinfo', 'socket']);

/** The errno code of `err` or of the first error in its cause chain that has one. */
function errnoCode(err: unknown): string | undefined {
  for (let current = err, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    const code = (current as NodeJS.ErrnoException).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return code;
  }
  return undefined;
}

/** ENOSPC or EDQUOT anywhere in the cause chain, or an error already classed NO_SPACE. */
export function isNoSpace(err: unknown): boolean {
  if (err instanceof DriverError) return err.code === 'NO_SPACE';
  const code = errnoCode(err);
  return code !== undefined && NO_SPACE_CODES.has(code);
}

/**
 * A raw errno error that is the local filesystem failing (full, read-only, broken, refused):
 * retrying a download cannot help, and the artifact is not to blame.
 */
export function isLocalFsFailure(err: unknown): boolean {
  if (err instanceof DriverError) return err.code === 'NO_SPACE' || err.code === 'CACHE_IO_FAILED';
  const code = errnoCode(err);
  if (code === undefined || !(NO_SPACE_CODES.has(code) || code in LOCAL_FAILURES)) return false;
  const syscall = (err as NodeJS.ErrnoException).syscall;
  return syscall === undefined || !NETWORK_SYSCALLS.has(syscall);
}

/**
 * The DriverError for a local filesystem failure, or undefined when `err` is not one (the
 * caller then decides). `action` says what was being done and for which reference, e.g.
 * `unpacking layer sha256:… of reg/x:v1`; the message adds the errno, the path and what to
 * do. An error classed lower down keeps its code and gets `action` in front of its message.
 */
export function cacheFsError(err: unknown, action: string): DriverError | undefined {
  if (err instanceof DriverError) {
    if (err.code !== 'NO_SPACE' && err.code !== 'CACHE_IO_FAILED') return undefined;
    // Classed lower down (a blob file knows its path, not the reference): add the context.
    return new DriverError(err.code, `${action}: ${err.message}`, { cause: err, retryable: err.retryable });
  }
  if (!isLocalFsFailure(err)) return undefined;
  const code = errnoCode(err)!;
  const errno = firstErrno(err);
  const at = errno?.path === undefined ? '' : ` at ${errno.path}`;
  const syscall = errno?.syscall === undefined ? '' : ` (${errno.syscall})`;
  if (NO_SPACE_CODES.has(code)) {
    return new DriverError(
      'NO_SPACE',
      `${action} failed: the cache filesystem ran out of ${code === 'EDQUOT' ? 'quota' : 'space'} (${code}${at}${syscall}); free space on the node's cache volume or set cacheBudget below its size`,
      { cause: err },
    );
  }
  return new DriverError(
    'CACHE_IO_FAILED',
    `${action} failed on the node's cache filesystem, not because of the artifact: ${code}${at}${syscall}, ${LOCAL_FAILURES[code]}; fix the node's cache volume, then the pull is retried`,
    { cause: err, retryable: TRANSIENT_CODES.has(code) },
  );
}

/** `cacheFsError(err, action)` when `err` is a local filesystem failure, else `err` itself. */
export function classifyFsError(err: unknown, action: string): unknown {
  return cacheFsError(err, action) ?? err;
}

function firstErrno(err: unknown): NodeJS.ErrnoException | undefined {
  for (let current = err, depth = 0; current instanceof Error && depth < 8; current = current.cause, depth++) {
    if (typeof (current as NodeJS.ErrnoException).code === 'string') return current as NodeJS.ErrnoException;
  }
  return undefined;
}
