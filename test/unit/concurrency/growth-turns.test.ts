import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GrowthTurns } from '../../../src/concurrency/connection-budget.js';

describe('GrowthTurns', () => {
  test('one download tries larger counts at a time; the next takes the turn once it settled', () => {
    const turns = new GrowthTurns();
    const [a, b] = [{}, {}];
    const endA = turns.join();
    turns.join();
    assert.equal(turns.take(a), true);
    assert.equal(turns.take(b), false, 'a holds the turn');
    turns.done(a, false); // a grew: trying pays, so b may try too
    assert.equal(turns.take(b), true);
    endA();
  });

  test('a link found full stops the others trying, until no download runs', () => {
    const turns = new GrowthTurns();
    const [a, b, c] = [{}, {}, {}];
    const endA = turns.join();
    const endB = turns.join();
    assert.equal(turns.take(a), true);
    turns.done(a, true);
    assert.equal(turns.take(b), false, 'no added connection paid for a: b does not try');
    endA();
    endB();
    endB(); // idempotent
    turns.join();
    assert.equal(turns.take(c), true, 'forgotten once none ran');
  });
});
