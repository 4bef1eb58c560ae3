import { createHash } from 'node:crypto';
import { DriverError, type ErrorCode } from '../../errors/driver-error.js';

/**
 * Docker `config.json` / `kubernetes.io/dockerconfigjson` payloads and kubelet's rules for
 * matching their keys to an image (k8s.io/kubernetes/pkg/credentialprovider/keyring.go):
 *
 * - a key may carry a scheme (`https://r.example.com`) or not; a `/v1/` or `/v2/` path is
 *   the host alone, so `https://index.docker.io/v1/` is the key `index.docker.io`;
 * - a key matches `host/repository` when the port is equal, the host has the same number
 *   of dot-separated parts and each matches as a glob (`*.example.com` covers
 *   `a.example.com`, not `a.b.example.com`), and the key's path is a prefix of the
 *   repository path;
 * - keys are tried most specific first (reverse lexical order, as kubelet sorts them);
 * - a Docker Hub image with no other match uses the `index.docker.io` entry.
 */
export interface Credential {
  username?: string;
  password?: string;
  /** OAuth2 refresh token (docker's `identitytoken`): exchanged at the token realm by POST. */
  identityToken?: string;
  /** A bearer token used as is (docker's `registrytoken`). */
  registryToken?: string;
  /**
   * A stable identity for cache keys: a hash of the secret material, never the material.
   * Two different passwords for one user must not share cached tokens.
   */
  readonly id: string;
}

export interface DockerConfigEntry {
  /** Normalised key: `host[:port][/path]`. */
  key: string;
  credential: Credential;
}

interface RawEntry {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
  identitytoken?: unknown;
  registrytoken?: unknown;
}

const DOCKER_HUB_KEY_HOST = 'index.docker.io';

function credentialId(c: Omit<Credential, 'id'>): string {
  const material = JSON.stringify([c.username ?? '', c.password ?? '', c.identityToken ?? '', c.registryToken ?? '']);
  return createHash('sha256').update(material).digest('hex').slice(0, 16);
}

function makeCredential(c: Omit<Credential, 'id'>): Credential {
  return Object.freeze({ ...c, id: credentialId(c) });
}

/** `https://host/v1/` → `host`; `host/path` → `host/path` (kubelet's BasicDockerKeyring.Add). */
export function normalizeKey(raw: string): string | undefined {
  const withScheme = /^https?:\/\//i.test(raw) ? raw : `https://${raw}`;
  let parsed: URL;
  try {
    parsed = new URL(withScheme);
  } catch {
    return undefined;
  }
  if (parsed.host === '') return undefined;
  let path = decodeURIComponent(parsed.pathname);
  if (path.startsWith('/v2/') || path.startsWith('/v1/')) path = path.slice(3);
  return path.length > 0 && path !== '/' ? parsed.host + path : parsed.host;
}

function decodeEntry(key: string, entry: RawEntry, source: string, code: ErrorCode): Credential {
  const str = (v: unknown) => (typeof v === 'string' && v.length > 0 ? v : undefined);
  let username = str(entry.username);
  let password = str(entry.password);
  const auth = str(entry.auth);
  if (auth !== undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    // Never echo the decoded value: it is the password.
    if (colon <= 0) throw new DriverError(code, `${source}: the "auth" field for ${key} is not base64 of "username:password"`);
    username = decoded.slice(0, colon);
    password = decoded.slice(colon + 1);
  }
  return makeCredential({
    ...(username !== undefined ? { username } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(str(entry.identitytoken) !== undefined ? { identityToken: str(entry.identitytoken) } : {}),
    ...(str(entry.registrytoken) !== undefined ? { registryToken: str(entry.registrytoken) } : {}),
  });
}

/**
 * Parses a docker config (`{"auths": {…}}`) or a legacy `.dockercfg` (the map itself).
 * `code` is the error to raise: INVALID_SECRET for a pod's pull secret, CONFIG_INVALID for
 * the node-wide file. Messages name the source and the key, never a credential.
 */
export function parseDockerConfig(text: string, source: string, code: ErrorCode = 'INVALID_SECRET'): DockerConfigEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new DriverError(code, `${source} is not valid JSON; expected a docker config with an "auths" map`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new DriverError(code, `${source} is not a JSON object; expected a docker config with an "auths" map`);
  }
  const obj = json as Record<string, unknown>;
  const auths = 'auths' in obj ? obj.auths : obj;
  if (auths === null || typeof auths !== 'object' || Array.isArray(auths)) {
    throw new DriverError(code, `${source}: "auths" must be an object mapping registry hosts to credentials`);
  }
  const entries: DockerConfigEntry[] = [];
  for (const [rawKey, value] of Object.entries(auths as Record<string, unknown>)) {
    if (value === null || typeof value !== 'object') continue; // e.g. credHelpers-style junk: ignore as docker does
    const key = normalizeKey(rawKey);
    if (key === undefined) continue; // kubelet logs and ignores unparsable keys
    entries.push({ key, credential: decodeEntry(key, value as RawEntry, source, code) });
  }
  // Most specific first, as kubelet's reverse-sorted index.
  entries.sort((a, b) => (a.key < b.key ? 1 : a.key > b.key ? -1 : 0));
  return entries;
}

function splitHost(hostPort: string): { parts: string[]; port: string } {
  const m = /^(.*?)(?::(\d+))?$/.exec(hostPort)!;
  return { parts: m[1]!.split('.'), port: m[2] ?? '' };
}

/** Go's filepath.Match for one host label (`*`, `?`, no separators inside a label). */
function globMatch(glob: string, text: string): boolean {
  const re = new RegExp('^' + glob.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^.]*').replace(/\?/g, '[^.]') + '$');
  return re.test(text);
}

/** kubelet's urlsMatch for a normalised key against `host[:port]/repository`. */
export function keyMatches(key: string, target: string): boolean {
  const keySlash = key.indexOf('/');
  const targetSlash = target.indexOf('/');
  const keyHost = keySlash < 0 ? key : key.slice(0, keySlash);
  const keyPath = keySlash < 0 ? '' : key.slice(keySlash);
  const targetHost = targetSlash < 0 ? target : target.slice(0, targetSlash);
  const targetPath = targetSlash < 0 ? '' : target.slice(targetSlash);
  const k = splitHost(keyHost.toLowerCase());
  const t = splitHost(targetHost.toLowerCase());
  if (k.port !== t.port || k.parts.length !== t.parts.length) return false;
  if (!targetPath.startsWith(keyPath)) return false;
  return k.parts.every((part, i) => globMatch(part, t.parts[i]!));
}

/**
 * Credentials for `host/repository`, most specific first. `host` is the registry as named in
 * the reference (`docker.io`, not its API host).
 */
export function lookupCredentials(entries: readonly DockerConfigEntry[], host: string, repository: string): Credential[] {
  const target = `${host}/${repository}`;
  const found = entries.filter((e) => keyMatches(e.key, target)).map((e) => e.credential);
  if (found.length > 0) return found;
  if (host === 'docker.io' || host === DOCKER_HUB_KEY_HOST) {
    return entries.filter((e) => e.key === DOCKER_HUB_KEY_HOST || e.key === 'registry-1.docker.io').map((e) => e.credential);
  }
  return [];
}
