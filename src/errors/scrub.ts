/**
 * Last line of defence against credentials reaching logs, events or errors. Code must not
 * put secrets in messages to begin with; this catches the shapes that slip through when a
 * lower layer (an HTTP library, a URL) echoes them back.
 */
const PATTERNS: Array<[RegExp, string]> = [
  // user:password@host in URLs
  [/(\b[a-z][a-z0-9+.-]*:\/\/)[^/\s:@]+:[^/\s@]+@/gi, '$1***@'],
  // Authorization headers and bearer tokens
  [/\b(authorization\s*[:=]\s*)(basic|bearer)\s+[A-Za-z0-9._~+/=-]+/gi, '$1$2 ***'],
  [/\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}/gi, '$1 ***'],
  // JSON-ish credential fields
  [/("?(?:password|auth|identitytoken|registrytoken|token|access_token|refresh_token)"?\s*[:=]\s*")[^"]*(")/gi, '$1***$2'],
];

export function scrubSecrets(text: string): string {
  let out = text;
  for (const [re, replacement] of PATTERNS) out = out.replace(re, replacement);
  return out;
}
