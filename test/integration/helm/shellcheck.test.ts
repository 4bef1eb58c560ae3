// shellcheck (Debian's) on every shell script in the tree, tracked or not yet, and .ci/run.
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { REPO } from './render.js';

function shellScripts(): string[] {
  const git = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: REPO, encoding: 'utf8' });
  assert.equal(git.status, 0, `git ls-files: ${git.stderr}`);
  const files = git.stdout.split('\0').filter((f) => f.endsWith('.sh') && !f.split('/').includes('node_modules'));
  return [...new Set([...files, '.ci/run'])].sort();
}

test('shellcheck passes on every *.sh and .ci/run', () => {
  const version = spawnSync('shellcheck', ['--version'], { encoding: 'utf8' });
  if (version.error) throw new Error('shellcheck not found on PATH: apt-get install shellcheck (scripts/install-test-deps.sh does)');
  const scripts = shellScripts();
  assert.ok(scripts.includes('test/e2e/run.sh'), 'the e2e script is among them');
  // -x follows `source` lines (paths are relative to the repo root, where this runs).
  const result = spawnSync('shellcheck', ['-x', '--format=gcc', ...scripts], { cwd: REPO, encoding: 'utf8' });
  assert.equal(result.status, 0, `shellcheck found problems in ${scripts.length} scripts:\n${result.stdout}${result.stderr}`);
});
