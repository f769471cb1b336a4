/**
 * A standard ICE agent (werift-ice, RFC 8445, as in WebRTC stacks) for `bench:table4`'s ICE rows,
 * run inside a lab host. It speaks JSON lines with the benchmark, which relays the offers between
 * the two agents (an instant signaling channel: ICE gets no delay that SC2C's SIP path has).
 *
 *   in:  {"cmd":"gather"}                       out: {"ufrag","pwd","candidates":[...]}
 *   in:  {"cmd":"connect","remote":{...}}       out: {"ok":true,"connectedMs":N,"pair":"..."} or {"ok":false,"reason"}
 *   in:  {"cmd":"exit"}
 *
 * Each gather starts a new session on fresh sockets; `connectedMs` runs from the remote parameters
 * to the connected state; a session that has not connected after `--timeout-ms` failed.
 *
 * Usage: node --import tsx scripts/ice-agent.ts --stun 198.18.0.10:3478 [--controlling] [--timeout-ms 3000]
 */
import { createInterface } from 'node:readline';
import { Candidate, Connection } from 'werift-ice';

const args = process.argv.slice(2);
const value = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const [stunHost, stunPort] = (value('--stun') ?? '198.18.0.10:3478').split(':');
const controlling = args.includes('--controlling');
const timeoutMs = Number(value('--timeout-ms') ?? 3000);

let session: Connection | undefined;
const reply = (data: unknown): void => {
  process.stdout.write(`${JSON.stringify(data)}\n`);
};

async function gather(): Promise<void> {
  await session?.close().catch(() => {});
  session = new Connection(controlling, {
    stunServer: [stunHost!, Number(stunPort)],
    useIpv4: true,
    useIpv6: false,
  });
  await session.gatherCandidates();
  reply({
    ufrag: session.localUsername,
    pwd: session.localPassword,
    candidates: session.localCandidates.map((c) => c.toSdp()),
  });
}

async function connect(remote: { ufrag: string; pwd: string; candidates: string[] }): Promise<void> {
  const connection = session;
  if (!connection) {
    reply({ ok: false, reason: 'connect before gather' });
    return;
  }
  const started = performance.now();
  connection.setRemoteParams({ iceLite: false, usernameFragment: remote.ufrag, password: remote.pwd });
  for (const sdp of remote.candidates) await connection.addRemoteCandidate(Candidate.fromSdp(sdp));
  await connection.addRemoteCandidate(undefined);
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    connection.connect().then(
      () => ({ ok: true as const }),
      (error: Error) => ({ ok: false as const, reason: `ICE failed: ${error.message}` }),
    ),
    new Promise<{ ok: false; reason: string }>((resolve) => {
      timer = setTimeout(
        () => resolve({ ok: false, reason: `not connected within ${timeoutMs} ms` }),
        timeoutMs,
      );
    }),
  ]);
  clearTimeout(timer);
  if (outcome.ok)
    reply({
      ok: true,
      connectedMs: Math.round(performance.now() - started),
      pair: connection.nominated
        ? `${connection.nominated.localCandidate.type} -> ${connection.nominated.remoteCandidate.type}`
        : null,
    });
  else reply(outcome);
  await connection.close().catch(() => {});
  session = undefined;
}

const lines = createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  queue = queue.then(async () => {
    let message: { cmd?: string; remote?: { ufrag: string; pwd: string; candidates: string[] } };
    try {
      message = JSON.parse(line);
    } catch {
      reply({ ok: false, reason: 'not JSON' });
      return;
    }
    try {
      if (message.cmd === 'gather') await gather();
      else if (message.cmd === 'connect' && message.remote) await connect(message.remote);
      else if (message.cmd === 'exit') process.exit(0);
      else reply({ ok: false, reason: `unknown command ${message.cmd}` });
    } catch (error) {
      reply({ ok: false, reason: (error as Error).message });
    }
  });
});
lines.on('close', () => process.exit(0));
