import { lstat, mkdir, open, realpath, rmdir, stat, unlink } from 'node:fs/promises';
import { isAbsolute, join, resolve, sep } from 'node:path';
import type { CallContext } from '../csi/call-wrapper.js';
import type { NodePublishVolumeRequest } from '../csi/types.js';
import { checkVolumeCapability, requireField } from '../csi/volume-capability.js';
import { DriverError } from '../errors/driver-error.js';
import { parseDockerConfig } from '../registry/auth/docker-config.js';
import type { PodRef } from '../kube/event-sink.js';
import type { AcquiredModel } from './model-source.js';
import type { NodeDeps } from './node-deps.js';
import { publishFingerprint } from './publish-fingerprint.js';
import { parseVolumeAttributes } from './volume-attributes.js';
import type { VolumeRecord } from './volume-records.js';

/** Time kept back from kubelet's deadline so our answer (with progress) reaches it in time. */
const DEADLINE_MARGIN_MS = 3_000;

/**
 * NodePublishVolume (spec "NodePublishVolume"): argument checks first, then, under the
 * target's lock, the idempotency table: same target + same arguments → OK; same target +
 * other arguments → ALREADY_EXISTS; otherwise acquire the model and bind-mount it read-only.
 */
export async function publishVolume(deps: NodeDeps, request: NodePublishVolumeRequest, context: CallContext): Promise<object> {
  requireField(request.volume_id, 'volume_id');
  requireField(request.target_path, 'target_path');
  requireField(request.volume_capability, 'volume_capability');
  if (!isAbsolute(request.target_path)) {
    throw new DriverError('INVALID_ARGUMENT', `target_path must be absolute, got "${request.target_path}"`);
  }
  checkVolumeCapability(request.volume_capability!, request.readonly);
  const attributes = parseVolumeAttributes(request.volume_context);
  const dockerConfigJson = pullSecret(request.secrets);
  const target = resolve(request.target_path);
  const fingerprint = publishFingerprint(request);

  return deps.locks.run(target, async () => {
    const existing = deps.records.get(target);
    const mounted = await deps.mounter.isMountPoint(target);
    if (existing !== undefined && mounted) {
      if (existing.fingerprint === fingerprint) return {};
      throw new DriverError(
        'VOLUME_CONFLICT',
        `${target} is already published (volume ${existing.volumeId}) with different arguments; unpublish it first`,
      );
    }
    if (existing !== undefined) await deps.records.remove(existing); // stale: the kernel says it is not mounted

    const waitMs = Math.max(0, Math.min(deps.publishWaitMs, context.deadline - Date.now() - DEADLINE_MARGIN_MS));
    const model = await deps.modelSource.acquire(
      {
        reference: attributes.reference,
        include: attributes.include,
        exclude: attributes.exclude,
        pullPolicy: attributes.pullPolicy,
        ...(dockerConfigJson === undefined ? {} : { dockerConfigJson }),
        ...podOf(request.volume_context),
      },
      { waitMs, log: context.log },
    );
    const source = await modelSource(model, attributes.subPath, attributes.reference);
    const record: VolumeRecord = {
      version: 1,
      volumeId: request.volume_id,
      targetPath: target,
      fingerprint,
      modelKey: model.modelKey,
      modelPath: model.path,
      digest: model.digest,
      subPath: attributes.subPath,
      sourcePath: source.path,
      publishedAt: new Date().toISOString(),
    };

    if (mounted) {
      // Mounted but unrecorded: our own mount whose record a crash lost (same inode as the
      // source), or a foreign one that must not be stacked on or taken over.
      if (await sameFile(source.path, target)) {
        await deps.records.put(record);
        context.log.info({ target }, 'adopted an existing mount of this volume');
        return {};
      }
      throw new DriverError('VOLUME_CONFLICT', `${target} already holds a mount that is not volume ${request.volume_id}; unpublish it first`);
    }

    const created = await createTarget(target, source.isDirectory);
    try {
      await deps.mounter.bindReadOnly(source.path, target);
    } catch (err) {
      if (created) await removeCreated(target, source.isDirectory);
      throw err;
    }
    try {
      await deps.records.put(record);
    } catch (err) {
      await deps.mounter.unmount(target).catch(() => undefined);
      if (created) await removeCreated(target, source.isDirectory);
      throw err;
    }
    deps.metrics.mountedVolumes.set(deps.records.list().length);
    context.log.info({ target, model: model.modelKey, digest: model.digest, subPath: attributes.subPath }, 'volume published');
    return {};
  });
}

/** The pod kubelet publishes for (CSIDriver podInfoOnMount), when it said. */
function podOf(context: Readonly<Record<string, string>> | undefined): { pod?: PodRef } {
  const namespace = context?.['csi.storage.k8s.io/pod.namespace'];
  const name = context?.['csi.storage.k8s.io/pod.name'];
  const uid = context?.['csi.storage.k8s.io/pod.uid'];
  return namespace && name && uid ? { pod: { namespace, name, uid } } : {};
}

/**
 * `.dockerconfigjson` of a `kubernetes.io/dockerconfigjson` Secret, refused early (before any
 * lock or pull) by the same parser the registry client uses; its content never reaches a message.
 */
function pullSecret(secrets: Readonly<Record<string, string>> | undefined): string | undefined {
  const value = secrets?.['.dockerconfigjson'];
  if (value === undefined || value === '') return undefined;
  parseDockerConfig(value, "the pull secret's .dockerconfigjson (recreate it with kubectl create secret docker-registry)", 'INVALID_SECRET');
  return value;
}

/** The model directory, or its subPath, which must exist inside the model (symlinks resolved). */
async function modelSource(model: AcquiredModel, subPath: string | undefined, reference: string): Promise<{ path: string; isDirectory: boolean }> {
  if (subPath === undefined) return { path: model.path, isDirectory: true };
  const notFound = (why: string) =>
    new DriverError('SUBPATH_NOT_FOUND', `subPath "${subPath}" ${why} in model ${reference} (${model.digest})`);
  let real: string;
  try {
    real = await realpath(join(model.path, subPath));
  } catch {
    throw notFound('does not exist');
  }
  const modelRoot = await realpath(model.path);
  if (real !== modelRoot && !real.startsWith(modelRoot + sep)) throw notFound('resolves outside the model');
  const info = await stat(real);
  if (!info.isDirectory() && !info.isFile()) throw notFound('is neither a directory nor a regular file');
  return { path: real, isDirectory: info.isDirectory() };
}

/**
 * The driver creates the target (spec: the SP creates the target path); only its last
 * component, the parent belongs to kubelet. A file source needs a file to mount onto.
 * Returns whether it was created here.
 */
async function createTarget(target: string, directory: boolean): Promise<boolean> {
  const existing = await lstat(target).catch(() => undefined);
  if (existing !== undefined) {
    if (existing.isDirectory() === directory) return false;
    throw new DriverError('INVALID_ARGUMENT', `target_path ${target} exists and is not a ${directory ? 'directory' : 'file'}`);
  }
  try {
    if (directory) await mkdir(target, { mode: 0o750 });
    else await (await open(target, 'wx', 0o640)).close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new DriverError('INVALID_ARGUMENT', `the parent directory of target_path ${target} does not exist`);
    throw err;
  }
  return true;
}

/** Undo createTarget: never recursive, so nothing below a stray mount can be deleted. */
async function removeCreated(target: string, directory: boolean): Promise<void> {
  await (directory ? rmdir(target) : unlink(target)).catch(() => undefined);
}

async function sameFile(a: string, b: string): Promise<boolean> {
  const [x, y] = await Promise.all([stat(a), stat(b)]).catch(() => [undefined, undefined]);
  return x !== undefined && y !== undefined && x.dev === y.dev && x.ino === y.ino;
}
