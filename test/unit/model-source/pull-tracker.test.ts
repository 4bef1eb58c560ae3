import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { isDriverError } from '../../../src/errors/driver-error.js';
import { PullTracker, waitForJob } from '../../../src/model-source/pull-tracker.js';
import { deferred } from '../../helpers/deferred.js';

test('callers of the same key join one job; the work runs once', async () => {
  const tracker = new PullTracker<string>();
  const gate = deferred<string>();
  let runs = 0;
  const jobs = Array.from({ length: 50 }, () =>
    tracker.start('sha256/abc', 'reg/m:v1', async () => {
      runs++;
      return gate.promise;
    }),
  );
  gate.resolve('/cache/models/sha256/abc');
  const results = await Promise.all(jobs.map((job) => waitForJob(job, 1000)));
  assert.equal(runs, 1);
  assert.ok(results.every((r) => r === '/cache/models/sha256/abc'));
  assert.equal(tracker.size, 0, 'a finished job is forgotten so a later pull can run');
});

test('a wait that times out reports progress and leaves the pull running; a retry joins it', async () => {
  const tracker = new PullTracker<string>();
  const gate = deferred<string>();
  const job = tracker.start('k', 'reg/m:v1', async (progress) => {
    progress.totalBytes = 30 * 2 ** 30;
    progress.doneBytes = 12.3 * 2 ** 30;
    return gate.promise;
  });
  await new Promise((r) => setImmediate(r));
  await assert.rejects(waitForJob(job, 20), (err) => {
    assert.ok(isDriverError(err, 'PULL_IN_PROGRESS'));
    assert.equal(err.retryable, true);
    assert.match(err.message, /^pulling reg\/m:v1: 12\.3 GiB of 30\.0 GiB \(41 percent\)/);
    return true;
  });
  const retry = tracker.start('k', 'reg/m:v1', async () => 'second run must not happen');
  assert.equal(retry, job);
  gate.resolve('done');
  assert.equal(await waitForJob(retry, 1000), 'done');
});

test('a failed job fails its waiters and is not remembered', async () => {
  const tracker = new PullTracker<string>();
  const job = tracker.start('k', 'reg/m:v1', async () => {
    throw new Error('registry down');
  });
  await assert.rejects(waitForJob(job, 1000), /registry down/);
  const again = tracker.start('k', 'reg/m:v1', async () => 'ok');
  assert.notEqual(again, job);
  assert.equal(await waitForJob(again, 1000), 'ok');
});
