import { DRIVER_NAME, driverVersion } from './driver-identity.js';
import type { CsiHandlers } from '../csi/call-wrapper.js';

export interface IdentityOptions {
  /** Claimed only by a process that serves the Controller service (`controller`, or `node --serve-controller`). */
  controllerService: boolean;
  /** Probe's readiness (the node: its cache root is a writable directory). */
  ready: () => Promise<boolean>;
}

/** CSI Identity service (spec "Identity Service RPC"). */
export function identityHandlers(options: IdentityOptions): CsiHandlers {
  return {
    async GetPluginInfo() {
      return { name: DRIVER_NAME, vendor_version: driverVersion(), manifest: {} };
    },
    async GetPluginCapabilities() {
      // VOLUME_ACCESSIBILITY_CONSTRAINTS is not claimed: any node can pull any model.
      return { capabilities: options.controllerService ? [{ service: { type: 'CONTROLLER_SERVICE' } }] : [] };
    },
    async Probe() {
      return { ready: { value: await options.ready() } };
    },
  };
}
