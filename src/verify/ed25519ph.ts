import { createHash } from 'node:crypto';

/**
 * Ed25519ph signature verification (RFC 8032 §5.1.7, the "ph" variant: the message is
 * SHA-512(M), under dom2(1, "")). cosign signs with Ed25519ph whenever its key is Ed25519
 * (cosign pkg/cosign/keys.go GetDefaultLoadOptions), and node:crypto verifies only pure
 * Ed25519 (no context, no prehash), so this is done here, on BigInt. Verification only: every
 * input is public, so nothing needs to be constant-time. `prehash: false` is plain Ed25519,
 * which the tests check against node:crypto to prove the curve arithmetic.
 */
const P = 2n ** 255n - 19n;
const L = 2n ** 252n + 27742317777372353535851937790883648493n;
const DOM2_PH = Buffer.concat([Buffer.from('SigEd25519 no Ed25519 collisions', 'latin1'), Buffer.from([1, 0])]);

/** Extended twisted Edwards coordinates (X:Y:Z:T), x = X/Z, y = Y/Z, xy = T/Z. */
type Point = readonly [bigint, bigint, bigint, bigint];

const mod = (a: bigint, m = P): bigint => {
  const r = a % m;
  return r >= 0n ? r : r + m;
};

function pow(base: bigint, exponent: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  for (let e = exponent; e > 0n; e >>= 1n) {
    if (e & 1n) result = (result * b) % P;
    b = (b * b) % P;
  }
  return result;
}

const D = mod(-121665n * pow(121666n, P - 2n));
const SQRT_M1 = pow(2n, (P - 1n) / 4n);
const IDENTITY: Point = [0n, 1n, 1n, 0n];

/** RFC 8032 §5.1.4 addition for a = -1; complete, so it doubles as well. */
function add([x1, y1, z1, t1]: Point, [x2, y2, z2, t2]: Point): Point {
  const a = mod((y1 - x1) * (y2 - x2));
  const b = mod((y1 + x1) * (y2 + x2));
  const c = mod(2n * D * t1 * t2);
  const d = mod(2n * z1 * z2);
  const e = b - a;
  const f = d - c;
  const g = d + c;
  const h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

function multiply(scalar: bigint, point: Point): Point {
  let result = IDENTITY;
  let addend = point;
  for (let s = scalar; s > 0n; s >>= 1n) {
    if (s & 1n) result = add(result, addend);
    addend = add(addend, addend);
  }
  return result;
}

function littleEndian(bytes: Buffer): bigint {
  return BigInt(`0x${Buffer.from(bytes).reverse().toString('hex') || '0'}`);
}

/** RFC 8032 §5.1.3 point decoding; undefined for an encoding that is not a point. */
function decodePoint(encoded: Buffer): Point | undefined {
  const bytes = Buffer.from(encoded);
  const sign = bytes[31]! >> 7;
  bytes[31]! &= 0x7f;
  const y = littleEndian(bytes);
  if (y >= P) return undefined;
  const u = mod(y * y - 1n);
  const v = mod(D * y * y + 1n);
  let x = mod(u * pow(v, 3n) * pow(u * pow(v, 7n), (P - 5n) / 8n));
  const vxx = mod(v * x * x);
  if (vxx === mod(-u)) x = mod(x * SQRT_M1);
  else if (vxx !== u) return undefined;
  if (x === 0n && sign === 1) return undefined;
  if (Number(x & 1n) !== sign) x = P - x;
  return [x, y, 1n, mod(x * y)];
}

const BASE = decodePoint(Buffer.from('5866666666666666666666666666666666666666666666666666666666666666', 'hex'))!;

const sameProjective = ([x1, y1, z1]: Point, [x2, y2, z2]: Point): boolean => mod(x1 * z2) === mod(x2 * z1) && mod(y1 * z2) === mod(y2 * z1);

/** Whether `signature` (64 bytes) over `message` verifies with the raw 32-byte `publicKey`. */
export function verifyEd25519(publicKey: Buffer, message: Buffer, signature: Buffer, options: { prehash: boolean }): boolean {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const a = decodePoint(publicKey);
  const r = decodePoint(signature.subarray(0, 32));
  const s = littleEndian(signature.subarray(32));
  if (a === undefined || r === undefined || s >= L) return false;
  const hash = createHash('sha512');
  if (options.prehash) hash.update(DOM2_PH);
  hash.update(signature.subarray(0, 32)).update(publicKey);
  hash.update(options.prehash ? createHash('sha512').update(message).digest() : message);
  const k = mod(littleEndian(hash.digest()), L);
  // The cofactorless check ([S]B = R + [k]A), as Go's crypto/ed25519 (what cosign signs with) makes it.
  return sameProjective(multiply(s, BASE), add(r, multiply(k, a)));
}
