/**
 * TURN interop with coturn, both ways, on loopback (real sockets, real processes):
 *   - our TURN client allocates on coturn's `turnserver` and relays to a peer and back, with
 *     long-term credentials and with short-lived (TURN REST API) credentials, over UDP, TCP and TLS;
 *   - coturn's `turnutils_uclient` allocates on `sc2c server` and relays through it to
 *     `turnutils_peer`, which echoes, over UDP, TCP and TLS.
 * Skipped, with the reason printed, only where coturn is not installed (CI installs it).
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { startCoturn as startCoturn_ } from '../../src/lab/coturn.ts';
import { waitForOutput } from '../../src/lab/host-process.ts';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import { issueCredentials } from '../../src/relay/credentials.ts';
import { TurnClient } from '../../src/relay/turn-client.ts';
import { BIN } from '../lab/support.ts';
import { selfSignedCert } from '../tls-cert.ts';

const run = promisify(execFile);
const missing = await run('which', ['turnserver', 'turnutils_uclient', 'turnutils_peer']).then(
  () => undefined,
  () =>
    'coturn (turnserver, turnutils_uclient, turnutils_peer) is not installed: run scripts/setup-system.sh',
);
if (missing) console.warn(`SKIPPING coturn TURN interop: ${missing}`);

const dir = mkdtempSync(join(tmpdir(), 'sc2c-coturn-'));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A port block per test process, so parallel runs do not collide. */
const base = 20_000 + (process.pid % 400) * 100;

/** Each coturn relays from its own 10 ports of the block, clear of sc2c server's base+80..84. */
async function startCoturn(
  port: number,
  relayFrom: number,
  auth: string[],
  tls?: { port: number; certFile: string; keyFile: string },
): Promise<void> {
  children.push(
    await startCoturn_({
      address: '127.0.0.1',
      port,
      minPort: relayFrom,
      maxPort: relayFrom + 9,
      dir,
      auth,
      tls,
    }),
  );
}

const cert = selfSignedCert(dir);

async function relayThrough(
  server: { address: string; port: number },
  username: string,
  password: string,
  transport: 'udp' | 'tcp' | 'tls' = 'udp',
) {
  const clock = new SystemClock();
  const network = new NodeNetwork();
  const socket = await network.bindUdp({ address: '127.0.0.1' });
  const peer = await network.bindUdp({ address: '127.0.0.1' });
  const peerGot: string[] = [];
  // The peer echoes, as turnutils_peer does.
  peer.on('message', (data, from) => {
    peerGot.push(new TextDecoder().decode(data));
    peer.send(data, from);
  });
  const init = { server, username, password, rtoMs: 200 };
  const client =
    transport !== 'udp'
      ? await TurnClient.allocateOverTcp(
          { clock, network },
          { ...init, tls: transport === 'tls' ? { ca: cert.cert } : undefined },
        )
      : await TurnClient.allocate({ clock }, socket, init);
  const echoed: string[] = [];
  client.on('data', (data) => echoed.push(new TextDecoder().decode(data)));
  await client.createPermission(['127.0.0.1']);
  for (let i = 0; i < 5; i++) client.send(new TextEncoder().encode(`indication ${i}`), peer.local);
  await client.bindChannel(peer.local);
  for (let i = 0; i < 5; i++) client.send(new TextEncoder().encode(`channel ${i}`), peer.local);
  for (let i = 0; i < 50 && echoed.length < 10; i++) await new Promise((r) => setTimeout(r, 50));
  const relayed = client.relayed;
  await client.close();
  socket.close();
  peer.close();
  return { relayed, peerGot, echoed };
}

/** What `relayThrough` sends, each echoed back: five Send indications, then five on a channel. */
const ALL_ECHOED = [
  ...[0, 1, 2, 3, 4].map((i) => `indication ${i}`),
  ...[0, 1, 2, 3, 4].map((i) => `channel ${i}`),
].sort();

/**
 * `sc2c server` on loopback: SIP at `sip`, STUN/TURN at `stun`, `more` (turn: and the rest) appended;
 * resolved once its log matches `ready`. `banner()` is what it has logged.
 */
async function startOurs(file: string, sip: number, stun: number, more: string, ready: RegExp) {
  const config = join(dir, file);
  writeFileSync(
    config,
    `sip:
  listen: { address: 127.0.0.1, port: ${sip} }
  realm: sc2c.lab
  users: { alice: alice-interop-pass }
stun:
  primary: { address: 127.0.0.1, port: ${stun} }
  alternate: { address: 127.0.0.2, port: ${stun + 1} }
${more}`,
  );
  const server = spawn(process.execPath, [BIN, 'server', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(server);
  let banner = '';
  server.stderr!.on('data', (chunk) => {
    banner += chunk;
  });
  server.stdout!.on('data', (chunk) => {
    banner += chunk;
  });
  await waitForOutput(server, ready, 'sc2c server', 20_000);
  return { banner: () => banner };
}

/** coturn's echoing peer at 127.0.0.1:`port`. */
async function startPeer(port: number): Promise<void> {
  children.push(spawn('turnutils_peer', ['-L', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' }));
  await new Promise((r) => setTimeout(r, 300));
}

/**
 * uclient sends `count` messages through the relay at `port` to the echoing peer; its whole output.
 * -c: no RTCP allocation (that needs RESERVATION-TOKEN, which we do not offer).
 */
function uclient(
  flags: string[],
  port: number,
  peerPort: number,
  count: number,
  password = 'alice-interop-pass',
): Promise<string> {
  return run(
    'turnutils_uclient',
    ['-c', ...flags, '-u', 'alice', '-w', password, '-e', '127.0.0.1', '-r', String(peerPort)].concat([
      '-p',
      String(port),
      '-n',
      String(count),
      '127.0.0.1',
    ]),
    { timeout: 30_000 },
  ).then(
    ({ stdout, stderr }) => stdout + stderr,
    (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
  );
}

describe.skipIf(missing !== undefined)('TURN interop with coturn', () => {
  it('our client allocates on coturn with long-term credentials and relays both ways', async () => {
    const port = base + 1;
    await startCoturn(port, base + 10, ['--lt-cred-mech', '--user=alice:alice-lab-secret']);
    const result = await relayThrough({ address: '127.0.0.1', port }, 'alice', 'alice-lab-secret');
    expect(result.relayed.address).toBe('127.0.0.1');
    expect(result.relayed.port).toBeGreaterThanOrEqual(base + 10);
    expect(result.relayed.port).toBeLessThan(base + 20);
    expect(result.peerGot).toHaveLength(10);
    expect(result.echoed.sort()).toEqual(ALL_ECHOED);
  }, 30_000);

  it('our client allocates on coturn over TCP and relays both ways', async () => {
    const port = base + 3;
    await startCoturn(port, base + 30, ['--lt-cred-mech', '--user=alice:alice-lab-secret']);
    const result = await relayThrough({ address: '127.0.0.1', port }, 'alice', 'alice-lab-secret', 'tcp');
    expect(result.relayed.port).toBeGreaterThanOrEqual(base + 30);
    expect(result.relayed.port).toBeLessThan(base + 40);
    expect(result.peerGot).toHaveLength(10);
    expect(result.echoed.sort()).toEqual(ALL_ECHOED);
  }, 30_000);

  it('our client allocates on coturn over TLS when it trusts the certificate, and refuses it when not', async () => {
    const port = base + 4;
    const tlsPort = base + 5;
    await startCoturn(port, base + 40, ['--lt-cred-mech', '--user=alice:alice-lab-secret'], {
      port: tlsPort,
      ...cert,
    });
    const result = await relayThrough(
      { address: '127.0.0.1', port: tlsPort },
      'alice',
      'alice-lab-secret',
      'tls',
    );
    expect(result.relayed.port).toBeGreaterThanOrEqual(base + 40);
    expect(result.relayed.port).toBeLessThan(base + 50);
    expect(result.echoed.sort()).toEqual(ALL_ECHOED);
    // Without the CA the certificate does not verify, and the allocation fails saying so.
    await expect(
      TurnClient.allocateOverTcp(
        { clock: new SystemClock(), network: new NodeNetwork() },
        {
          server: { address: '127.0.0.1', port: tlsPort },
          username: 'alice',
          password: 'alice-lab-secret',
          tls: {},
        },
      ),
    ).rejects.toThrow(/over TLS: .*(self.signed|certificate)/i);
  }, 30_000);

  it('our per-call credentials work on coturn (use-auth-secret)', async () => {
    const port = base + 2;
    await startCoturn(port, base + 20, [
      '--use-auth-secret',
      '--static-auth-secret=lab-only-turn-secret-change-me',
    ]);
    const credentials = issueCredentials('lab-only-turn-secret-change-me', 'alice', Date.now() / 1000, 600);
    const result = await relayThrough(
      { address: '127.0.0.1', port },
      credentials.username,
      credentials.password,
    );
    expect(result.echoed).toHaveLength(10);
  }, 30_000);

  it('turnutils_uclient allocates on sc2c server and relays through it to turnutils_peer', async () => {
    const stun = base + 81;
    const peerPort = base + 83;
    const server = await startOurs(
      'server.yaml',
      base + 80,
      stun,
      `turn:
  allowedPeers: [127.0.0.0/8]
  tls: { port: ${stun + 3}, certFile: ${cert.certFile}, keyFile: ${cert.keyFile} }
admin:
  listen: { address: 127.0.0.1, port: ${base + 85} }
`,
      /TURN on 127\.0\.0\.1/,
    );
    // Issue 23: the channels are forwarded by sc2c-relayd (CI has the C compiler it is built with).
    expect(server.banner()).toMatch(/native data plane \(sc2c-relayd\)/);
    await startPeer(peerPort);
    const output = await uclient(['-l', '200'], stun, peerPort, 50);
    expect(output).toMatch(/tot_send_msgs=50, tot_recv_msgs=50/);
    expect(output).toMatch(/Total lost packets 0 \(0\.0+%\)/);
    // ... and relayd forwarded them both ways (its counters, read each second, in /metrics).
    const forwarded = async (): Promise<number> => {
      const text = await (await fetch(`http://127.0.0.1:${base + 85}/metrics`)).text();
      return Number(/^sc2c_turn_native_packets_total (\d+)/m.exec(text)?.[1] ?? 0);
    };
    for (let i = 0; i < 30 && (await forwarded()) < 100; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await forwarded()).toBeGreaterThanOrEqual(100);
    // With -s the client uses Send indications instead of channels: also relayed.
    expect(await uclient(['-s'], stun, peerPort, 20)).toMatch(/tot_send_msgs=20, tot_recv_msgs=20/);
    // With -t the client talks to the server over TCP (RFC 8656 §3.1); the relay leg is still UDP.
    expect(await uclient(['-t', '-l', '200'], stun, peerPort, 50)).toMatch(
      /tot_send_msgs=50, tot_recv_msgs=50/,
    );
    // With -t -S over TLS (-S alone is DTLS), on the TLS port.
    expect(await uclient(['-t', '-S', '-l', '200'], stun + 3, peerPort, 50)).toMatch(
      /tot_send_msgs=50, tot_recv_msgs=50/,
    );
    // A wrong password is refused, and uclient says so.
    expect(await uclient([], stun, peerPort, 5, 'wrong-password')).toMatch(
      /401|Unauthorized|Cannot complete Allocation/,
    );
  }, 60_000);

  it("turnutils_uclient follows a sharded sc2c server's signed 300 Try Alternate to a shard and relays there", async () => {
    const stun = base + 91;
    const peerPort = base + 93;
    const shardPort = base + 95;
    await startOurs(
      'sharded.yaml',
      base + 90,
      stun,
      `turn:
  allowedPeers: [127.0.0.0/8]
  shards: 2
  shardPort: ${shardPort}
  kernelForwarding: off
`,
      /relay shards on ports/,
    );
    await startPeer(peerPort);
    const output = await uclient(['-v', '-l', '200'], stun, peerPort, 50);
    // The front redirects the Allocate; uclient reconnects to the shard it names and allocates there.
    expect(output).toMatch(/error 300 \(Try Alternate: relay shard 127\.0\.0\.1:(\d+)\)/);
    const shard = Number(/relay shard 127\.0\.0\.1:(\d+)/.exec(output)![1]);
    expect([shardPort, shardPort + 1]).toContain(shard);
    expect(output).toContain(`Connected to: 127.0.0.1:${shard}`);
    expect(output).toMatch(/tot_send_msgs=50, tot_recv_msgs=50/);
  }, 60_000);
});
