import { describe, expect, it } from 'vitest';
import { type CallDescription, decodeSdp, encodeSdp } from '../../src/protocol/sdp.ts';
import { birthdayHardSide, natTraits, probePorts } from '../../src/traversal/birthday.ts';

const RANDOM = 'address-and-port-dependent/address-and-port-dependent/random';
const PRC = 'endpoint-independent/address-and-port-dependent/sequential+1/no-ips';
const PRC_IPS = 'endpoint-independent/address-and-port-dependent/sequential+1/ips';
const PRC_UNKNOWN = 'endpoint-independent/address-and-port-dependent/sequential+1';
const RC = 'endpoint-independent/address-dependent/sequential+1/no-ips';
const SEQ = 'address-and-port-dependent/address-and-port-dependent/sequential+1/no-ips';

const side = (nat: string, portSource: string, extra: Partial<{ mode: string; rtcpMux: boolean }> = {}) => ({
  mode: 'sc2c',
  rtcpMux: true,
  nat,
  portSource,
  ...extra,
});

describe('birthday punching: who is hard, and when not at all', () => {
  it('reads the NAT token a description carries', () => {
    expect(natTraits(PRC_IPS)).toEqual({
      mapping: 'endpoint-independent',
      filtering: 'address-and-port-dependent',
      allocation: 'sequential+1',
      ips: true,
    });
    expect(natTraits(RANDOM).ips).toBeNull();
    expect(natTraits('').mapping).toBe('');
  });

  it('the random side against an IPS-free port-restricted cone, either way round', () => {
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(PRC, 'exact'))).toBe('caller');
    expect(birthdayHardSide(side(PRC, 'exact'), side(RANDOM, 'unpredictable'))).toBe('callee');
  });

  it('never probes from an IPS or unknown cone, never where peer-reflexive checks suffice or nothing helps', () => {
    // The probes draw port-unreachable from the random NAT: an IPS cone would lose its mapping.
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(PRC_IPS, 'exact'))).toBeUndefined();
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(PRC_UNKNOWN, 'exact'))).toBeUndefined();
    // An address-dependent filter lets the random side's own checks in.
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(RC, 'exact'))).toBeUndefined();
    // Two per-destination NATs: each probe would be a new mapping on the prober's side too.
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(SEQ, 'predicted'))).toBeUndefined();
    expect(birthdayHardSide(side(RANDOM, 'unpredictable'), side(RANDOM, 'unpredictable'))).toBeUndefined();
    expect(
      birthdayHardSide(side(RANDOM, 'unpredictable', { mode: 'c2c' }), side(PRC, 'exact')),
    ).toBeUndefined();
    expect(
      birthdayHardSide(side(RANDOM, 'unpredictable'), side(PRC, 'exact', { rtcpMux: false })),
    ).toBeUndefined();
  });
});

describe('birthday punching: probe ports', () => {
  it('distinct ports in range, as many as asked, at most the range', () => {
    let x = 0.5;
    const random = () => {
      x = (x * 9301 + 0.49297) % 1;
      return x;
    };
    const ports = probePorts(2048, random);
    expect(ports).toHaveLength(2048);
    expect(new Set(ports).size).toBe(2048);
    expect(ports.every((p) => p >= 1024 && p <= 65535 && Number.isInteger(p))).toBe(true);
    expect(probePorts(50, Math.random, 1000, 1009).sort((a, b) => a - b)).toEqual([
      1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009,
    ]);
    expect(probePorts(-3, Math.random)).toEqual([]);
  });
});

describe('birthday punching in SDP (a=x-sc2c-birthday)', () => {
  const base: CallDescription = {
    publicEndpoint: { address: '198.18.1.1', port: 40000 },
    ufrag: 'abcd',
    pwd: 'abcdefghijklmnopqrstuvwx',
    nat: RANDOM,
    mode: 'sc2c',
    portSource: 'unpredictable',
    rtcpMux: true,
  };

  it('round-trips the port count and refuses one out of range', () => {
    expect(decodeSdp(encodeSdp({ ...base, birthday: 256 }, 1)).birthday).toBe(256);
    expect(decodeSdp(encodeSdp(base, 1)).birthday).toBeUndefined();
    for (const bad of ['0', '1025', '99999', 'many'])
      expect(() =>
        decodeSdp(encodeSdp(base, 1).replace(/\r\n$/, `\r\na=x-sc2c-birthday:${bad}\r\n`)),
      ).toThrow(/x-sc2c-birthday/);
  });
});

describe('the shipped gateway config (config/gateway.yaml)', () => {
  it('turns pinning and birthday punching on, with their bounds checked', async () => {
    const { loadGatewayConfig } = await import('../../src/cli/configs.ts');
    const { fileURLToPath } = await import('node:url');
    const { mkdtempSync, readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const path = fileURLToPath(new URL('../../config/gateway.yaml', import.meta.url));
    const config = loadGatewayConfig(path);
    expect(config.punch).toMatchObject({
      pin: true,
      pinWindow: 16,
      pinChecks: 8,
      drift: true,
      crossWindow: 16,
      pinTtl: 2,
      birthday: true,
      birthdayPorts: 256,
      birthdayProbes: 2048,
      birthdayRate: 1000,
    });
    const dir = mkdtempSync(join(tmpdir(), 'sc2c-birthday-config-'));
    const bad = join(dir, 'gateway.yaml');
    writeFileSync(bad, readFileSync(path, 'utf8').replace('birthdayPorts: 256', 'birthdayPorts: 5000'));
    expect(() => loadGatewayConfig(bad)).toThrow(/birthdayPorts/);
  });
});
