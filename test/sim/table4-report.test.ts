import { describe, expect, it } from 'vitest';
import {
  formatTable4,
  KINDS,
  PAPER_TABLE4,
  type Table4Cell,
  table4Svg,
} from '../../scripts/table4-report.ts';

const cells: Table4Cell[] = KINDS.flatMap((calling) =>
  KINDS.flatMap((called) =>
    (['sc2c', 'c2c', 'ice'] as const).map((mode) => ({
      calling,
      called,
      mode,
      successes: mode === 'sc2c' ? 100 : mode === 'c2c' ? 7 : 0,
      trials: 100,
      paperRate: mode === 'ice' ? null : PAPER_TABLE4[calling][called][mode],
      firstAttemptSuccesses: 0,
      setupMsP50: null,
      setupMsP95: null,
      failures: {},
    })),
  ),
);

describe('bench:table4 report', () => {
  it("carries the paper's Table 4 (seed 000) and prints ours beside it in the paper's layout", () => {
    expect(PAPER_TABLE4.PKS.Others).toEqual({ sc2c: 0.97, c2c: 0.01 });
    expect(PAPER_TABLE4.Others.IPS).toEqual({ sc2c: 0.96, c2c: 0.1 });
    const text = formatTable4(cells, ['sc2c', 'c2c', 'ice']);
    const rows = text.split('\n');
    expect(rows[0]).toMatch(/^Calling \\ Called\s+\| Others/);
    expect(rows.find((r) => r.startsWith('PKS'))).toMatch(/^PKS\s+\| 100% \(97%\) \| 7% \(1%\)\s+\| 0%/);
  });

  it('names no paper figures on another base NAT, where it has none', () => {
    const cone = cells.map((c) => ({ ...c, paperRate: null }));
    const text = formatTable4(cone, ['sc2c', 'c2c', 'ice']);
    expect(text).toContain('\nours per cell;');
    expect(text.split('\n').find((r) => r.startsWith('PKS'))).toMatch(/^PKS\s+\| 100%\s+\| 7%\s+\| 0%/);
  });

  it('draws one heatmap panel per mode with every cell', () => {
    const svg = table4Svg(cells, ['sc2c', 'c2c', 'ice'], 'title');
    expect(svg.match(/<rect x=/g)).toHaveLength(27);
    expect(svg).toContain('paper 97%');
  });
});
