import assert from 'node:assert/strict';
import fs from 'node:fs';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { CredentialStore } from '../../../src/registry/auth/credentials.js';

function config(host: string, user: string, password: string): string {
  return JSON.stringify({ auths: { [host]: { auth: Buffer.from(`${user}:${password}`).toString('base64') } } });
}

/** Run `body` with the sync file calls of node:fs throwing: they block the event loop of every call. */
async function withoutSyncFileIo(body: () => Promise<void>): Promise<void> {
  const patched = fs as unknown as Record<string, unknown>;
  const names = ['statSync', 'readFileSync', 'existsSync', 'lstatSync'];
  const originals = names.map((name) => patched[name]);
  for (const name of names) {
    patched[name] = () => {
      throw new Error(`${name} called on the request path`);
    };
  }
  syncBuiltinESMExports();
  try {
    await body();
  } finally {
    names.forEach((name, i) => (patched[name] = originals[i]));
    syncBuiltinESMExports();
  }
}

test('credential look-ups read the node docker config without sync file I/O and still pick up a changed file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'model-csi-credentials-'));
  try {
    const path = join(dir, 'config.json');
    await writeFile(path, config('reg.example', 'alice', 'first'));
    await withoutSyncFileIo(async () => {
      const store = new CredentialStore(path, pino({ level: 'silent' }));
      assert.equal((await store.lookup('reg.example', 'm/x'))?.password, 'first');
      // kubelet updates a mounted Secret in place: a new mtime means a re-read.
      await writeFile(path, config('reg.example', 'alice', 'second'));
      await utimes(path, new Date(), new Date(Date.now() + 5000));
      assert.equal((await store.lookup('reg.example', 'm/x'))?.password, 'second');
      // The pull secret of the call wins over the node file.
      assert.equal((await store.lookup('reg.example', 'm/x', { dockerConfigJson: config('reg.example', 'bob', 'pod') }))?.username, 'bob');
      await rm(path);
      assert.equal(await store.lookup('reg.example', 'm/x'), undefined, 'a removed file means no node credentials');
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
