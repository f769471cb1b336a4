import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SystemClock } from '../../src/net/clock.ts';
import { NodeNetwork } from '../../src/net/node-network.ts';
import { SignalingClient } from '../../src/signaling/client.ts';
import { SignalingServer } from '../../src/signaling/server.ts';
import { selfSignedCert } from '../tls-cert.ts';

const { cert, key } = selfSignedCert(mkdtempSync(join(tmpdir(), 'sc2c-tls-')));

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
    const connect = (tls: { ca?: string; fingerprint?: string }) =>
      SignalingClient.connect(
        { network, clock },
        {
          server: { address: '127.0.0.1', port },
          domain: 'sc2c.lab',
          user: 'alice',
          password: 'alice-pass-1',
          tls,
        },
      );
    try {
      const client = await connect({ ca: cert });
      expect(await client.register()).toBe(3600);
      expect(tlsServer.registrations().map((r) => r.user)).toEqual(['alice']);
      client.close();
      await expect(connect({})).rejects.toThrow(/self.signed|certificate/i);
      // Pinned by fingerprint instead of a CA: the right one registers, another is refused.
      const pin = new X509Certificate(cert).fingerprint256;
      const pinned = await connect({ fingerprint: pin });
      expect(await pinned.register()).toBe(3600);
      pinned.close();
      const wrong = pin.replace(/^../, pin.startsWith('00') ? '11' : '00');
      await expect(connect({ fingerprint: wrong })).rejects.toThrow(/is not the pinned one/);
    } finally {
      tlsServer.close();
    }
  });
});
