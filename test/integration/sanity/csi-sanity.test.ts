import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

// The upstream conformance suite against a real node process and a real controller process.
// The skip list and the reason for every skipped test are in test/sanity/run-sanity.sh.
test('csi-sanity passes against the node and controller plugins', { timeout: 600_000 }, () => {
  const result = spawnSync('bash', ['test/sanity/run-sanity.sh'], { encoding: 'utf8', timeout: 590_000 });
  const output = `${result.stdout}${result.stderr}`;
  const counts = /csi-sanity: passed=(\S+) failed=(\S+) skipped=(\S+)/.exec(output);
  console.log(counts ? counts[0] : 'csi-sanity: no summary line');
  assert.equal(result.status, 0, `csi-sanity failed:\n${output.slice(-8000)}`);
  assert.ok(counts && Number(counts[1]) > 0 && counts[2] === '0', `unexpected csi-sanity summary:\n${output.slice(-4000)}`);
});
