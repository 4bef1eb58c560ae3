import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed certificate and its key, as PEM files in a temp dir (removed by the caller). */
export interface CertFiles {
  dir: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

export interface CertOptions {
  /** Subject alternative names; default the loopback names a test registry is reached by. */
  altNames?: string[];
  commonName?: string;
  /** `ec` (P-256, for ES256 JWT signing) or `rsa`. */
  keyType?: 'ec' | 'rsa';
  dir?: string;
}

/**
 * Generates a self-signed certificate with openssl (Debian's, always present where
 * docker-registry is). Used both as a registry's TLS certificate and as the token
 * server's signing certificate (`auth.token.rootcertbundle`).
 */
export function makeSelfSignedCert(options: CertOptions = {}): CertFiles {
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), 'model-csi-tls-'));
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const altNames = options.altNames ?? ['IP:127.0.0.1', 'DNS:localhost', 'IP:::1'];
  const keyArgs =
    (options.keyType ?? 'ec') === 'ec'
      ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1']
      : ['-newkey', 'rsa:2048'];
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', ...keyArgs, '-nodes', '-days', '2',
        '-keyout', keyFile, '-out', certFile,
        '-subj', `/CN=${options.commonName ?? 'model-csi-test'}`,
        '-addext', `subjectAltName=${altNames.join(',')}`,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
  } catch (err) {
    throw new Error(`openssl could not make a test certificate (is openssl installed?): ${(err as Error).message}`);
  }
  return { dir, certFile, keyFile, certPem: readFileSync(certFile, 'utf8'), keyPem: readFileSync(keyFile, 'utf8') };
}
