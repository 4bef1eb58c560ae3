import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ConnectionTuner } from '../../../src/store/connection-tuner.js';

const settings = { start: 2, max: 16, windowMs: 500, windowBytesPerConnection: 0 };

/**
 * Drives a tuner against a model of the link: `rate(n)` bytes per ms with n connections,
 * delivered in 1 ms steps, the download running at whatever count the tuner asks for.
 * Returns the count it settles at and when it got there.
 */
function settle(rate: (n: number) => number, max = 16, ms = 30_000): { count: number; at: number } {
  let now = 0;
  const tuner = new ConnectionTuner({ ...settings, max }, () => now);
  let active = tuner.target;
  let at = 0;
  for (; now < ms; now++) {
    const wanted = tuner.observe(rate(active), active);
    if (wanted !== active) at = now;
    active = wanted;
  }
  return { count: active, at };
}

describe('ConnectionTuner', () => {
  test('an origin that limits each connection: doubles up to the most allowed, quickly', () => {
    const unlimited = settle((n) => 20 * n);
    assert.equal(unlimited.count, 16);
    assert.ok(unlimited.at <= 2000, `reached 16 after ${unlimited.at} ms`);
    assert.equal(settle((n) => 20 * n, 5).count, 5);
  });

  test('a link two connections fill: stays at two', () => {
    assert.equal(settle(() => 1000).count, 2);
  });

  test('a link that saturates part-way: the largest count that still paid, found by bisection', () => {
    // 20 per connection up to 200 (10 connections' worth): 8 pays, 16 does not; 12 does not
    // (240 wanted of 200), 10 does (200 ≥ 160 · 1.15), 11 does not.
    assert.equal(settle((n) => Math.min(200, 20 * n)).count, 10);
  });

  test('a larger count that brought nothing: settles back at once, without trying the counts between', () => {
    // A link 4 connections fill: 8 moves what 4 did, so 5, 6 or 7 cannot pay either.
    let now = 0;
    const tuner = new ConnectionTuner(settings, () => now);
    const visited = [tuner.target];
    for (; now < 10_000; now++) {
      const active = tuner.target;
      if (tuner.observe(Math.min(80, 20 * active), active) !== visited.at(-1)) visited.push(tuner.target);
    }
    assert.deepEqual(visited, [2, 4, 8, 4]);
  });

  test('a window waits for enough bytes from every connection', () => {
    let now = 0;
    const tuner = new ConnectionTuner({ ...settings, windowBytesPerConnection: 4000 }, () => now);
    tuner.observe(0, 2);
    for (now = 1; now <= 1000; now++) tuner.observe(7, 2); // 7000 bytes: under 2 × 4000
    assert.equal(tuner.target, 2, 'not judged on 7000 bytes');
    for (; now <= 1200; now++) tuner.observe(7, 2);
    assert.equal(tuner.target, 4, 'judged once 8000 bytes arrived');
  });

  test('a cap holds the count where the slots ran out, and growth is tried again', () => {
    let now = 0;
    const tuner = new ConnectionTuner(settings, () => now);
    tuner.capped(2);
    assert.equal(tuner.target, 2);
    tuner.observe(0, 2);
    for (now = 1; now <= 600; now++) tuner.observe(40, 2);
    assert.equal(tuner.target, 4, 'tried again after a window');
  });
});
