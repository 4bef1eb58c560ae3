import { DriverError } from '../errors/driver-error.js';
import { isSha256Digest } from './digest.js';

/**
 * Image references as docker resolves them (github.com/distribution/reference, grammar in
 * reference.go and normalize.go):
 *
 *   reference := name [ ":" tag ] [ "@" digest ]
 *   name      := [domain "/"] path-component ["/" path-component]*
 *
 * The first component is a registry host only when it contains '.' or ':' or is
 * `localhost` (or is not all lowercase); otherwise the name is on Docker Hub, and a
 * single-component Hub name lives under `library/`.
 */
export interface Reference {
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: string;
}

export const DOCKER_HUB = 'docker.io';
/** Docker Hub's API endpoint: `docker.io` names are fetched from here. */
export const DOCKER_HUB_API_HOST = 'registry-1.docker.io';

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^\w[\w.-]{0,127}$/;
const MAX_NAME_LENGTH = 255;

function invalid(input: string, why: string): DriverError {
  return new DriverError('INVALID_REFERENCE', `"${input}" is not a valid reference: ${why}; expected host[:port]/repository[:tag][@sha256:<64 hex>]`);
}

export function parseReference(input: string): Reference {
  if (typeof input !== 'string' || input.length === 0) throw invalid(String(input ?? ''), 'empty');
  if (input.trim() !== input) throw invalid(input, 'leading or trailing whitespace');

  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isSha256Digest(digest)) {
      throw invalid(input, `malformed digest "${digest}": expected sha256 followed by 64 lowercase hex characters`);
    }
  }

  // A tag follows the last ':' that comes after the last '/' (a ':' before it is a port).
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(input, `tag "${tag}" must be 1-128 of [A-Za-z0-9_.-] not starting with '.' or '-'`);
  }

  let registry: string;
  let repository: string;
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  if (slash < 0 || (!first.includes('.') && !first.includes(':') && first !== 'localhost' && first.toLowerCase() === first)) {
    registry = DOCKER_HUB;
    repository = rest;
  } else {
    registry = first;
    repository = rest.slice(slash + 1);
    if (!DOMAIN_RE.test(registry)) throw invalid(input, `registry host "${registry}" is not a valid host[:port]`);
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API_HOST) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && repository.length > 0 && !repository.includes('/')) repository = `library/${repository}`;

  if (repository.length === 0) throw invalid(input, 'no repository name');
  if (repository !== repository.toLowerCase()) throw invalid(input, 'repository name must be lowercase');
  for (const component of repository.split('/')) {
    if (!PATH_COMPONENT_RE.test(component)) {
      throw invalid(input, `repository component "${component}" must be lowercase letters and digits separated by '.', '_', '__' or '-'`);
    }
  }
  if (registry.length + 1 + repository.length > MAX_NAME_LENGTH) throw invalid(input, `name longer than ${MAX_NAME_LENGTH} characters`);

  if (tag === undefined && digest === undefined) tag = 'latest';
  return Object.freeze({ registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) });
}

/** `host/repository[:tag][@digest]`, fully qualified (parses back to the same Reference). */
export function formatReference(ref: Reference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** What to ask the registry for: the digest when pinned, else the tag. */
export function manifestReference(ref: Reference): string {
  return ref.digest ?? ref.tag ?? 'latest';
}

/** The host the distribution API is served from (`docker.io` → `registry-1.docker.io`). */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API_HOST : registry;
}
