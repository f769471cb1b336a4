/**
 * The systemd units in deploy/ (issue 18): `systemd-analyze verify` accepts them (syntax, known
 * keys, an executable ExecStart), and their hardening keeps systemd's own exposure score at or
 * below 2.0 ("OK"). With CI=true a missing systemd-analyze fails the run instead of skipping.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const UNITS = ['sc2c-server.service', 'sc2c-gateway.service'].map(
  (name) => new URL(`../../deploy/${name}`, import.meta.url).pathname,
);

async function available(): Promise<boolean> {
  try {
    await run('systemd-analyze', ['--version']);
    return true;
  } catch {
    if (process.env.CI === 'true')
      throw new Error('systemd-analyze is missing (scripts/setup-system.sh installs systemd)');
    console.warn('skipping the unit checks: systemd-analyze is not installed');
    return false;
  }
}

describe('systemd units', async () => {
  const present = await available();

  it.skipIf(!present)('pass systemd-analyze verify', async () => {
    // Unknown keys and typos are warnings on stderr with exit 0: the output must be empty too.
    const { stdout, stderr } = await run('systemd-analyze', ['verify', ...UNITS]);
    expect(stdout + stderr).toBe('');
  });

  it.skipIf(!present)('keep the exposure score at or below 2.0 (systemd-analyze security)', async () => {
    for (const unit of UNITS) {
      // --threshold is on systemd's 0-100 scale: 20 is an overall exposure of 2.0.
      await expect(
        run('systemd-analyze', ['security', '--offline=true', '--threshold=20', unit]),
      ).resolves.toBeDefined();
    }
  });

  it('run the commands the README documents, with the JSON log and SIGTERM', () => {
    const server = readFileSync(UNITS[0]!, 'utf8');
    const gateway = readFileSync(UNITS[1]!, 'utf8');
    expect(server).toMatch(/^ExecStart=.* server --config \/var\/lib\/sc2c\/server\.yaml --log-json$/m);
    expect(gateway).toMatch(
      /^ExecStart=.* gateway --config \/var\/lib\/sc2c-gateway\/gateway\.yaml .*--log-json$/m,
    );
    for (const unit of [server, gateway]) {
      expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
      expect(unit).toMatch(/^DynamicUser=yes$/m);
      expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    }
  });
});
