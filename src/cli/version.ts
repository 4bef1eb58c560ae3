import { driverVersion } from '../node/driver-identity.js';

export async function versionCommand(): Promise<number> {
  process.stdout.write(`model-csi ${driverVersion()}\n`);
  return 0;
}
