import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { requireTool } from './artifacts.js';

/**
 * The real cosign (v2.6, from the Go module proxy: scripts/install-test-deps.sh), offline:
 * key pairs it generates (or imports from PEM), signatures pushed to the loopback registry
 * over plain HTTP, no transparency log, no TUF, no Fulcio.
 */
export interface CosignKey {
  /** cosign.key (encrypted with PASSWORD) */
  key: string;
  /** cosign.pub (PEM SubjectPublicKeyInfo) */
  pub: string;
}

const PASSWORD = 'model-csi-test';

function cosign(work: string, args: string[]): string {
  const bin = requireTool('cosign', 'go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5');
  const home = join(work, 'cosign-home');
  mkdirSync(home, { recursive: true });
  // HOME of its own: nothing read from or written to ~/.sigstore or ~/.docker of the machine.
  const out = spawnSync(bin, args, { cwd: work, encoding: 'utf8', env: { PATH: process.env['PATH'] ?? '', HOME: home, COSIGN_PASSWORD: PASSWORD, COSIGN_YES: 'true' }, timeout: 60_000 });
  if (out.status !== 0) throw new Error(`cosign ${args[0]} failed (${out.status ?? out.signal}): ${out.stderr}${out.stdout}`);
  return out.stdout;
}

/** `cosign generate-key-pair`: ECDSA P-256, cosign's default. */
export function generateKeyPair(work: string, name: string): CosignKey {
  cosign(work, ['generate-key-pair', '--output-key-prefix', name]);
  return { key: join(work, `${name}.key`), pub: join(work, `${name}.pub`) };
}

/** `cosign import-key-pair` of a PEM private key (RSA, ECDSA P-384, Ed25519…). */
export function importKeyPair(work: string, pem: string, name: string): CosignKey {
  cosign(work, ['import-key-pair', '--key', pem, '--output-key-prefix', name]);
  return { key: join(work, `${name}.key`), pub: join(work, `${name}.pub`) };
}

export interface SignOptions {
  /** A sigstore bundle attached as an OCI 1.1 referrer instead of the classic `.sig` tag. */
  bundle?: boolean;
  /** What the classic payload names as docker-reference (cosign --sign-container-identity). */
  identity?: string;
}

/** `cosign sign --key` of `reference` (`host/repo@sha256:…`), offline. */
export function sign(work: string, reference: string, key: CosignKey, options: SignOptions = {}): void {
  cosign(work, [
    'sign',
    '--key',
    key.key,
    '--tlog-upload=false',
    '--allow-http-registry',
    '--allow-insecure-registry',
    ...(options.bundle ? ['--new-bundle-format', '--use-signing-config=false'] : []),
    ...(options.identity ? ['--sign-container-identity', options.identity] : []),
    reference,
  ]);
}
