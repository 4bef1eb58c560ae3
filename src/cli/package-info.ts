import { readFileSync } from 'node:fs';

/** The version GetPluginInfo reports: package.json's, read once (dist/ and src/ both sit one level below it). */
let cached: string | undefined;
export function readPackageVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}

export const DRIVER_NAME = 'model.csi.example.org';
