// No Docker engine here, so the Dockerfile is checked by reading it: the build stage runs as
// a non-root user and drops dev dependencies, the runtime stage has what the node plugin
// calls (mount, umount) and the entry point the chart relies on, and every path it COPYs
// from the build context exists and survives .dockerignore (a missing one breaks the build).
import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { REPO } from './render.js';

const dockerfile = readFileSync(join(REPO, 'Dockerfile'), 'utf8');
// Instructions with line continuations joined, comments dropped.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const stages: string[][] = [];
for (const line of instructions) {
  if (/^FROM\s/i.test(line)) stages.push([]);
  stages.at(-1)?.push(line);
}
const [build, runtime] = [stages[0]!, stages.at(-1)!];

test('two stages: a named build stage and a runtime stage', () => {
  assert.equal(stages.length, 2);
  assert.match(build[0]!, /^FROM \S+ AS build$/i);
  assert.match(dockerfile, /ARG NODE_IMAGE=node:20-trixie-slim/);
});

test('build stage: npm ci and the build run as a non-root user, then dev dependencies go', () => {
  const user = build.findIndex((l) => /^USER\s+(?!root|0\b)\S+/.test(l));
  const ci = build.findIndex((l) => /npm ci\b/.test(l));
  const compile = build.findIndex((l) => /npm run build/.test(l));
  assert.ok(user >= 0 && user < ci && ci < compile, 'USER before npm ci before npm run build');
  assert.match(build[compile]!, /npm prune --omit=dev/);
});

test('runtime stage: mount and ca-certificates installed, production files only, the driver as entry point', () => {
  const apt = runtime.find((l) => /apt-get install/.test(l)) ?? '';
  for (const pkg of ['mount', 'util-linux', 'ca-certificates']) assert.match(apt, new RegExp(`\\s${pkg}(\\s|$)`), pkg);
  assert.match(apt, /--no-install-recommends/);
  assert.match(apt, /rm -rf \/var\/lib\/apt\/lists/);
  const copied = runtime.filter((l) => /^COPY\s/.test(l)).map((l) => l.split(/\s+/).at(-1));
  assert.deepEqual(copied, ['./package.json', './node_modules', './dist', './proto']);
  assert.ok(runtime.every((l) => !/^COPY\s/.test(l) || /--from=build/.test(l)), 'the runtime stage copies only from the build stage');
  assert.ok(runtime.includes('ENTRYPOINT ["node", "/app/dist/main.js"]'));
  assert.ok(runtime.some((l) => /^LABEL .*org\.opencontainers\.image\.source=/.test(l)));
});

test('every build-context path the Dockerfile copies exists and is not excluded by .dockerignore', () => {
  const ignored = readFileSync(join(REPO, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const sources = instructions
    .filter((l) => /^COPY\s/.test(l) && !/--from=/.test(l))
    .flatMap((l) => l.split(/\s+/).slice(1, -1).filter((w) => !w.startsWith('--')));
  assert.deepEqual(sources.sort(), ['package-lock.json', 'package.json', 'proto', 'src', 'tsconfig.json']);
  for (const source of sources) {
    assert.ok(existsSync(join(REPO, source)), `${source} exists`);
    assert.ok(!ignored.includes(source) && !ignored.includes(`${source}/`), `${source} is not in .dockerignore`);
  }
  for (const heavy of ['node_modules', 'dist', '.git', '.tmp', 'test', 'bench']) assert.ok(ignored.includes(heavy), `${heavy} is ignored`);
  // dist/csi/proto.js loads ../../proto/csi.proto: the proto must sit beside dist in /app.
  assert.ok(existsSync(join(REPO, 'proto/csi.proto')));
});
