import { strict as assert } from 'node:assert';
import { test } from 'node:test';
import { SingleFlight, type Flight } from '../../../src/concurrency/single-flight.js';
import { deferred } from '../../helpers/deferred.js';

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('callers of one key share one operation and its result; the key is free afterwards', async () => {
  const flights = new SingleFlight<string>();
  const gate = deferred<string>();
  let runs = 0;
  const results = Array.from({ length: 5 }, () =>
    flights.run('k', async () => {
      runs++;
      return gate.promise;
    }),
  );
  assert.equal(flights.has('k'), true);
  gate.resolve('done');
  assert.deepEqual(await Promise.all(results), ['done', 'done', 'done', 'done', 'done']);
  assert.equal(runs, 1);
  assert.equal(flights.has('k'), false);
});

test("one waiter's signal detaches that waiter only: it gets its own reason, the operation runs on for the others", async () => {
  const flights = new SingleFlight<string>();
  const gate = deferred<string>();
  let operationSignal: AbortSignal | undefined;
  const first = new AbortController();
  const leader = flights.run(
    'k',
    async (flight) => {
      operationSignal = flight.signal;
      return gate.promise;
    },
    { signal: first.signal },
  );
  const joiner = flights.run('k', async () => 'never run');
  await tick();
  first.abort(new Error('the first caller gave up'));
  await assert.rejects(leader, /the first caller gave up/);
  assert.equal(operationSignal!.aborted, false, 'a waiter is left, so the operation goes on');
  gate.resolve('for the joiner');
  assert.equal(await joiner, 'for the joiner');
});

test('the operation is aborted once every waiter has left; a caller arriving meanwhile starts afresh after it settled', async () => {
  const flights = new SingleFlight<string>();
  const a = new AbortController();
  const b = new AbortController();
  const oldSettles = deferred<void>();
  let oldSignal: AbortSignal | undefined;
  const order: string[] = [];
  const first = flights.run(
    'k',
    async (flight) => {
      oldSignal = flight.signal;
      await oldSettles.promise;
      order.push('old settled');
      throw flight.signal.reason;
    },
    { signal: a.signal },
  );
  const second = flights.run('k', async () => 'never run', { signal: b.signal });
  await tick();
  a.abort(new Error('a left'));
  b.abort(new Error('b left'));
  await assert.rejects(first, /a left/);
  await assert.rejects(second, /b left/);
  assert.equal(oldSignal!.aborted, true);
  const fresh = flights.run('k', async (flight) => {
    order.push('fresh started');
    return flight.signal.aborted ? 'aborted' : 'fresh';
  });
  await tick();
  assert.deepEqual(order, [], 'the fresh operation waits for the abandoned one (one writer per key)');
  oldSettles.resolve();
  assert.equal(await fresh, 'fresh');
  assert.deepEqual(order, ['old settled', 'fresh started']);
});

test('Waiter.leave dismisses one waiter with its own error; the others get the outcome', async () => {
  const flights = new SingleFlight<string, undefined, string>();
  const gate = deferred<void>();
  const operation = async (flight: Flight<undefined, string>): Promise<string> => {
    await gate.promise;
    const [first, ...rest] = flight.waiters();
    first!.leave(new Error(`credentials of ${first!.context} refused`));
    return `served with ${rest[0]!.context}'s`;
  };
  const a = flights.run('k', operation, { context: 'a' });
  const b = flights.run('k', operation, { context: 'b' });
  gate.resolve();
  await assert.rejects(a, /credentials of a refused/);
  assert.equal(await b, "served with b's");
});

test('an operation failure reaches every waiter still there; a caller whose signal is already aborted does not join', async () => {
  const flights = new SingleFlight<string>();
  const gate = deferred<string>();
  const a = flights.run('k', () => gate.promise);
  const b = flights.run('k', () => gate.promise);
  const aborted = AbortSignal.abort(new Error('already gone'));
  await assert.rejects(
    flights.run('k', () => gate.promise, { signal: aborted }),
    /already gone/,
  );
  gate.reject(new Error('registry down'));
  await assert.rejects(a, /registry down/);
  await assert.rejects(b, /registry down/);
});
