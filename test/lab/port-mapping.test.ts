/**
 * Issue 20 against a real router: Debian's miniupnpd (nftables) on a kernel NAT that maps ports
 * at random (kernel:miniupnpd), facing a random-port symmetric NAT. Nothing but a mapping on
 * request can connect that pair directly. Checked against miniupnpd's own list of redirects:
 * `sc2c probe` gets a PCP grant and deletes it; a call's lease is there while the call is, renewed,
 * asked for again within one renewal after miniupnpd restarts, and deleted when the call ends.
 * With --no-port-mapping the same pair takes the relay.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { type CallSummary, runLabCalls } from '../../src/lab/calls.ts';
import type { Redirect } from '../../src/lab/miniupnpd.ts';
import { labUnavailable, probeIn, sc2c } from './support.ts';

const run = promisify(execFile);

async function miniupnpdMissing(): Promise<string | undefined> {
  try {
    await run('miniupnpd', ['--version']);
    return undefined;
  } catch {
    const why = 'miniupnpd is not installed (scripts/setup-system.sh installs miniupnpd-nftables)';
    if (process.env.CI === 'true') throw new Error(`CI=true: ${why}`);
    console.warn(`SKIPPING kernel:miniupnpd tests: ${why}`);
    return why;
  }
}

const unavailable = (await labUnavailable()) ?? (await miniupnpdMissing());

interface Portmap {
  starts: number;
  redirects: Redirect[];
  kernelRules: number;
}

async function portmap(lab: string, restart = false): Promise<Portmap> {
  const got = await sc2c(
    'lab',
    'portmap',
    'nat-b',
    '--lab',
    lab,
    '--json',
    ...(restart ? ['--restart'] : []),
  );
  if (got.code !== 0) throw new Error(`sc2c lab portmap failed: ${got.stderr}`);
  return JSON.parse(got.stdout) as Portmap;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A random-port NAT calling the real router, one SC2C call. */
const PAIR = {
  natA: 'symmetric-random',
  natB: 'kernel:miniupnpd',
  rttMs: 40,
  modes: ['sc2c'],
  callsPerMode: 1,
} as const;

/** The router's list once the camera's delete has reached it (5 s at most). */
async function deleted(lab: string): Promise<Portmap> {
  let listed = await portmap(lab);
  for (let i = 0; i < 50 && listed.redirects.length > 0; i++) {
    await sleep(100);
    listed = await portmap(lab);
  }
  return listed;
}

describe.skipIf(unavailable)('port mapping with a real miniupnpd (kernel:miniupnpd)', () => {
  it('maps the camera port with PCP, renews it, recovers a router restart and deletes it', async () => {
    const lab = `pm${process.pid % 10_000}`;
    const LIFETIME_S = 4;
    let probe: { portMapping?: Record<string, unknown> } = {};
    let upnpProbe: { portMapping?: Record<string, unknown> } = {};
    let afterProbe: Portmap | undefined;
    let during: Portmap | undefined;
    let restarted: Portmap | undefined;
    let recovered: Portmap | undefined;
    let after: Portmap | undefined;
    const leaseEvents: string[] = [];
    let checks: Promise<void> | undefined;
    const runs = await runLabCalls({
      ...PAIR,
      name: lab,
      calleeArgs: ['--no-relay', '--port-mapping-lifetime', String(LIFETIME_S)],
      callArgs: () => ['--no-media', '--no-relay', '--duration', '14'],
      beforeCalls: async (hosts) => {
        probe = await probeIn(hosts.bob!);
        afterProbe = await portmap(lab);
        upnpProbe = await probeIn(hosts.bob!, '--port-mapping-protocols', 'upnp');
      },
      onCalleeEvent: (event) => {
        if (event.event === 'lease') leaseEvents.push(String(event.kind));
        // The call is up on the camera's side: look at the router while it lasts.
        if (event.event === 'call' && event.ok && !checks) {
          checks = (async () => {
            during = await portmap(lab);
            await sleep(3 * 1000);
            restarted = await portmap(lab, true);
            // One renewal is due at most half a lifetime later (plus its round trips).
            await sleep((LIFETIME_S / 2) * 1000 + 1000);
            recovered = await portmap(lab);
          })();
        }
      },
      inspect: async () => {
        await checks;
        // The camera deletes its lease when the viewer's BYE ends the call.
        after = await deleted(lab);
      },
    });
    const call = runs.sc2c![0]!;
    expect(probe.portMapping).toMatchObject({ protocol: 'pcp', externalAddress: '198.18.2.1' });
    expect(afterProbe!.redirects).toEqual([]); // the probe deleted what it asked for
    // UPnP IGD (SSDP, the description, SOAP AddPortMapping) answers too, when asked for alone.
    expect(upnpProbe.portMapping).toMatchObject({ protocol: 'upnp', externalAddress: '198.18.2.1' });
    expect(call.ok).toBe(true);
    expect(call.remote!.portSource).toBe('mapped');
    const mapped = call.remote!.publicEndpoint.port;
    expect(call.pair!.remote).toEqual({ address: '198.18.2.1', port: mapped });
    // While the call lasts, miniupnpd holds one UDP redirect to the camera, in the kernel too.
    expect(during!.redirects).toMatchObject([
      { protocol: 'udp', externalPort: mapped, internal: { address: '10.0.2.2' } },
    ]);
    expect(during!.kernelRules).toBe(1);
    // The restart took it away; the next renewal saw the epoch start over and asked again.
    expect(restarted!.starts).toBe(2);
    expect(restarted!.redirects).toEqual([]);
    expect(recovered!.redirects).toHaveLength(1);
    expect(recovered!.redirects[0]!.internal.address).toBe('10.0.2.2');
    expect(recovered!.kernelRules).toBe(1);
    expect(leaseEvents).toContain('renewed');
    expect(leaseEvents).toContain('reset');
    // And the BYE deleted it.
    expect(after!.redirects).toEqual([]);
    expect(after!.kernelRules).toBe(0);
  }, 120_000);

  it('without port mapping the same pair can only take the relay', async () => {
    const relay = ['--relay', '198.18.0.10:3478'];
    const runs = await runLabCalls({
      ...PAIR,
      name: `pn${process.pid % 10_000}`,
      calleeArgs: [...relay, '--no-port-mapping'],
      callArgs: () => ['--no-media', ...relay, '--no-port-mapping'],
    });
    const call = runs.sc2c![0]! as CallSummary & { route?: string };
    expect(call.ok).toBe(true);
    expect(call.route).toBe('relay');
    expect(call.remote!.portSource).toBe('unpredictable');
  }, 120_000);

  it('a UPnP IGD lease serves a call as well, and is deleted when the call ends', async () => {
    const lab = `pu${process.pid % 10_000}`;
    let after: Portmap | undefined;
    const runs = await runLabCalls({
      ...PAIR,
      name: lab,
      calleeArgs: ['--no-relay', '--port-mapping-protocols', 'upnp'],
      inspect: async () => {
        after = await deleted(lab);
      },
    });
    const call = runs.sc2c![0]!;
    expect(call.ok).toBe(true);
    expect(call.remote!.portSource).toBe('mapped');
    expect(after!.redirects).toEqual([]);
  }, 120_000);
});
