import { readFileSync } from 'node:fs';

/**
 * Who this driver is: the CSI name it registers with kubelet and answers in GetPluginInfo,
 * and its version (package.json's, read once: dist/ and src/ both sit one level below it).
 * Both the driver and the CLI (`model-csi version`, the start-up wiring) read them here.
 */
export const DRIVER_NAME = 'model.csi.example.org';

let cached: string | undefined;
export function driverVersion(): string {
  cached ??= (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  return cached;
}
