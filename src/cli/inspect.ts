import { hostname } from 'node:os';
import { formatBytes } from '../config/quantity.js';
import { parseCommandLine } from '../config/settings.js';
import { createLogger } from '../log/logger.js';
import { inspectArtifact } from '../artifacts/model-puller.js';
import { parseReference } from '../registry/reference.js';
import { RegistryClient } from '../registry/registry-client.js';
import { runCommand, usageError } from '../artifacts/command-result.js';
import { SignaturePolicy } from '../verify/signature-policy.js';
import { SignatureVerifier } from '../verify/signature-verifier.js';
import { describeOutcome } from '../verify/signature-verdict.js';
import { formatTable } from './table.js';

const USAGE = 'usage: model-csi inspect REFERENCE [--json] [--config FILE]';

/**
 * `model-csi inspect REFERENCE`: what an artifact holds, without pulling it, and the cosign
 * signatures of its digest with the configured keys (`verify` in --config) that verify each.
 */
export async function inspectCommand(argv: string[]): Promise<number> {
  return runCommand('inspect', async () => {
    const { settings, positionals, extra } = parseCommandLine(argv, process.env, hostname(), { json: { type: 'boolean' } });
    if (positionals.length !== 1) throw usageError(USAGE);
    const reference = parseReference(positionals[0]!);
    const logger = createLogger(settings.config.logLevel === 'info' ? 'warn' : settings.config.logLevel);
    const policy = SignaturePolicy.load(settings.config.verify);
    const client = new RegistryClient({ config: settings.config, logger });
    try {
      // Registry only: inspect neither opens nor creates the cache root.
      const inspection = await inspectArtifact(client, reference);
      const rule = policy.ruleFor(`${reference.registry}/${reference.repository}`);
      const examined = await new SignatureVerifier({ policy, client }).examine(reference, inspection.digest, policy.keys(), {});
      const signatures = examined.map(({ found, outcome }) => ({
        form: found.form,
        source: found.source,
        verdict: outcome.verdict,
        verifiedBy: 'keys' in outcome ? outcome.keys.map((key) => key.path) : [],
        description: describeOutcome(found, outcome),
      }));
      const ruleKeys = new Set(rule?.keys.map((key) => key.fingerprint));
      const policyLine =
        rule === undefined
          ? 'no rule matches: not checked'
          : rule.keys.length === 0
            ? `verify[${rule.index}] ("${rule.match}"): matched, not checked`
            : `verify[${rule.index}] ("${rule.match}"): ${examined.some(({ outcome }) => outcome.verdict === 'verified' && outcome.keys.some((key) => ruleKeys.has(key.fingerprint))) ? 'verified' : 'REFUSED'}`;
      if (extra['json'] === true || process.stdout.isTTY !== true) {
        const output = { ...inspection, signatures, policy: policyLine };
        process.stdout.write(`${JSON.stringify(output, null, extra['json'] === true ? 2 : 0)}\n`);
        return 0;
      }
      const lines = [
        `reference   ${inspection.reference}`,
        `digest      ${inspection.digest}${inspection.manifestDigest !== inspection.digest ? ` (manifest ${inspection.manifestDigest})` : ''}`,
        `kind        ${inspection.kind}`,
        `media type  ${inspection.mediaType}${inspection.artifactType ? ` (artifact ${inspection.artifactType})` : ''}`,
        `config      ${inspection.configMediaType ?? '-'}`,
        `size        ${formatBytes(inspection.totalBytes)} in ${inspection.layers.length} layers`,
        '',
      ];
      const rows = inspection.layers.map((layer) => [layer.path ?? '(archive)', layer.format, formatBytes(layer.size), layer.mediaType, layer.digest.slice(0, 19)]);
      const header = ['PATH', 'FORMAT', 'SIZE', 'MEDIA TYPE', 'DIGEST'];
      lines.push(...formatTable(header, rows));
      lines.push('', `policy      ${policyLine}`, `signatures  ${signatures.length === 0 ? 'none found' : ''}`.trimEnd());
      for (const signature of signatures) lines.push(`  ${signature.description}`);
      process.stdout.write(`${lines.join('\n')}\n`);
      return 0;
    } finally {
      await client.close();
    }
  });
}
