/**
 * `npm run bench:portmap [-- --trials N] [--rtt-ms N] [--out DIR] [--json]`: issue 20's table. A
 * random-port symmetric NAT (which nothing predicts) against each Table 4 NAT type, both ways,
 * with the random NAT mapping on request (+pcp, +natpmp, +upnp) and without: SC2C calls of the real
 * server and gateways on the virtual network, direct rate and setup time per cell. Bounded: at
 * most 1000 trials a cell, 72 cells.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { MATRIX_PROFILES } from '../src/cli/sim.ts';
import { loadProfiles } from '../src/nat/profiles.ts';
import { cellSeed, type MatrixCell, runMatrixCell } from '../src/sim/matrix.ts';

const USAGE = `usage: npm run bench:portmap -- [--trials N] [--rtt-ms N] [--out DIR] [--json]

  --trials N    SC2C calls per cell (default 100, 1-1000)
  --rtt-ms N    round trip between the two NATs (default 40, 0-2000)
  --out DIR     also write portmap.json and portmap.md there
  --json        print the cells as JSON
  -h, --help    this text
`;
let values: { trials: string; 'rtt-ms': string; out?: string; json: boolean; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      trials: { type: 'string', default: '100' },
      'rtt-ms': { type: 'string', default: '40' },
      out: { type: 'string' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  process.stderr.write(`bench:portmap: ${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const whole = (name: string, text: string, min: number, max: number): number => {
  const v = Number(text);
  if (!Number.isInteger(v) || v < min || v > max) {
    process.stderr.write(
      `bench:portmap: --${name} takes a whole number from ${min} to ${max}, not '${text}'\n`,
    );
    process.exit(2);
  }
  return v;
};
const trials = whole('trials', values.trials, 1, 1000);
const rttMs = whole('rtt-ms', values['rtt-ms'], 0, 2000);

const catalog = loadProfiles();
const variants = [
  'symmetric-random',
  'symmetric-random+pcp',
  'symmetric-random+natpmp',
  'symmetric-random+upnp',
];
const cells: (MatrixCell & {
  direction: 'random calls' | 'random called';
  variant: string;
  other: string;
})[] = [];
const total = variants.length * MATRIX_PROFILES.length * 2;
const started = performance.now();
for (const variant of variants) {
  for (const other of MATRIX_PROFILES) {
    for (const direction of ['random calls', 'random called'] as const) {
      const [calling, called] = direction === 'random calls' ? [variant, other] : [other, variant];
      const cell = await runMatrixCell({
        calling: { name: calling, behaviour: catalog.resolve(calling) },
        called: { name: called, behaviour: catalog.resolve(called) },
        mode: 'sc2c',
        trials,
        oneWayMs: [rttMs / 4, rttMs / 4],
        backgroundPerSecond: 0,
        seed: cellSeed(1, calling, called, 'sc2c'),
      });
      cells.push({ ...cell, direction, variant, other });
      process.stderr.write(
        `[${cells.length}/${total}] ${calling} -> ${called}: ${cell.successes}/${trials} direct (${Math.round((performance.now() - started) / 1000)} s)\n`,
      );
    }
  }
}

const pct = (c: MatrixCell): string => `${Math.round((100 * c.successes) / c.trials)} %`;
const setup = (c: MatrixCell): string => (c.setupMsP50 === null ? '-' : `${c.setupMsP50}/${c.setupMsP95}`);
const lines = [
  `SC2C, ${trials} calls a cell, ${rttMs} ms RTT: direct rate, setup p50/p95 ms. The random NAT calls / is called.`,
  '',
  `| other NAT | ${variants.map((v) => `${v} calls | ${v} called`).join(' | ')} |`,
  `| --- | ${variants.map(() => '--- | ---').join(' | ')} |`,
  ...MATRIX_PROFILES.map((other) => {
    const row = variants.flatMap((variant) =>
      (['random calls', 'random called'] as const).map((direction) => {
        const c = cells.find((x) => x.variant === variant && x.other === other && x.direction === direction)!;
        return `${pct(c)} ${setup(c)}`;
      }),
    );
    return `| ${other} | ${row.join(' | ')} |`;
  }),
];
const summary = variants.map((variant) => {
  const mine = cells.filter((c) => c.variant === variant);
  const direct = mine.reduce((n, c) => n + c.successes, 0);
  const all = mine.reduce((n, c) => n + c.trials, 0);
  return { variant, direct, calls: all, directRate: Math.round((10_000 * direct) / all) / 10_000 };
});
const report = {
  config: { trials, rttMs, elapsedS: Math.round((performance.now() - started) / 100) / 10 },
  summary,
  cells,
};
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'portmap.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(values.out, 'portmap.md'), `${lines.join('\n')}\n`);
}
if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
else
  process.stdout.write(
    `${lines.join('\n')}\n\n${summary.map((s) => `${s.variant}: ${s.direct}/${s.calls} direct`).join('\n')}\n`,
  );
