import { strict as assert } from 'node:assert';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { test } from 'node:test';
import { verifyEd25519 } from '../../../src/verify/ed25519ph.js';

// The curve arithmetic against node:crypto's pure Ed25519 (OpenSSL), and the ph variant
// against RFC 8032 §7.3; signatures of the real cosign (Ed25519ph) are verified in
// test/integration/verify/signature-policy.test.ts.
test('pure Ed25519: whatever node:crypto signs verifies; a flipped bit, another key or message does not', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
  const other = Buffer.from(generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' }).x!, 'base64url');
  for (const size of [0, 1, 64, 1000]) {
    const message = randomBytes(size);
    const signature = sign(null, message, privateKey);
    assert.equal(verifyEd25519(raw, message, signature, { prehash: false }), true, `${size}-byte message`);
    assert.equal(verifyEd25519(raw, message, signature, { prehash: true }), false, 'a pure signature is not a ph one');
    assert.equal(verifyEd25519(other, message, signature, { prehash: false }), false, 'another key');
    assert.equal(verifyEd25519(raw, Buffer.concat([message, Buffer.from('x')]), signature, { prehash: false }), false, 'another message');
    const flipped = Buffer.from(signature);
    flipped[size % 64]! ^= 1;
    assert.equal(verifyEd25519(raw, message, flipped, { prehash: false }), false, 'a flipped bit');
  }
});

test('Ed25519ph: the RFC 8032 §7.3 test vector verifies; a non-canonical S or a bad length does not', () => {
  const publicKey = Buffer.from('ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf', 'hex');
  const signature = Buffer.from('98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae4131f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406', 'hex');
  const message = Buffer.from('abc');
  assert.equal(verifyEd25519(publicKey, message, signature, { prehash: true }), true);
  assert.equal(verifyEd25519(publicKey, message, signature, { prehash: false }), false);
  assert.equal(verifyEd25519(publicKey, Buffer.from('abd'), signature, { prehash: true }), false);
  const highS = Buffer.from(signature);
  highS.fill(0xff, 32);
  assert.equal(verifyEd25519(publicKey, message, highS, { prehash: true }), false);
  assert.equal(verifyEd25519(publicKey, message, signature.subarray(0, 63), { prehash: true }), false);
});
