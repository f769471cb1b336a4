import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseRelayUrl } from '../../src/cli/configs.ts';
import { gatewayInit } from '../../src/cli/gateway-init.ts';

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

  it('report --file on a missing file is an error (exit 2), not an empty report', async () => {
    const { code, stdout, stderr } = await sc2c('report', '--file', '/nonexistent/calls.jsonl');
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(/no call-record file at \/nonexistent\/calls\.jsonl/);
  });

  it('prints help and exits non-zero on misuse', async () => {
    const { code, stderr } = await sc2c('sim', 'natcheck', '--frobnicate');
    expect(code).toBe(2);
    expect(stderr).toMatch(/unknown option '--frobnicate'/);
    expect(stderr).toMatch(/Usage: sc2c sim natcheck/);
  });

  it('has --help and --version on every command, found by walking the help itself; help fits 100 columns', async () => {
    const seen: string[] = [];
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    const walk = async (path: string[]): Promise<void> => {
      const { code, stdout } = await sc2c(...path, '--help');
      expect(code, `sc2c ${path.join(' ')} --help`).toBe(0);
      expect(stdout).toMatch(/Usage: sc2c/);
      const wide = stdout.split('\n').filter((line) => line.length > 100);
      expect(wide, `sc2c ${path.join(' ')} --help`).toEqual([]);
      const v = await sc2c(...path, '--version');
      expect([v.code, v.stdout.trim()], `sc2c ${path.join(' ')} --version`).toEqual([0, version]);
      seen.push(path.join(' '));
      const commands = stdout.split(/\nCommands:\n/)[1];
      if (!commands) return;
      for (const line of commands.split('\n')) {
        const name = /^ {2}([a-z][\w-]*)/.exec(line)?.[1];
        if (name && name !== 'help') await walk([...path, name]);
      }
    };
    await walk([]);
    for (const command of ['sim matrix', 'lab up', 'server', 'gateway', 'call', 'probe', 'demo', 'clip'])
      expect(seen).toContain(command);
  }, 120_000);

  it('rejects a bad --live port and a bad --loss-percent with a clear message', async () => {
    const live = await sc2c('call', 'bob', '--user', 'alice', '--password', 'x', '--live', 'abc');
    expect(live.code).toBe(2);
    expect(live.stderr).toMatch(/--live takes a TCP port \(0-65535\), not 'abc'/);
    const loss = await sc2c('demo', '--loss-percent', '80');
    expect(loss.code).toBe(2);
    expect(loss.stderr).toMatch(/--loss-percent must be a number from 0 to 50, got '80'/);
  });

  it('rejects a bad --transport and a bad --block-udp with the allowed values (issue 21)', async () => {
    const call = await sc2c('call', 'bob', '--user', 'alice', '--password', 'x', '--transport', 'sctp');
    expect(call.code).toBe(2);
    expect(call.stderr).toMatch(/--transport must be one of udp, auto, tcp; got 'sctp'/);
    const matrix = await sc2c('sim', 'matrix', '--transport', 'auto');
    expect(matrix.code).toBe(2);
    expect(matrix.stderr).toMatch(/--transport must be udp or tcp, got 'auto'/);
    const demo = await sc2c('demo', '--block-udp', 'c');
    expect(demo.code).toBe(2);
    expect(demo.stderr).toMatch(/--block-udp must be a or b, got 'c'/);
  });
});

describe('relay addresses', () => {
  it('takes host[:port] or an RFC 7065 TURN URI over UDP, TCP or TLS, and refuses DTLS and other transports with the reason', () => {
    const at = (address: string, port: number, transport: string) => ({
      server: { address, port },
      transport,
    });
    expect(parseRelayUrl('198.18.0.10', '--relay')).toEqual(at('198.18.0.10', 3478, 'udp'));
    expect(parseRelayUrl('198.18.0.10:3480', '--relay')).toEqual(at('198.18.0.10', 3480, 'udp'));
    expect(parseRelayUrl('turn:198.18.0.10', '--relay')).toEqual(at('198.18.0.10', 3478, 'udp'));
    expect(parseRelayUrl('turn:198.18.0.10:3480?transport=udp', '--relay')).toEqual(
      at('198.18.0.10', 3480, 'udp'),
    );
    expect(parseRelayUrl('TURN:198.18.0.10?transport=TCP', '--relay')).toEqual(
      at('198.18.0.10', 3478, 'tcp'),
    );
    // RFC 7065: turns: defaults to port 5349 and to TCP.
    expect(parseRelayUrl('turns:198.18.0.10', '--relay')).toEqual(at('198.18.0.10', 5349, 'tls'));
    expect(parseRelayUrl('turns:198.18.0.10:443?transport=tcp', '--relay')).toEqual(
      at('198.18.0.10', 443, 'tls'),
    );
    expect(() => parseRelayUrl('turns:198.18.0.10?transport=udp', '--relay')).toThrow(
      /DTLS, which is not built/,
    );
    expect(() => parseRelayUrl('turn:198.18.0.10?transport=sctp', '--relay')).toThrow(/transport=sctp/);
    // A host name is kept for resolving at start; a mangled one is refused with the form to use.
    expect(parseRelayUrl('turn:relay.example', '--relay')).toEqual(at('relay.example', 3478, 'udp'));
    expect(() => parseRelayUrl('turn:relay_example:1:2', '--relay')).toThrow(/host\[:port\]/);
    expect(() => parseRelayUrl('999.1.1.1', '--relay')).toThrow(/host\[:port\]/);
  });

  it("hands the gateway config's TLS trust to SIP and to a relay over TLS", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-cli-tls-'));
    writeFileSync(join(dir, 'ca.pem'), 'CA PEM');
    writeFileSync(
      join(dir, 'gateway.yaml'),
      'server: 198.18.0.10:5061\nstun: 198.18.0.10:3478\ndomain: sc2c.lab\ntls: { caFile: ca.pem, servername: sc2c.lab }\n',
    );
    const { init } = await gatewayInit({
      config: join(dir, 'gateway.yaml'),
      user: 'alice',
      password: 'alice-pass',
      relay: 'turns:198.18.0.10',
    });
    expect(init.sip.tls).toEqual({ ca: 'CA PEM', servername: 'sc2c.lab' });
    expect(init.relay).toMatchObject({
      server: { address: '198.18.0.10', port: 5349 },
      transport: 'tls',
      tls: { ca: 'CA PEM', servername: 'sc2c.lab' },
    });
    rmSync(dir, { recursive: true, force: true });
  });
});
