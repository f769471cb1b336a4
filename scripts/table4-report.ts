/**
 * The paper's Table 4 (seed 000, §3: 100 trials per case) and the renderings of our run beside it:
 * a text table in the paper's layout and an SVG heatmap, rasterised to PNG by ffmpeg (librsvg).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

export const KINDS = ['Others', 'IPS', 'PKS'] as const;
export type Kind = (typeof KINDS)[number];
export type Mode = 'sc2c' | 'c2c' | 'ice';

/** Success rates of the paper's Table 4, calling -> called -> mode. */
export const PAPER_TABLE4: Record<Kind, Record<Kind, { sc2c: number; c2c: number }>> = {
  Others: { Others: { sc2c: 0.98, c2c: 0.9 }, IPS: { sc2c: 0.96, c2c: 0.1 }, PKS: { sc2c: 0.98, c2c: 0.92 } },
  IPS: { Others: { sc2c: 0.99, c2c: 0.92 }, IPS: { sc2c: 0.96, c2c: 0.05 }, PKS: { sc2c: 0.98, c2c: 0.9 } },
  PKS: { Others: { sc2c: 0.97, c2c: 0.01 }, IPS: { sc2c: 0.99, c2c: 0.02 }, PKS: { sc2c: 0.96, c2c: 0.02 } },
};

export interface Table4Cell {
  readonly calling: Kind;
  readonly called: Kind;
  readonly mode: Mode;
  readonly successes: number;
  readonly trials: number;
  /** The paper's rate for this cell; null for ICE, which the paper did not run. */
  readonly paperRate: number | null;
  /** Successes on the first attempt (SC2C re-INVITEs with a fresh prediction after a failed punch). */
  readonly firstAttemptSuccesses: number;
  readonly setupMsP50: number | null;
  readonly setupMsP95: number | null;
  readonly failures: Readonly<Record<string, number>>;
}

const pct = (v: number): string => `${Math.round(v * 100)}%`;

/** The paper's layout: a row per calling NAT, per called NAT our rate with the paper's in brackets. */
export function formatTable4(cells: readonly Table4Cell[], modes: readonly Mode[]): string {
  const find = (calling: Kind, called: Kind, mode: Mode) =>
    cells.find((c) => c.calling === calling && c.called === called && c.mode === mode);
  const header1 = ['Calling \\ Called', ...KINDS.flatMap((k) => modes.map((_, i) => (i === 0 ? k : '')))];
  const header2 = ['', ...KINDS.flatMap(() => modes.map((m) => m.toUpperCase()))];
  const rows = KINDS.map((calling) => [
    calling,
    ...KINDS.flatMap((called) =>
      modes.map((mode) => {
        const cell = find(calling, called, mode);
        if (!cell) return '-';
        const ours = pct(cell.successes / cell.trials);
        return cell.paperRate === null ? ours : `${ours} (${pct(cell.paperRate)})`;
      }),
    ),
  ]);
  const all = [header1, header2, ...rows];
  const widths = header1.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join(' | ');
  const withPaper = cells.some((c) => c.paperRate !== null);
  return [
    ...all.map(line),
    '',
    `${withPaper ? 'ours (paper)' : 'ours'} per cell; ICE: werift-ice with our STUN server (the paper ran no ICE)`,
    '',
  ].join('\n');
}

/** An SVG heatmap: one panel per mode, calling NATs down, called NATs across, green = direct. */
export function table4Svg(cells: readonly Table4Cell[], modes: readonly Mode[], title: string): string {
  const size = 70;
  const panelWidth = size * 3 + 90;
  const width = panelWidth * modes.length + 20;
  const height = size * 3 + 110;
  const colour = (rate: number): string => {
    const r = Math.round(220 * (1 - rate) + 30 * rate);
    const g = Math.round(60 * (1 - rate) + 170 * rate);
    return `rgb(${r},${g},70)`;
  };
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="10" y="22" font-size="15">${title}</text>`,
  ];
  modes.forEach((mode, p) => {
    const x0 = 10 + p * panelWidth + 70;
    const y0 = 75;
    parts.push(
      `<text x="${x0 + size * 1.5}" y="48" font-size="14" text-anchor="middle">${mode.toUpperCase()}</text>`,
    );
    KINDS.forEach((called, j) => {
      parts.push(
        `<text x="${x0 + j * size + size / 2}" y="68" font-size="11" text-anchor="middle">${called}</text>`,
      );
    });
    KINDS.forEach((calling, i) => {
      parts.push(
        `<text x="${x0 - 6}" y="${y0 + i * size + size / 2 + 4}" font-size="11" text-anchor="end">${calling}</text>`,
      );
      KINDS.forEach((called, j) => {
        const cell = cells.find((c) => c.calling === calling && c.called === called && c.mode === mode);
        const rate = cell ? cell.successes / cell.trials : 0;
        const x = x0 + j * size;
        const y = y0 + i * size;
        parts.push(
          `<rect x="${x}" y="${y}" width="${size - 2}" height="${size - 2}" fill="${cell ? colour(rate) : '#ccc'}"/>`,
        );
        parts.push(
          `<text x="${x + size / 2}" y="${y + size / 2}" font-size="14" fill="white" text-anchor="middle">${cell ? pct(rate) : '-'}</text>`,
        );
        if (cell?.paperRate != null)
          parts.push(
            `<text x="${x + size / 2}" y="${y + size / 2 + 16}" font-size="10" fill="white" text-anchor="middle">paper ${pct(cell.paperRate)}</text>`,
          );
      });
    });
  });
  parts.push(
    `<text x="10" y="${height - 10}" font-size="11">rows: calling NAT; columns: called NAT; Others = symmetric-seq1, IPS/PKS = symmetric-seq1+ips/+pks</text>`,
  );
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

/** Writes `svg` next to `png` and rasterises it with ffmpeg; resolves with why not when it cannot. */
export async function writeHeatmap(
  svg: string,
  svgPath: string,
  pngPath: string,
  ffmpeg: string,
): Promise<string | null> {
  writeFileSync(svgPath, svg);
  try {
    await promisify(execFile)(ffmpeg, ['-v', 'error', '-y', '-i', svgPath, '-frames:v', '1', pngPath], {
      timeout: 30_000,
    });
    return null;
  } catch (error) {
    return `no PNG (this ffmpeg cannot read SVG: ${(error as Error).message.split('\n')[0]}); the SVG is ${svgPath}`;
  }
}
