import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionTuner } from '../../../src/store/connection-tuner.js';

/**
 * Drives a tuner against a model of the link: `rate(n)` bytes per ms with n connections,
 * delivered in 1 ms steps, with the download running at whatever count the tuner asks for.
 */
function settle(rate: (n: number) => number, max = 8, ms = 20_000): number {
  let now = 0;
  const tuner = new ConnectionTuner({ start: 2, max, windowMs: 1000 }, () => now);
  let active = tuner.target;
  for (; now < ms; now++) active = tuner.observe(rate(active), active);
  return active;
}

describe('ConnectionTuner', () => {
  test('an origin that limits each connection: grows to the most allowed', () => {
    assert.equal(settle((n) => 20 * n), 8);
    assert.equal(settle((n) => 20 * n, 5), 5);
  });

  test('a link one connection fills: stays small', () => {
    assert.equal(settle(() => 1000), 2, 'a third connection adds nothing: back to two');
  });

  test('a link that gets worse with more connections: steps back', () => {
    assert.equal(settle((n) => (n <= 3 ? 100 * n : 300 - 40 * (n - 3))), 3);
  });

  test('a cap holds the count where the slots ran out', () => {
    let now = 0;
    const tuner = new ConnectionTuner({ start: 2, max: 8, windowMs: 1000 }, () => now);
    tuner.capped(2);
    assert.equal(tuner.target, 2);
    for (; now < 1500; now++) tuner.observe(40, 2);
    assert.equal(tuner.target, 3, 'tried again after a window');
  });
});
