import picomatch from 'picomatch';

/**
 * include/exclude globs over model-relative paths (`include` empty = everything). A glob
 * without a slash matches the base name anywhere (`*.safetensors`), as in .gitignore; a glob
 * that matches a directory selects everything under it (`tokenizer` or `docs/**`).
 */
export type PathFilter = (path: string) => boolean;

/** `a, b,,c` → ['a', 'b', 'c']: a glob list as users write it (volume attributes, CLI flags). */
export function parseGlobList(text: string): string[] {
  return cleanGlobs(text.split(','));
}

/** Sorted, de-duplicated, trimmed: `a,b` and `b, a` select the same files, so share a model key. */
export function normalizeSelection(include: readonly string[], exclude: readonly string[]): { include: string[]; exclude: string[] } {
  const normalize = (globs: readonly string[]): string[] => [...new Set(cleanGlobs(globs))].sort();
  return { include: normalize(include), exclude: normalize(exclude) };
}

function cleanGlobs(globs: readonly string[]): string[] {
  return globs.map((glob) => glob.trim()).filter((glob) => glob !== '');
}

export function createPathFilter(include: readonly string[], exclude: readonly string[]): PathFilter {
  const matchAny = compile(include);
  const matchExcluded = compile(exclude);
  return (path) => {
    if (exclude.length > 0 && matchExcluded(path)) return false;
    return include.length === 0 || matchAny(path);
  };
}

function compile(globs: readonly string[]): (path: string) => boolean {
  if (globs.length === 0) return () => false;
  const matchers = globs.map((glob) => picomatch(glob.replace(/^\.\//, '').replace(/\/$/, ''), { dot: true, basename: !glob.includes('/') }));
  return (path) => {
    // The path itself, then each ancestor directory: a matched directory selects its subtree.
    for (let candidate = path; candidate !== '' && candidate !== '.'; ) {
      if (matchers.some((matches) => matches(candidate))) return true;
      const slash = candidate.lastIndexOf('/');
      candidate = slash < 0 ? '' : candidate.slice(0, slash);
    }
    return false;
  };
}
