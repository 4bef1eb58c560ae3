// `npm run bench`: the pull bench, then the publish bench, one after the other (never at the
// same time: both want the 2 cores). Arguments go to the pull bench (`npm run bench --
// --size-mib 512`); the publish bench takes BENCH_PUBLISHES / BENCH_ALWAYS_PUBLISHES.
// BENCH_SKIP=pull or BENCH_SKIP=publish leaves one out.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const skip = process.env['BENCH_SKIP'] ?? '';
const benches: Array<[string, string[]]> = [
  ['pull', process.argv.slice(2)],
  ['publish', []],
];
for (const [name, args] of benches) {
  if (skip === name) continue;
  const script = fileURLToPath(new URL(`./${name}-bench.ts`, import.meta.url));
  const result = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { stdio: 'inherit' });
  if (result.status !== 0) {
    console.error(`bench: ${name} bench failed (${result.status ?? result.signal})`);
    process.exit(1);
  }
}
