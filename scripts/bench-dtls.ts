/**
 * `npm run bench:dtls [-- --handshakes N] [--json]`: the CPU one DTLS-SRTP handshake costs, both
 * sides together in one process (no network: each side's datagrams are handed straight to the
 * other), so the figure is crypto and codec work only. Bounded: at most 10 000 handshakes.
 */
import { parseArgs } from 'node:util';
import { VirtualClock } from '../src/net/clock.ts';
import { DtlsEndpoint } from '../src/path/dtls-endpoint.ts';
import { createIdentity } from '../src/protocol/dtls/certificate.ts';

const { values } = parseArgs({
  options: { handshakes: { type: 'string', default: '200' }, json: { type: 'boolean', default: false } },
});
const handshakes = Number(values.handshakes);
if (!Number.isInteger(handshakes) || handshakes < 1 || handshakes > 10_000)
  throw new Error('--handshakes must be 1-10000');
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
