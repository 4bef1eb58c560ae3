#!/usr/bin/env node
// Runs the test suites with node:test (TypeScript through tsx) and fails when any test fails
// *or is skipped*: a test skipped for a missing dependency hides a missing install step.
// usage: node scripts/run-tests.mjs [unit|integration|all] [extra test files...]
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const suite = process.argv[2] ?? 'all';
const dirs = suite === 'all' ? ['test/unit', 'test/integration'] : [`test/${suite}`];

function findTests(dir) {
  let out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of entries.sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out = out.concat(findTests(path));
    else if (name.endsWith('.test.ts')) out.push(path);
  }
  return out;
}

const files = dirs.flatMap(findTests).concat(process.argv.slice(3));
if (files.length === 0) {
  console.error(`no test files under ${dirs.join(', ')}`);
  process.exit(1);
}
mkdirSync('.tmp', { recursive: true });
const tapFile = '.tmp/test-results.tap';
const result = spawnSync(
  process.execPath,
  [
    '--import', 'tsx',
    '--test',
    '--test-concurrency=1',
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tapFile}`,
    ...files,
  ],
  { stdio: 'inherit' },
);
const tap = readFileSync(tapFile, 'utf8');
const count = (name) => Number((new RegExp(`^# ${name} (\\d+)$`, 'm').exec(tap) ?? [])[1] ?? NaN);
const summary = { tests: count('tests'), pass: count('pass'), fail: count('fail'), skipped: count('skipped'), todo: count('todo') };
console.log(`\nsummary: ${JSON.stringify(summary)}`);
if (result.status !== 0 || summary.fail !== 0) process.exit(1);
if (summary.skipped > 0 || summary.todo > 0) {
  console.error('tests were skipped or left todo; a skipped test counts as a failure here');
  process.exit(1);
}
