/**
 * The cluster e2e's slow registry: the test helpers' counting proxy in front of the e2e
 * registry, pacing blob bodies to a rate, so a pull outlives the driver's publish wait and
 * `kubectl describe pod` shows its progress. Logs every blob GET. Runs until killed.
 *   node --import tsx test/cluster/throttle.ts LISTEN_HOST:PORT UPSTREAM_URL BYTES_PER_SECOND
 */
import { startCountingProxy } from '../helpers/counting-proxy.js';

const [listen, upstream, rate] = process.argv.slice(2);
const match = /^(.+):(\d+)$/.exec(listen ?? '');
if (!match || !upstream || !Number(rate)) {
  console.error('usage: throttle.ts LISTEN_HOST:PORT UPSTREAM_URL BYTES_PER_SECOND');
  process.exit(2);
}
const proxy = await startCountingProxy(upstream, { listenHost: match[1]!, port: Number(match[2]), rate: Number(rate) });
console.log(`throttle: ${proxy.url} -> ${upstream} at ${rate} B/s per blob request`);
// One line per blob GET, `blob GET sha256:… range=…`: the e2e counts what a pull fetched
// (test/cluster/e2e-model-cache.sh: a warmed model is mounted with none).
let logged = 0;
setInterval(() => {
  for (; logged < proxy.blobRequests.length; logged++) {
    const { digest, range } = proxy.blobRequests[logged]!;
    console.log(`blob GET ${digest} range=${range ?? '-'}`);
  }
}, 100);
process.once('SIGTERM', () => void proxy.close().then(() => process.exit(0)));
