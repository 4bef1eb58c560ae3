import { Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import type { LayerFormat } from '../media-types.js';

/** The decompressing stage for a tar layer, or none for a plain tar. */
export function decompressorFor(format: LayerFormat): Transform | undefined {
  switch (format) {
    case 'tar+gzip':
      return createGunzip();
    case 'tar+zstd':
      return new ZstdDecompressStream();
    default:
      return undefined;
  }
}

/**
 * fzstd's streaming decoder as a Transform (Node 20 has no zstd in zlib). fzstd calls
 * `ondata` synchronously from `push`, so backpressure is the Transform's own: a chunk is
 * accepted only after its output was pushed, and pushing respects the readable's buffer.
 */
class ZstdDecompressStream extends Transform {
  private readonly decoder: Decompress;

  constructor() {
    super({ readableHighWaterMark: 1 << 20 });
    this.decoder = new Decompress((data) => {
      // fzstd may reuse its window buffer: copy before handing downstream.
      this.push(Buffer.from(data));
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.decoder.push(chunk);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.decoder.push(new Uint8Array(0), true);
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}
