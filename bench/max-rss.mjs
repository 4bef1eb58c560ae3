// Preloaded into the `model-csi pull` the bench runs (`node --import bench/max-rss.mjs …`):
// at exit, the process's peak resident set (hash worker threads included) goes to the file
// BENCH_RSS_FILE names, in bytes.
import { writeFileSync } from 'node:fs';

const file = process.env.BENCH_RSS_FILE;
if (file) process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS * 1024)));
