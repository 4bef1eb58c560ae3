import { readPackageVersion } from './package-info.js';

export async function versionCommand(): Promise<number> {
  process.stdout.write(`model-csi ${readPackageVersion()}\n`);
  return 0;
}
