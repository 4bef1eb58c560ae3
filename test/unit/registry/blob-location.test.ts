import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BlobLocation, presignedExpiry } from '../../../src/registry/blob-location.js';

const NOW = Date.UTC(2026, 11, 2, 8, 0, 0);

describe('presignedExpiry', () => {
  test('reads the expiry each object store signs into its URLs, less a 30 s margin', () => {
    const s3 = new URL('https://bucket.s3.amazonaws.com/b?X-Amz-Date=20261202T080000Z&X-Amz-Expires=900&X-Amz-Signature=x');
    assert.equal(presignedExpiry(s3, NOW), NOW + 900_000 - 30_000);
    const gcs = new URL('https://storage.googleapis.com/b?X-Goog-Date=20261202T075000Z&X-Goog-Expires=600');
    assert.equal(presignedExpiry(gcs, NOW), NOW - 600_000 + 600_000 - 30_000);
    const cloudfront = new URL(`https://cdn.example/b?Expires=${NOW / 1000 + 120}&Signature=x`);
    assert.equal(presignedExpiry(cloudfront, NOW), NOW + 90_000);
    const azure = new URL('https://acct.blob.core.windows.net/c/b?se=2026-12-02T09:00:00Z&sig=x');
    assert.equal(presignedExpiry(azure, NOW), NOW + 3_600_000 - 30_000);
  });

  test('a URL that says nothing of its expiry is asked for again after 5 minutes', () => {
    assert.equal(presignedExpiry(new URL('http://127.0.0.2:9000/bucket/blob'), NOW), NOW + 300_000);
    assert.equal(presignedExpiry(new URL('http://h/b?X-Amz-Date=garbage&X-Amz-Expires=900'), NOW), NOW + 300_000);
  });
});

describe('BlobLocation', () => {
  test('one connection asks the registry; the others wait for its answer, then use the location', async () => {
    let now = NOW;
    const location = new BlobLocation(() => now);
    const first = await location.next('registry');
    assert.equal(first.url, undefined, 'nothing known: this caller asks');
    let secondDone = false;
    const second = location.next('registry').then((r) => ((secondDone = true), r));
    await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(secondDone, false, 'waits while the first ask is in progress');
    const storage = new URL('http://storage/blob?X-Amz-Date=20261202T080000Z&X-Amz-Expires=60');
    location.remember('registry', storage);
    first.answered();
    assert.equal((await second).url, storage);
    now += 31_000; // past 60 s less the margin
    assert.equal((await location.next('registry')).url, undefined, 'expired: asked again');
  });

  test('a registry that serves the bytes itself: nobody waits after its first answer', async () => {
    const location = new BlobLocation();
    const first = await location.next('registry');
    location.rememberDirect('registry');
    first.answered();
    const [a, b] = await Promise.all([location.next('registry'), location.next('registry')]);
    assert.equal(a.url, undefined);
    assert.equal(b.url, undefined);
    b.answered(); // a no-op for a direct endpoint
    assert.equal((await location.next('registry')).url, undefined);
  });
});
