import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadScenario, natsInBuildOrder, parseScenario } from '../../src/lab/scenario.ts';
import { loadProfiles } from '../../src/nat/profiles.ts';

const base = `
server: { addresses: [198.18.0.10, 198.18.0.11] }
nats:
  - name: nat-a
    profile: symmetric-seq1
    publicAddress: 198.18.1.1
    lan: 10.0.1.0/24
    hosts: [{ name: alice, address: 10.0.1.2 }]
`;

describe('lab scenarios', () => {
  it('accepts every shipped scenario, with profiles that exist', () => {
    const catalog = loadProfiles();
    const dir = new URL('../../config/lab/', import.meta.url).pathname;
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const scenario = loadScenario(`${dir}${file}`);
      for (const nat of scenario.nats) if (nat.profile) catalog.resolve(nat.profile);
    }
  });

  it('refuses addresses outside the lab ranges, naming the field', () => {
    expect(() => parseScenario(base.replace('198.18.0.10', '8.8.8.8'), 's.yaml')).toThrow(
      /server\.addresses\.0: public addresses must be inside 198\.18\.0\.0\/15/,
    );
    expect(() => parseScenario(base.replace('10.0.1.2', '192.168.1.2'), 's.yaml')).toThrow(
      /nats\.0\.hosts\.0\.address: private addresses must be inside 10\.0\.0\.0\/8/,
    );
    expect(() =>
      parseScenario(base.replace('publicAddress: 198.18.1.1', 'publicAddress: 172.16.0.1'), 's.yaml'),
    ).toThrow(/nats\.0\.publicAddress/);
    expect(() => parseScenario(base.replace('10.0.1.2', '10.0.2.2'), 's.yaml')).toThrow(
      /not inside lan 10\.0\.1\.0\/24/,
    );
  });

  it('names the field at fault in a malformed scenario', () => {
    expect(() =>
      parseScenario(base.replace('profile: symmetric-seq1', 'kernel: iptables'), 's.yaml'),
    ).toThrow(/nats\.0\.kernel/);
    expect(() => parseScenario(base.replace('profile: symmetric-seq1', ''), 's.yaml')).toThrow(
      /exactly one of 'profile'/,
    );
    expect(() => parseScenario(`${base}    link: { latencyMs: -1 }\n`, 's.yaml')).toThrow(
      /nats\.0\.link\.latencyMs/,
    );
    expect(() =>
      parseScenario(base.replace('[198.18.0.10, 198.18.0.11]', '[198.18.0.10]'), 's.yaml'),
    ).toThrow(/two public addresses/);
    expect(() => parseScenario(`${base}run: [{ host: carol, command: ['true'] }]\n`, 's.yaml')).toThrow(
      /run\.0\.host: no host named 'carol'/,
    );
    expect(() => parseScenario(base.replace('name: alice', 'name: nat-a'), 's.yaml')).toThrow(/used twice/);
  });

  it('orders multi-level NATs upstream first and checks the inner public address', () => {
    const twoLevel = `
server: { addresses: [198.18.0.10, 198.18.0.11] }
nats:
  - name: inner
    profile: symmetric-seq1
    publicAddress: 10.100.0.2
    lan: 10.0.1.0/24
    upstream: carrier
    hosts: [{ name: alice, address: 10.0.1.2 }]
  - name: carrier
    profile: port-restricted-cone
    publicAddress: 198.18.1.1
    lan: 10.100.0.0/24
    hosts: [{ name: other, address: 10.100.0.9 }]
`;
    expect(natsInBuildOrder(parseScenario(twoLevel, 'm.yaml')).map((n) => n.name)).toEqual([
      'carrier',
      'inner',
    ]);
    expect(() => parseScenario(twoLevel.replace('10.100.0.2', '10.101.0.2'), 'm.yaml')).toThrow(
      /inside that NAT's lan/,
    );
  });
});
