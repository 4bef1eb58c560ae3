/**
 * `WWW-Authenticate` parsing (RFC 7235 §4.1): one or more challenges, each a scheme followed
 * by comma-separated auth-params whose values are tokens or quoted strings. A registry sends
 * `Bearer realm="…",service="…",scope="…"` (docker token auth spec) or `Basic realm="…"`.
 */
export interface Challenge {
  /** Lowercased scheme: `bearer`, `basic`, … */
  scheme: string;
  /** Lowercased parameter names → values (quotes and escapes removed). */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const SPACES = /[ \t]*/y;

export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  if (header === undefined) return [];
  if (Array.isArray(header)) return header.flatMap((h) => parseChallenges(h));
  const out: Challenge[] = [];
  let pos = 0;
  const skipSpaces = () => {
    SPACES.lastIndex = pos;
    SPACES.exec(header);
    pos = SPACES.lastIndex;
  };
  const token = (): string | undefined => {
    TOKEN.lastIndex = pos;
    const m = TOKEN.exec(header);
    if (!m) return undefined;
    pos = TOKEN.lastIndex;
    return m[0];
  };
  const quoted = (): string => {
    // at the opening quote
    let value = '';
    pos++;
    while (pos < header.length && header[pos] !== '"') {
      if (header[pos] === '\\' && pos + 1 < header.length) pos++;
      value += header[pos];
      pos++;
    }
    pos++; // closing quote (or end)
    return value;
  };

  while (pos < header.length) {
    skipSpaces();
    if (header[pos] === ',') {
      pos++;
      continue;
    }
    const scheme = token();
    if (scheme === undefined) break; // malformed: keep what we have
    const challenge: Challenge = { scheme: scheme.toLowerCase(), params: {} };
    out.push(challenge);
    for (;;) {
      skipSpaces();
      const start = pos;
      const name = token();
      if (name === undefined) break;
      skipSpaces();
      if (header[pos] !== '=') {
        // A token not followed by '=' starts the next challenge (or is token68 we ignore).
        pos = start;
        break;
      }
      pos++;
      skipSpaces();
      let value: string;
      if (header[pos] === '"') value = quoted();
      else value = token() ?? '';
      challenge.params[name.toLowerCase()] = value;
      skipSpaces();
      if (header[pos] === ',') pos++;
      else break;
    }
    if (pos < header.length && header[pos] !== ',' && !/[A-Za-z]/.test(header[pos]!)) pos++;
  }
  return out;
}

/** The repository scope a pull needs (token spec: `repository:<name>:pull`). */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}
