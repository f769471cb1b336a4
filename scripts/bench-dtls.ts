/**
 * `npm run bench:dtls [-- --handshakes N] [--json]`: the CPU one DTLS-SRTP handshake costs, both
 * sides together in one process (no network: each side's datagrams are handed straight to the
 * other), so the figure is crypto and codec work only. Bounded: at most 10 000 handshakes.
 */
import { parseArgs } from 'node:util';
import { VirtualClock } from '../src/net/clock.ts';
import { DtlsEndpoint } from '../src/path/dtls-endpoint.ts';
import { createIdentity } from '../src/protocol/dtls/certificate.ts';

const USAGE = `usage: npm run bench:dtls -- [--handshakes N] [--json]

  --handshakes N   full DTLS-SRTP handshakes, both sides in this process (default 200, 1-10000)
  --json           print the figures as JSON
  -h, --help       this text
`;
let values: { handshakes: string; json: boolean; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      handshakes: { type: 'string', default: '200' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  }));
} catch (error) {
  process.stderr.write(`bench:dtls: ${(error as Error).message}\n${USAGE}`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const handshakes = Number(values.handshakes);
if (!Number.isInteger(handshakes) || handshakes < 1 || handshakes > 10_000) {
  process.stderr.write(
    `bench:dtls: --handshakes takes a whole number from 1 to 10000, not '${values.handshakes}'\n`,
  );
  process.exit(2);
}
const camera = createIdentity('camera');
const viewer = createIdentity('viewer');
const clock = new VirtualClock();
const before = process.cpuUsage();
const started = performance.now();
for (let i = 0; i < handshakes; i++) {
  let client!: DtlsEndpoint;
  let server!: DtlsEndpoint;
  client = new DtlsEndpoint(
    { clock },
    { role: 'client', identity: viewer, remoteFingerprint: camera.fingerprint },
    (d) => server.handle(d),
  );
  server = new DtlsEndpoint(
    { clock },
    { role: 'server', identity: camera, remoteFingerprint: viewer.fingerprint },
    (d) => client.handle(d),
  );
  server.start();
  client.start();
  if (client.state !== 'connected' || server.state !== 'connected')
    throw new Error(`handshake ${i} did not complete: ${client.failure ?? server.failure}`);
  client.close();
  server.close();
}
const used = process.cpuUsage(before);
const result = {
  handshakes,
  cpuMsPerHandshake: Math.round(((used.user + used.system) / 1000 / handshakes) * 100) / 100,
  wallMsPerHandshake: Math.round(((performance.now() - started) / handshakes) * 100) / 100,
};
process.stdout.write(
  values.json
    ? `${JSON.stringify(result)}\n`
    : `${handshakes} DTLS-SRTP handshakes, both sides: ${result.cpuMsPerHandshake} ms of CPU each (${result.wallMsPerHandshake} ms wall)\n`,
);
