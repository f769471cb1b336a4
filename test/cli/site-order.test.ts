/**
 * Site affinity (issue 24): gateways naming one site start their server list at the same node, and
 * fail over through the same order; sites spread over the nodes. Through `gatewayInit` too, as
 * `sc2c gateway --site` and `site:` in gateway.yaml set it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gatewayInit } from '../../src/cli/gateway-init.ts';
import { bySite } from '../../src/cli/site-order.ts';

const NODES = ['198.18.0.10:5060', '198.18.0.20:5060', '198.18.0.30:5060'];

describe('site affinity (issue 24)', () => {
  it('gives one site one order, a rotation of the list, and leaves the list alone without a site', () => {
    const order = bySite(NODES, 'warehouse-3');
    expect(bySite(NODES, 'warehouse-3')).toEqual(order);
    expect([...order].sort()).toEqual([...NODES].sort());
    const first = NODES.indexOf(order[0]!);
    expect(order).toEqual([...NODES.slice(first), ...NODES.slice(0, first)]);
    expect(bySite(NODES, undefined)).toEqual(NODES);
    expect(bySite(['only'], 'warehouse-3')).toEqual(['only']);
  });

  it('spreads 3000 sites over three nodes', () => {
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const first = bySite(NODES, `site-${i}`)[0]!;
      counts.set(first, (counts.get(first) ?? 0) + 1);
    }
    // A third each would be 1000; FNV-1a over these names stays within 10 % of it.
    for (const node of NODES) expect(Math.abs((counts.get(node) ?? 0) - 1000)).toBeLessThan(100);
  });

  it("orders the gateway's servers by its site, from the config or --site, and refuses a bad name", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-site-'));
    try {
      const config = join(dir, 'gateway.yaml');
      writeFileSync(
        config,
        `server: [${NODES.join(', ')}]\nsite: warehouse-3\nstun: 198.18.0.10:3478\ndomain: sc2c.lab\n`,
      );
      const identity = { user: 'cam1', password: 'cam1-pass' };
      const expected = bySite(NODES, 'warehouse-3').map((text) => {
        const [address, port] = text.split(':');
        return { address, port: Number(port) };
      });
      const { init } = await gatewayInit({ config, ...identity });
      expect([init.sip.server, ...(init.failover ?? [])]).toEqual(expected);
      const other = bySite(NODES, 'office-1');
      const { init: flagged } = await gatewayInit({ config, ...identity, site: 'office-1' });
      expect(`${flagged.sip.server.address}:${flagged.sip.server.port}`).toBe(other[0]);
      await expect(gatewayInit({ config, ...identity, site: 'Bad Site' })).rejects.toThrow(/--site must be/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
