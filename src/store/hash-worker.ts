/**
 * The hash worker thread of blob-hasher.ts: one sha256 per open blob, fed parts that are
 * either offsets into the shared piece arena (read in place, no copy) or bytes copied over.
 * Answers every `update` (so the piece may be reused) and `digest`; `open`, `memory` and
 * `discard` are not answered. Loaded only as a Worker, never imported for its values.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import type { SharedMemory } from '../fs/piece-pool.js';

export type HashPart =
  | { offset: number; length: number }
  | { bytes: Uint8Array }
  /** Bytes read back from a file: a piece a resumed ranged download kept (ranged-download.ts). */
  | { path: string; at: number; length: number };

export type HashRequest =
  /** The pool made, grew or dropped its arena (piece-pool.ts): this view has its new length. */
  | { op: 'memory'; memory: SharedMemory | undefined }
  /** A new blob; its first `prefix` bytes are read back from the file at `path` (a resumed download). */
  | { op: 'open'; id: number; path: string | undefined; prefix: number }
  | { op: 'update'; id: number; parts: HashPart[] }
  | { op: 'digest'; id: number }
  | { op: 'discard'; id: number };

export type HashReply = { id: number; hex?: string; error?: string };

export interface HashWorkerData {
  memory: SharedMemory | undefined;
}

const PREFIX_READ_BYTES = 4 * 2 ** 20;

interface OpenHash {
  hash: Hash;
  /** Set when reading the prefix failed: reported at `digest`, updates are ignored. */
  error: string | undefined;
}

function hashFileRange(hash: Hash, path: string, start: number, length: number, scratch: Buffer): void {
  const fd = openSync(path, 'r');
  try {
    for (let done = 0; done < length; ) {
      const n = readSync(fd, scratch, 0, Math.min(scratch.length, length - done), start + done);
      if (n === 0) throw new Error(`file ended at ${start + done} of ${start + length} bytes`);
      hash.update(scratch.subarray(0, n));
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

function serve(port: NonNullable<typeof parentPort>, data: HashWorkerData): void {
  let memory = data.memory;
  let scratch: Buffer | undefined;
  const hashes = new Map<number, OpenHash>();
  const reply = (message: HashReply): void => port.postMessage(message);

  port.on('message', (m: HashRequest) => {
    switch (m.op) {
      case 'memory':
        memory = m.memory;
        return;
      case 'open': {
        const entry: OpenHash = { hash: createHash('sha256'), error: undefined };
        hashes.set(m.id, entry);
        try {
          if (m.prefix > 0 && m.path !== undefined) hashFileRange(entry.hash, m.path, 0, m.prefix, (scratch ??= Buffer.allocUnsafe(PREFIX_READ_BYTES)));
        } catch (err) {
          entry.error = err instanceof Error ? err.message : String(err);
        }
        return;
      }
      case 'update': {
        const entry = hashes.get(m.id);
        if (entry && entry.error === undefined) {
          for (const part of m.parts) {
            if ('bytes' in part) entry.hash.update(part.bytes);
            else if ('path' in part) {
              try {
                hashFileRange(entry.hash, part.path, part.at, part.length, (scratch ??= Buffer.allocUnsafe(PREFIX_READ_BYTES)));
              } catch (err) {
                entry.error = err instanceof Error ? err.message : String(err);
              }
            }
            else if (memory === undefined) entry.error = 'a part names the piece arena, which this worker was never sent';
            // memory.buffer is read each time: the arena may have grown since the last message.
            else entry.hash.update(new Uint8Array(memory.buffer, part.offset, part.length));
          }
        }
        reply({ id: m.id });
        return;
      }
      case 'digest': {
        const entry = hashes.get(m.id);
        hashes.delete(m.id);
        if (!entry) reply({ id: m.id, error: 'unknown hash' });
        else if (entry.error !== undefined) reply({ id: m.id, error: entry.error });
        else reply({ id: m.id, hex: entry.hash.digest('hex') });
        return;
      }
      case 'discard':
        hashes.delete(m.id);
        return;
    }
  });
}

if (parentPort) serve(parentPort, workerData as HashWorkerData);
