import { connect as netConnect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { PIECE_BYTES, piecePool } from '../fs/piece-pool.js';

/**
 * A single HTTP/1.1 request on its own connection, for large blob bodies only. Everything else
 * (manifests, tokens, small blobs) goes through undici with keep-alive.
 *
 * Why: the socket reads into one reused buffer (`net.connect({ onread })`) and the body is
 * handed on in 4 MiB pieces. Measured on this project's bench machine (2 cores), receiving a
 * 256 MiB blob from docker-registry on loopback cost 0.29 s user CPU through undici's body
 * stream (a fresh 64 KiB Buffer, a stream push and an async-iterator step per socket read) and
 * 0.06 s this way; on 2 cores that CPU is what the pull waits for. The pieces come from the
 * shared, page-aligned pool (piece-pool.ts): the content store writes them with O_DIRECT,
 * hashes them in place, then gives them back. TLS sockets take the same option. The response head is parsed here (RFC 9112 §2-§7: status line, fields,
 * Content-Length or chunked framing, else until close).
 */
export interface RawResponse {
  statusCode: number;
  headers: Record<string, string | string[]>;
  body: RawBody;
}

export interface RawRequestOptions {
  method: 'GET' | 'HEAD';
  headers: Record<string, string>;
  /** For https: URLs (CA, verification), from the transport's per-registry settings. */
  tls: ConnectionOptions;
  signal?: AbortSignal | undefined;
  headersTimeoutMs: number;
  /** Longest silence between body bytes. */
  idleTimeoutMs: number;
}

/** Reads that are not body bytes in place (the head, chunked framing) land here and are copied. */
const SCRATCH_BYTES = 256 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;

export function rawRequest(url: URL, options: RawRequestOptions): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const https = url.protocol === 'https:';
    const port = Number(url.port || (https ? 443 : 80));
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    let parser: ResponseParser | undefined;
    const scratch = Buffer.allocUnsafe(SCRATCH_BYTES);
    let settled = false;
    const fail = (err: Error): void => {
      if (!settled) {
        // Before the head: the caller gets the error; nobody holds the body yet.
        settled = true;
        reject(err);
        parser?.body.destroy();
      } else parser?.body.destroy(err);
      socket.destroy();
    };
    const onread = {
      // Asked before every read: where the kernel should put the next bytes.
      // Node asks once while connecting, before the parser exists: the head's first bytes.
      buffer: (): Uint8Array => (parser ? parser.readTarget() : scratch),
      callback: (nread: number, buf: Uint8Array): boolean => {
        try {
          parser!.received(nread, buf);
        } catch (err) {
          fail(err as Error);
        }
        return true;
      },
    };
    const connectOptions = { host, port, onread, ...(https ? { ...options.tls, servername: isIp(host) ? undefined : host } : {}) };
    const socket: Socket = https ? tlsConnect(connectOptions as ConnectionOptions) : netConnect(connectOptions);
    parser = new ResponseParser(socket, scratch, options.method === 'HEAD', (response) => {
      settled = true;
      socket.setTimeout(options.idleTimeoutMs);
      resolve(response);
    });
    socket.setTimeout(options.headersTimeoutMs);
    socket.once('timeout', () => fail(Object.assign(new Error(`no data from ${url.host} for the timeout`), { code: 'ETIMEDOUT' })));
    // `on`, not `once`: a failed TLS handshake can also fail the pending request write.
    socket.on('error', fail);
    socket.once('close', () => {
      try {
        parser!.end();
      } catch (err) {
        fail(err as Error);
      }
    });
    const onAbort = (): void => fail(Object.assign(new Error('the request was aborted'), { name: 'AbortError' }));
    if (options.signal?.aborted) return onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('close', () => options.signal?.removeEventListener('abort', onAbort));

    const path = `${url.pathname}${url.search}`;
    const lines = [`${options.method} ${path} HTTP/1.1`, `host: ${url.host}`, 'connection: close'];
    for (const [name, value] of Object.entries(options.headers)) lines.push(`${name}: ${value}`);
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  });
}

/**
 * The response body: 4 MiB Buffers, and `dump()` as undici's body has it. One piece buffered
 * ahead of the reader at most (with the one being filled): per connection that is the memory a
 * pull holds beyond its writes and hashes (a 10 GiB pull's peak RSS measured 275 MiB with two
 * pieces ahead, 255 MiB with one, and no slower).
 */
class RawBody extends Readable {
  constructor(
    private readonly socket: Socket,
    /** Gives back the piece being filled (a body closed mid-way: a cut range, a failure). */
    private readonly abandon: () => void,
  ) {
    super({ highWaterMark: PIECE_BYTES });
  }

  override _read(): void {
    if (this.socket.isPaused()) this.socket.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    this.abandon();
    callback(err);
  }

  async dump(): Promise<void> {
    this.socket.destroy();
    this.destroy();
  }
}

type Framing = { kind: 'length'; remaining: number } | { kind: 'chunked' } | { kind: 'close' } | { kind: 'none' };

/** Incremental HTTP/1.1 response parser fed from the socket's reused read buffer. */
class ResponseParser {
  readonly body: RawBody;
  private head: Buffer[] = [];
  private headBytes = 0;
  private framing: Framing | undefined;
  private piece: Buffer = Buffer.allocUnsafe(0);
  private pieceUsed = 0;
  private done = false;
  // chunked state
  private chunkRemaining = 0;
  private chunkLine = '';
  private chunkState: 'size' | 'data' | 'data-crlf' | 'trailer' = 'size';

  constructor(
    private readonly socket: Socket,
    /** Where reads land that are not body bytes in place (shared with the first read). */
    private readonly scratch: Buffer,
    private readonly isHead: boolean,
    private readonly onHead: (response: RawResponse) => void,
  ) {
    this.body = new RawBody(socket, () => this.abandon());
  }

  /**
   * The socket is closed: the piece being filled was never handed on (no reader holds it), so
   * it goes back to the pool now rather than when it is garbage-collected.
   */
  private abandon(): void {
    this.done = true;
    if (this.piece.length > 0) piecePool.give([this.piece]);
    this.piece = Buffer.allocUnsafe(0);
    this.pieceUsed = 0;
  }

  private inPlace = false;

  /**
   * Body bytes with Content-Length (or up to the close) are read straight into the free tail
   * of the current piece: no copy. The head and chunked framing go through a scratch buffer.
   */
  readTarget(): Uint8Array {
    const framing = this.framing;
    this.inPlace = framing !== undefined && (framing.kind === 'length' || framing.kind === 'close') && !this.done;
    if (!this.inPlace) return this.scratch;
    if (this.pieceUsed === this.piece.length) {
      this.piece = piecePool.take();
      this.pieceUsed = 0;
    }
    return this.piece.subarray(this.pieceUsed);
  }

  received(nread: number, buf: Uint8Array): void {
    if (!this.inPlace) return this.feed(Buffer.from(buf.buffer, buf.byteOffset, nread));
    if (this.done || this.body.destroyed) return;
    const framing = this.framing!;
    // A peer sending past its Content-Length: the extra bytes are not part of this body.
    const take = framing.kind === 'length' ? Math.min(nread, framing.remaining) : nread;
    this.pieceUsed += take;
    if (framing.kind === 'length') framing.remaining -= take;
    if (this.pieceUsed === this.piece.length) this.flush();
    if (framing.kind === 'length' && framing.remaining === 0) this.finish();
  }

  feed(data: Buffer): void {
    if (this.done || this.body.destroyed) return;
    if (this.framing === undefined) {
      data = this.feedHead(data);
      if (this.framing === undefined) return;
    }
    if (this.framing.kind === 'chunked') this.feedChunked(data);
    else if (this.framing.kind === 'length') {
      const take = Math.min(data.length, this.framing.remaining);
      this.copy(data.subarray(0, take));
      this.framing.remaining -= take;
      if (this.framing.remaining === 0) this.finish();
    } else if (this.framing.kind === 'close') this.copy(data);
  }

  /** The peer closed: fine when the framing says the body is complete or runs to the close. */
  end(): void {
    if (this.done) return;
    if (this.framing?.kind === 'close') return this.finish();
    const got = this.framing === undefined ? 'before the response head' : 'before the end of the body';
    throw Object.assign(new Error(`the connection closed ${got}`), { code: 'ECONNRESET' });
  }

  private feedHead(data: Buffer): Buffer {
    this.head.push(Buffer.from(data)); // copied: `data` is the reused read buffer
    this.headBytes += data.length;
    const all = Buffer.concat(this.head);
    const end = all.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.headBytes > MAX_HEAD_BYTES) throw Object.assign(new Error('response head too large'), { code: 'HPE_HEADER_OVERFLOW' });
      return Buffer.alloc(0);
    }
    const [statusLine, ...fieldLines] = all.subarray(0, end).toString('latin1').split('\r\n');
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
    if (!status) throw Object.assign(new Error(`not an HTTP/1.1 response: ${JSON.stringify((statusLine ?? '').slice(0, 40))}`), { code: 'HPE_INVALID_CONSTANT' });
    const statusCode = Number(status[1]);
    const headers: Record<string, string | string[]> = {};
    for (const line of fieldLines) {
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      const existing = headers[name];
      headers[name] = existing === undefined ? value : Array.isArray(existing) ? [...existing, value] : [existing, value];
    }
    const transferEncoding = String(headers['transfer-encoding'] ?? '').toLowerCase();
    const length = headers['content-length'];
    if (this.isHead || statusCode === 204 || statusCode === 304) this.framing = { kind: 'none' };
    else if (transferEncoding.includes('chunked')) this.framing = { kind: 'chunked' };
    else if (typeof length === 'string' && /^\d+$/.test(length)) this.framing = { kind: 'length', remaining: Number(length) };
    else this.framing = { kind: 'close' };
    this.head = [];
    this.onHead({ statusCode, headers, body: this.body });
    if (this.framing.kind === 'none' || (this.framing.kind === 'length' && this.framing.remaining === 0)) this.finish();
    return all.subarray(end + 4);
  }

  private feedChunked(data: Buffer): void {
    let i = 0;
    while (i < data.length && !this.done) {
      if (this.chunkState === 'data') {
        const take = Math.min(this.chunkRemaining, data.length - i);
        this.copy(data.subarray(i, i + take));
        this.chunkRemaining -= take;
        i += take;
        if (this.chunkRemaining === 0) this.chunkState = 'data-crlf';
        continue;
      }
      const byte = data[i++]!;
      if (byte !== 0x0a) {
        if (byte !== 0x0d) this.chunkLine += String.fromCharCode(byte);
        if (this.chunkLine.length > 1024) throw Object.assign(new Error('bad chunked framing'), { code: 'HPE_INVALID_CHUNK_SIZE' });
        continue;
      }
      const line = this.chunkLine;
      this.chunkLine = '';
      if (this.chunkState === 'data-crlf') this.chunkState = 'size';
      else if (this.chunkState === 'size') {
        const size = parseInt(line.split(';')[0]!.trim(), 16);
        if (Number.isNaN(size)) throw Object.assign(new Error('bad chunk size'), { code: 'HPE_INVALID_CHUNK_SIZE' });
        if (size === 0) this.chunkState = 'trailer';
        else {
          this.chunkRemaining = size;
          this.chunkState = 'data';
        }
      } else if (line === '') this.finish(); // the empty line after the trailers
    }
  }

  private copy(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      if (this.pieceUsed === this.piece.length) {
        this.piece = piecePool.take();
        this.pieceUsed = 0;
      }
      const n = data.copy(this.piece, this.pieceUsed, at);
      this.pieceUsed += n;
      at += n;
      if (this.pieceUsed === this.piece.length) this.flush();
    }
  }

  private flush(): void {
    if (this.pieceUsed === 0) return;
    const full = this.pieceUsed === this.piece.length;
    const out = full ? this.piece : this.piece.subarray(0, this.pieceUsed);
    piecePool.handOn(this.piece, out);
    // Never fill the rest of a piece already handed on: it comes back to the pool with `out`.
    this.piece = Buffer.allocUnsafe(0);
    this.pieceUsed = 0;
    // Backpressure: stop reading the socket until the reader asks for more (_read).
    if (!this.body.push(out)) this.socket.pause();
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.flush();
    this.body.push(null);
    this.socket.destroy();
  }
}

function isIp(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}
