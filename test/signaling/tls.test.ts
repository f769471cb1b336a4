import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { SignalingServer } from '../../src/signaling/server.ts';

// A throwaway self-signed certificate for 127.0.0.1, made with the system's openssl.
const dir = mkdtempSync(join(tmpdir(), 'sc2c-tls-'));
execFileSync(
  'openssl',
  [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '1',
    '-subj',
    '/CN=sc2c.lab',
    '-addext',
    'subjectAltName=IP:127.0.0.1',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'cert.pem'),
  ],
  { stdio: 'ignore' },
);
const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
const key = readFileSync(join(dir, 'key.pem'), 'utf8');

describe('SIP over TLS (real sockets on loopback)', () => {
  it('registers over TLS when the client trusts the certificate, and refuses one that does not', async () => {
    const network = new NodeNetwork();
    const clock = new SystemClock();
    const tlsServer = await SignalingServer.start(
      { network, clock },
      {
        listen: { address: '127.0.0.1', port: 0 },
        realm: 'sc2c.lab',
        users: { alice: 'alice-pass-1' },
        tls: { port: 0, cert, key },
      },
    );
    const port = tlsServer.tlsLocal!.port;
    try {
      const client = await SignalingClient.connect(
        { network, clock },
        {
          server: { address: '127.0.0.1', port },
          domain: 'sc2c.lab',
          user: 'alice',
          password: 'alice-pass-1',
          tls: { ca: cert },
        },
      );
      expect(await client.register()).toBe(3600);
      expect(tlsServer.registrations().map((r) => r.user)).toEqual(['alice']);
      client.close();
      await expect(
        SignalingClient.connect(
          { network, clock },
          {
            server: { address: '127.0.0.1', port },
            domain: 'sc2c.lab',
            user: 'alice',
            password: 'alice-pass-1',
            tls: {},
          },
        ),
      ).rejects.toThrow(/self.signed|certificate/i);
    } finally {
      tlsServer.close();
    }
  });
});
