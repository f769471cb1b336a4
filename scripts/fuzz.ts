/**
 * `npm run fuzz [-- --runs N] [--target NAME] [--seed N] [--json]`: every decoder that takes
 * network or config input, fuzzed with N inputs each (default 10^6; CI runs 10^4 in
 * test/fuzz). A crash or an exception other than the decoder's declared error fails the run,
 * with fast-check's shrunk counterexample. Prints one line per decoder as it finishes.
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fuzz, TARGETS } from '../test/fuzz/targets.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    target: { type: 'string' },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  console.log('usage: npm run fuzz -- [--runs N (default 1000000)] [--target NAME] [--seed N] [--json]');
  console.log(`targets: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(0);
}
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`--runs takes a positive whole number; got '${values.runs}'`);
  process.exit(2);
}
const chosen = values.target ? TARGETS.filter((t) => t.name === values.target) : TARGETS;
if (chosen.length === 0) {
  console.error(`unknown --target '${values.target}'. Allowed: ${TARGETS.map((t) => t.name).join(', ')}`);
  process.exit(2);
}
const seed = values.seed === undefined ? Date.now() % 2 ** 31 : Number(values.seed);
const rows: { target: string; inputs: number; seconds: number; crashes: number; error?: string }[] = [];
for (const target of chosen) {
  const started = performance.now();
  let error: string | undefined;
  try {
    fuzz(target, runs, seed);
  } catch (e) {
    error = (e as Error).message.split('\n').slice(0, 4).join(' ');
  }
  const seconds = (performance.now() - started) / 1000;
  rows.push({
    target: target.name,
    inputs: runs,
    seconds: Math.round(seconds * 10) / 10,
    crashes: error ? 1 : 0,
    error,
  });
  // Progress on stderr either way: a full run takes minutes per decoder.
  console.error(
    `${target.name}: ${runs} inputs in ${seconds.toFixed(1)} s, ${error ? `FAILED: ${error}` : '0 crashes'}`,
  );
}
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
} catch {
  // Not a git checkout.
}
const report = { date: new Date().toISOString(), commit, seed, runsPerTarget: runs, rows };
if (values.json) console.log(JSON.stringify(report, null, 2));
else
  console.log(
    `${rows.filter((r) => r.crashes === 0).length} passed, ${rows.filter((r) => r.crashes > 0).length} failed (seed ${seed})`,
  );
// exitCode, not exit(): stdout may be a pipe, and exit() would cut the JSON short.
process.exitCode = rows.some((r) => r.crashes > 0) ? 1 : 0;
