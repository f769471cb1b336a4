/**
 * `node --import tsx scripts/summarize-matrix.ts FILE.json [...]`: checks a `sc2c sim matrix --json`
 * result against the SC2C acceptance criteria and prints the figures the README quotes.
 *   SC2C >= 99 % for every pair; C2C <= 10 % when the caller is PKS or the callee is IPS;
 *   SC2C punch skew p95 <= 5 ms.
 */
import { readFileSync } from 'node:fs';
import type { MatrixCell } from '../src/sim/matrix.ts';

for (const file of process.argv.slice(2)) {
  const { config, pairs } = JSON.parse(readFileSync(file, 'utf8')) as {
    config: Record<string, unknown>;
    pairs: MatrixCell[];
  };
  const by = (mode: string): MatrixCell[] => pairs.filter((p) => p.mode === mode);
  const rate = (c: MatrixCell): number => c.successes / c.trials;
  const lines = [`${file}: ${JSON.stringify(config)}`];
  let pass = true;
  for (const mode of [...new Set(pairs.map((p) => p.mode))]) {
    const cells = by(mode);
    const successes = cells.reduce((a, c) => a + c.successes, 0);
    const trials = cells.reduce((a, c) => a + c.trials, 0);
    const skew = Math.max(...cells.map((c) => c.skewMsP95 ?? 0));
    const setups = cells.filter((c) => c.setupMsP50 !== null);
    const setupP50 = setups.length ? Math.max(...setups.map((c) => c.setupMsP50!)) : null;
    const setupP95 = setups.length ? Math.max(...setups.map((c) => c.setupMsP95!)) : null;
    const worst = cells.reduce((w, c) => (rate(c) < rate(w) ? c : w), cells[0]!);
    lines.push(
      `  ${mode.padEnd(10)} ${successes}/${trials} (${((100 * successes) / trials).toFixed(1)} %), worst cell ${worst.calling} -> ${worst.called} ${worst.successes}/${worst.trials}, setup p50/p95 at most ${setupP50}/${setupP95} ms, skew p95 at most ${skew} ms`,
    );
    if (mode === 'sc2c') {
      const low = cells.filter((c) => rate(c) < 0.99);
      const skewed = cells.filter((c) => (c.skewMsP95 ?? 0) > 5);
      lines.push(
        `    SC2C >= 99 % in every cell: ${low.length === 0 ? 'PASS' : `FAIL (${low.length} cells)`}; skew p95 <= 5 ms: ${skewed.length === 0 ? 'PASS' : `FAIL (${skewed.length} cells)`}`,
      );
      pass &&= low.length === 0 && skewed.length === 0;
    }
    if (mode === 'c2c') {
      const collapse = cells.filter((c) => c.calling.endsWith('+pks') || c.called.endsWith('+ips'));
      const high = collapse.filter((c) => rate(c) > 0.1);
      const others = cells.filter((c) => !collapse.includes(c));
      lines.push(
        `    C2C <= 10 % when the caller is PKS or the callee is IPS: ${high.length === 0 ? 'PASS' : `FAIL (${high.length} cells)`} (${collapse.reduce((a, c) => a + c.successes, 0)}/${collapse.reduce((a, c) => a + c.trials, 0)}); elsewhere ${others.reduce((a, c) => a + c.successes, 0)}/${others.reduce((a, c) => a + c.trials, 0)}`,
      );
      pass &&= high.length === 0;
    }
  }
  process.stdout.write(`${lines.join('\n')}\n  overall: ${pass ? 'PASS' : 'FAIL'}\n`);
  if (!pass) process.exitCode = 1;
}
