/**
 * A docker token-auth server (https://distribution.github.io/distribution/spec/auth/token/)
 * for the bearer flow against the real docker-registry: `auth.token` in the registry's config
 * points its realm here and trusts our signing certificate (`rootcertbundle`).
 *
 * Tokens are ES256 JWTs whose `kid` is the libtrust key id of the signing key, which is how
 * distribution 2.x finds the verifying key in the root bundle.
 */
import { createHash, createPrivateKey, createPublicKey, randomUUID, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { rmSync } from 'node:fs';
import { makeSelfSignedCert } from './tls.js';
import type { TokenAuthOptions } from './registry.js';

interface TokenRequestRecord {
  method: string;
  scope: string[];
  service: string | null;
  /** The user that authenticated (basic or refresh token), or undefined for anonymous. */
  user?: string;
  grantType?: string;
}

export interface TokenServerOptions {
  /** user → password accepted with Basic auth. */
  users?: Record<string, string>;
  /** refresh token (docker `identitytoken`) → user, accepted by the OAuth2 POST flow. */
  refreshTokens?: Record<string, string>;
  /** Hand out tokens without credentials. Default false. */
  anonymous?: boolean;
  /** `expires_in` in the response; omitted when undefined (clients default to 60s). */
  expiresIn?: number;
  /** JWT lifetime as the registry sees it. Default 300s. */
  jwtLifetime?: number;
  /** Which field carries the token. Default 'token'. */
  field?: 'token' | 'access_token';
}

export interface TokenServer extends TokenAuthOptions {
  requests: TokenRequestRecord[];
  /** A token for pushing (pull+push on the repository), e.g. `Bearer ${mint('m/x')}`. */
  mint(repository: string, actions?: string[]): string;
  close(): Promise<void>;
}

function base64url(input: Buffer | string): string {
  return Buffer.from(input).toString('base64url');
}

/** libtrust's key id: SHA-256 of the DER SPKI, first 240 bits, base32 in 12 groups of 4. */
function libtrustKeyId(spkiDer: Buffer): string {
  const hash = createHash('sha256').update(spkiDer).digest().subarray(0, 30);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  let out = '';
  for (const byte of hash) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  return out.match(/.{4}/g)!.join(':');
}

function parseScopes(values: string[]): Array<{ type: string; name: string; actions: string[] }> {
  return values.flatMap((scope) => {
    // repository:name[:port/path]:actions: the name may contain ':' (a port), actions are last.
    const first = scope.indexOf(':');
    const last = scope.lastIndexOf(':');
    if (first < 0 || last === first) return [];
    return [{ type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(',') }];
  });
}

async function readBody(req: IncomingMessage): Promise<string> {
  let text = '';
  for await (const chunk of req) text += chunk;
  return text;
}

export async function startTokenServer(options: TokenServerOptions = {}): Promise<TokenServer> {
  const cert = makeSelfSignedCert({ keyType: 'ec', commonName: 'model-csi-token-issuer' });
  const key = createPrivateKey(cert.keyPem);
  const kid = libtrustKeyId(createPublicKey(cert.keyPem).export({ format: 'der', type: 'spki' }));
  const service = 'model-csi-test-registry';
  const issuer = 'model-csi-test-issuer';
  const requests: TokenRequestRecord[] = [];

  const jwt = (subject: string, access: ReturnType<typeof parseScopes>): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = base64url(JSON.stringify({ typ: 'JWT', alg: 'ES256', kid }));
    const claims = base64url(
      JSON.stringify({ iss: issuer, sub: subject, aud: service, exp: now + (options.jwtLifetime ?? 300), nbf: now - 10, iat: now, jti: randomUUID(), access }),
    );
    const signature = sign('sha256', Buffer.from(`${header}.${claims}`), { key, dsaEncoding: 'ieee-p1363' });
    return `${header}.${claims}.${base64url(signature)}`;
  };

  const server: Server = createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://token');
    const deny = () => {
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    };
    let user: string | undefined;
    let scopes = url.searchParams.getAll('scope');
    let grantType: string | undefined;
    let svc = url.searchParams.get('service');
    if (req.method === 'POST') {
      // OAuth2 flow: form body with grant_type=refresh_token (docker's identitytoken).
      const form = new URLSearchParams(await readBody(req));
      grantType = form.get('grant_type') ?? undefined;
      scopes = form.getAll('scope').flatMap((s) => s.split(' '));
      svc = form.get('service');
      if (grantType === 'refresh_token') user = options.refreshTokens?.[form.get('refresh_token') ?? ''];
      else if (grantType === 'password') {
        const u = form.get('username') ?? '';
        if (options.users?.[u] !== undefined && options.users[u] === form.get('password')) user = u;
      }
      if (user === undefined) return deny();
    } else {
      const header = req.headers.authorization;
      if (header?.startsWith('Basic ')) {
        const decoded = Buffer.from(header.slice(6), 'base64').toString();
        const colon = decoded.indexOf(':');
        const u = decoded.slice(0, colon);
        if (options.users?.[u] === undefined || options.users[u] !== decoded.slice(colon + 1)) {
          requests.push({ method: 'GET', scope: scopes, service: svc, user: undefined });
          return deny();
        }
        user = u;
      } else if (!options.anonymous) {
        requests.push({ method: 'GET', scope: scopes, service: svc });
        return deny();
      }
    }
    requests.push({ method: req.method ?? 'GET', scope: scopes, service: svc, user, grantType });
    const token = jwt(user ?? '', parseScopes(scopes).map((s) => ({ ...s, actions: s.actions.filter((a) => a === 'pull') })));
    const body: Record<string, unknown> = { [options.field ?? 'token']: token, issued_at: new Date().toISOString() };
    if (options.expiresIn !== undefined) body.expires_in = options.expiresIn;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    rootCertBundle: cert.certFile,
    requests,
    mint: (repository, actions = ['pull', 'push']) => jwt('pusher', [{ type: 'repository', name: repository, actions }]),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(cert.dir, { recursive: true, force: true });
    },
  };
}
