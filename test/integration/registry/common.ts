import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { configFileSchema, type ConfigFile } from '../../../src/config/schema.js';
import { Metrics } from '../../../src/metrics/metrics.js';
import { RegistryClient } from '../../../src/registry/registry-client.js';

/** A client with short retry delays and a logger whose output the test can search. */
export function makeClient(config: Record<string, unknown> = {}): { client: RegistryClient; logs: string[]; metrics: Metrics; logger: Logger } {
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      cb();
    },
  });
  const logger = pino({ level: 'trace' }, sink);
  const metrics = new Metrics({ defaultMetrics: false });
  const parsed: ConfigFile = configFileSchema.parse(config);
  const client = new RegistryClient({ config: parsed, logger, metrics, retry: { baseDelayMs: 10, maxDelayMs: 50 } });
  return { client, logs, metrics, logger };
}

export function dockerConfigJson(host: string, user: string, password: string): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });
}

export async function readAll(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c);
  return Buffer.concat(chunks);
}
