import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const BIN = new URL('../../src/cli/bin.js', import.meta.url).pathname;

async function sc2c(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('sc2c CLI', () => {
  it('sim natcheck --json lists every shipped profile with match: true', async () => {
    const { code, stdout } = await sc2c('sim', 'natcheck', '--json', '--quiet');
    expect(code).toBe(0);
    const results = JSON.parse(stdout) as {
      profile: string;
      match: boolean;
      declared: unknown;
      observed: unknown;
    }[];
    expect(results.map((r) => r.profile)).toContain('symmetric-seq1+pks');
    expect(results.map((r) => r.profile)).toContain('symmetric-seq1+ips');
    expect(results).toHaveLength(18);
    for (const r of results) {
      expect(Object.keys(r)).toEqual(expect.arrayContaining(['profile', 'declared', 'observed', 'match']));
      expect(r.match).toBe(true);
    }
  });

  it('exits 2 with a clear message for an unknown profile, without a stack trace', async () => {
    const { code, stderr } = await sc2c('sim', 'natcheck', '--profile', 'nope');
    expect(code).toBe(2);
    expect(stderr).toMatch(/unknown NAT profile 'nope'\. Allowed: full-cone/);
    expect(stderr).not.toMatch(/at .*\.ts:\d+/);
  });

  it('prints help and exits non-zero on misuse', async () => {
    const { code, stderr } = await sc2c('sim', 'natcheck', '--frobnicate');
    expect(code).toBe(2);
    expect(stderr).toMatch(/unknown option '--frobnicate'/);
    expect(stderr).toMatch(/Usage: sc2c sim natcheck/);
  });

  it('has --help on every command', async () => {
    for (const args of [[], ['sim'], ['sim', 'natcheck'], ['demo']]) {
      const { code, stdout } = await sc2c(...args, '--help');
      expect(code).toBe(0);
      expect(stdout).toMatch(/Usage: sc2c/);
    }
  });
});
