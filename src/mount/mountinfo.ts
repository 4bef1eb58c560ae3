import { readFile } from 'node:fs/promises';

/** One line of /proc/self/mountinfo (proc(5)). */
export interface MountInfo {
  id: number;
  parentId: number;
  /** `major:minor` of the mounted filesystem. */
  device: string;
  /** Path inside the filesystem that is mounted here (a bind mount's source, relative to its fs). */
  root: string;
  mountPoint: string;
  /** Per-mount options: `ro`/`rw`, `nosuid`, `nodev`, … */
  options: string[];
  fsType: string;
  source: string;
  superOptions: string[];
  /** The optional fields: propagation (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`); none for a private mount. */
  propagation: string[];
}

/**
 * Parse mountinfo text. Paths are escaped by the kernel with octal sequences for space, tab,
 * newline and backslash (`\040`, `\011`, `\012`, `\134`); they are decoded here.
 * Format: `id parent major:minor root mountpoint options [optional fields…] - fstype source superoptions`.
 */
export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    const separator = fields.indexOf('-', 6);
    if (separator < 0 || fields.length < separator + 3) {
      throw new Error(`malformed mountinfo line: ${line}`);
    }
    mounts.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      device: fields[2]!,
      root: unescapeMountPath(fields[3]!),
      mountPoint: unescapeMountPath(fields[4]!),
      options: fields[5]!.split(','),
      fsType: fields[separator + 1]!,
      source: unescapeMountPath(fields[separator + 2]!),
      superOptions: (fields[separator + 3] ?? '').split(',').filter((o) => o !== ''),
      propagation: fields.slice(6, separator),
    });
  }
  return mounts;
}

export function unescapeMountPath(value: string): string {
  return value.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export async function readMountInfo(path = '/proc/self/mountinfo'): Promise<MountInfo[]> {
  return parseMountInfo(await readFile(path, 'utf8'));
}

/** The topmost mount at `mountPoint` (the last one listed wins when mounts are stacked). */
export function topMountAt(mounts: readonly MountInfo[], mountPoint: string): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const mount of mounts) if (mount.mountPoint === mountPoint) found = mount;
  return found;
}

/** The mount a path lies on: the topmost mount whose mount point is the path or one of its parents. */
export function mountHolding(mounts: readonly MountInfo[], path: string): MountInfo | undefined {
  let found: MountInfo | undefined;
  for (const mount of mounts) {
    const point = mount.mountPoint;
    const holds = point === path || point === '/' || path.startsWith(point.endsWith('/') ? point : point + '/');
    if (holds && (found === undefined || point.length >= found.mountPoint.length)) found = mount;
  }
  return found;
}
