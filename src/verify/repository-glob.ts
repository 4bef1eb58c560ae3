import picomatch from 'picomatch';

/**
 * The `verify[].match` globs: picomatch over `host[:port]/repository` (`*` stays inside one
 * path segment, `**` crosses them), the same engine as include/exclude (artifacts/selection.ts)
 * without its path-only rules (base-name matching, `./` and trailing slashes).
 */
export type RepositoryMatcher = (repository: string) => boolean;

const OPTIONS = { dot: true, strictBrackets: true } as const;

export function compileRepositoryGlob(glob: string): RepositoryMatcher {
  return picomatch(glob, OPTIONS);
}

/** Why `glob` cannot be a rule's match (undefined when it can): checked once, at start-up. */
export function repositoryGlobProblem(glob: string): string | undefined {
  if (/\s/.test(glob)) return `the glob "${glob}" holds white space`;
  // What is matched is host[:port]/repository, never a tag or digest: a glob naming one would never match.
  if (glob.includes('@')) return `the glob "${glob}" names a digest; match host[:port]/repository only`;
  if (glob.split('/').slice(1).some((segment) => segment.includes(':'))) return `the glob "${glob}" names a tag; match host[:port]/repository only`;
  try {
    compileRepositoryGlob(glob);
  } catch (err) {
    return `the glob "${glob}" is not valid: ${(err as Error).message}`;
  }
  return undefined;
}
