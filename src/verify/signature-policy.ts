import { createHash } from 'node:crypto';
import type { VerifyRule } from '../config/schema.js';
import { loadPublicKey, type PublicKey } from './public-key.js';
import { compileRepositoryGlob, type RepositoryMatcher } from './repository-glob.js';

/**
 * The `verify` rules of the config, compiled once at start-up: globs compiled, every key
 * file read and parsed (a bad one is CONFIG_INVALID there, never at a publish). The first rule
 * whose glob matches `host[:port]/repository` applies; a reference no rule matches is not
 * checked.
 */
export interface PolicyRule {
  /** Position in the config, for messages (`verify[0]`). */
  index: number;
  match: string;
  /** Empty: matched, not checked. */
  keys: readonly PublicKey[];
  /**
   * Names what the rule demands (glob and key fingerprints): a verification result is reused
   * only under the same id, so a key added or removed at a restart re-verifies.
   */
  id: string;
}

export class SignaturePolicy {
  private constructor(private readonly rules: ReadonlyArray<PolicyRule & { matches: RepositoryMatcher }>) {}

  static load(rules: readonly VerifyRule[]): SignaturePolicy {
    const keys = new Map<string, PublicKey>();
    return new SignaturePolicy(
      rules.map((rule, index) => {
        const loaded = rule.keys.map((path) => {
          let key = keys.get(path);
          if (!key) keys.set(path, (key = loadPublicKey(path, `verify[${index}]`)));
          return key;
        });
        const id = createHash('sha256')
          .update(JSON.stringify([rule.match, loaded.map((key) => key.fingerprint).sort()]))
          .digest('hex')
          .slice(0, 16);
        return { index, match: rule.match, keys: loaded, id, matches: compileRepositoryGlob(rule.match) };
      }),
    );
  }

  /** The rule for `host[:port]/repository`, or undefined: not checked. */
  ruleFor(repository: string): PolicyRule | undefined {
    return this.rules.find((rule) => rule.matches(repository));
  }

  /** Every configured key once (`inspect` shows which of them verify a signature). */
  keys(): PublicKey[] {
    return [...new Map(this.rules.flatMap((rule) => rule.keys).map((key) => [key.fingerprint, key])).values()];
  }

  get empty(): boolean {
    return this.rules.length === 0;
  }
}
