import { describe, expect, it } from 'vitest';
import { type CallDescription, decodeSdp, encodeSdp } from '../../src/protocol/sdp.ts';
import {
  checksTowardPinned,
  MAX_PIN_WINDOW,
  pinningSide,
  pinWindowFor,
  rungTargets,
} from '../../src/traversal/pin.ts';
import { advertisedStep } from '../../src/traversal/probe.ts';

const SEQ1 = 'address-and-port-dependent/address-and-port-dependent/sequential+1/no-ips';
const SEQ2 = 'address-and-port-dependent/address-and-port-dependent/sequential+2/no-ips';
const CONE = 'endpoint-independent/address-and-port-dependent/sequential+1/no-ips';
const RANDOM = 'address-and-port-dependent/address-and-port-dependent/random';

describe('pinning: rungs and the checks toward them', () => {
  it('a peer whose NAT moved k steps lands exactly one check on the rung that expects it', () => {
    // Our NAT steps by 2, the peer's by 1. Rung m maps our base + 2m to the peer's 4000 + m.
    const window = 5;
    const rungs = rungTargets({ address: '198.18.2.1', port: 4000 }, 1, window);
    expect(rungs.map((r) => r.port)).toEqual([4000, 4001, 4002, 4003, 4004, 4005, 4006, 4007, 4008]);
    const checks = checksTowardPinned({ address: '198.18.1.1', port: 20000 }, 2, window);
    expect(checks.map((c) => c.port)).toEqual([20000, 20004, 20008, 20012, 20016]);
    const rungFor = new Map(rungs.map((r, m) => [20000 + 2 * m, r.port]));
    for (let k = 0; k < window; k++) {
      // Check j leaves from the peer's port 4000 + k + j; it passes only where the rung expects that port.
      const passing = checks.filter((c, j) => rungFor.get(c.port) === 4000 + k + j);
      expect(passing).toHaveLength(1);
    }
    // A peer that moved further than the window finds no rung.
    const k = window;
    expect(checks.filter((c, j) => rungFor.get(c.port) === 4000 + k + j)).toHaveLength(0);
  });

  it('bounds the window and stops at the top of the port range', () => {
    expect(rungTargets({ address: 'a', port: 1000 }, 1, 1000)).toHaveLength(2 * MAX_PIN_WINDOW - 1);
    expect(rungTargets({ address: 'a', port: 65534 }, 1, 4).map((r) => r.port)).toEqual([65534, 65535]);
    expect(checksTowardPinned({ address: 'a', port: 65530 }, 2, 4).map((r) => r.port)).toEqual([
      65530, 65534,
    ]);
    expect(rungTargets({ address: 'a', port: 1000 }, 1, 0)).toHaveLength(1);
    expect(rungTargets({ address: 'a', port: 1000 }, 1, Number.NaN)).toHaveLength(1);
  });
});

describe('pinning: which side pins', () => {
  const side = (nat: string, portSource: string, pin?: 'capable') => ({
    mode: 'sc2c',
    rtcpMux: true,
    nat,
    portSource,
    ...(pin ? { pin } : {}),
  });
  const who = (a: ReturnType<typeof side>, b: ReturnType<typeof side>) => pinningSide(a, b, advertisedStep);

  it('the caller when it can, else the callee, the same answer on both sides', () => {
    expect(who(side(SEQ1, 'predicted', 'capable'), side(SEQ2, 'predicted', 'capable'))).toBe('caller');
    expect(who(side(SEQ1, 'predicted'), side(SEQ2, 'predicted', 'capable'))).toBe('callee');
    expect(who(side(CONE, 'exact'), side(SEQ2, 'predicted', 'capable'))).toBe('callee');
    expect(who(side(SEQ1, 'predicted', 'capable'), side(CONE, 'exact'))).toBe('caller');
  });

  it('nobody when neither can, the peer port is unknown, a mode is not SC2C, or RTCP is separate', () => {
    expect(who(side(SEQ1, 'predicted'), side(SEQ1, 'predicted'))).toBeUndefined();
    expect(who(side(SEQ1, 'predicted', 'capable'), side(RANDOM, 'unpredictable'))).toBeUndefined();
    expect(
      who({ ...side(SEQ1, 'predicted', 'capable'), mode: 'c2c' }, side(SEQ1, 'predicted')),
    ).toBeUndefined();
    expect(
      who(side(SEQ1, 'predicted', 'capable'), { ...side(SEQ1, 'predicted'), rtcpMux: false }),
    ).toBeUndefined();
    // A capable claim on a NAT with no step is not believed.
    expect(who(side(RANDOM, 'predicted', 'capable'), side(SEQ1, 'predicted'))).toBeUndefined();
  });

  it('asks one check of a peer whose port was observed, the configured window of a predicted one', () => {
    expect(pinWindowFor(side(CONE, 'exact'), 8)).toBe(1);
    expect(pinWindowFor(side(SEQ1, 'predicted'), 8)).toBe(8);
    expect(pinWindowFor(side(SEQ1, 'predicted'), 99)).toBe(MAX_PIN_WINDOW);
  });
});

describe('pinning in SDP (a=x-sc2c-pin)', () => {
  const base: CallDescription = {
    publicEndpoint: { address: '198.18.1.1', port: 40000 },
    ufrag: 'abcd',
    pwd: 'abcdefghijklmnopqrstuvwx',
    nat: SEQ1,
    mode: 'sc2c',
    portSource: 'predicted',
    rtcpMux: true,
  };

  it('round-trips a capable side and a pinned port with its window', () => {
    expect(decodeSdp(encodeSdp({ ...base, pin: 'capable' }, 1))).toMatchObject({ pin: 'capable' });
    expect(decodeSdp(encodeSdp({ ...base, portSource: 'pinned', pin: 8 }, 1))).toMatchObject({
      portSource: 'pinned',
      pin: 8,
    });
    expect(decodeSdp(encodeSdp(base, 1)).pin).toBeUndefined();
  });

  it('refuses a window out of range, a pinned port without one, a window without a pinned port', () => {
    const text = (pin: string, source = 'pinned') =>
      encodeSdp(base, 1)
        .replace('a=x-sc2c-port:predicted', `a=x-sc2c-port:${source}`)
        .replace(/\r\n$/, `\r\na=x-sc2c-pin:${pin}\r\n`);
    expect(() => decodeSdp(text('0'))).toThrow(/x-sc2c-pin/);
    expect(() => decodeSdp(text('33'))).toThrow(/x-sc2c-pin/);
    expect(() => decodeSdp(text('1e3'))).toThrow(/x-sc2c-pin/);
    expect(() => decodeSdp(text('4', 'predicted'))).toThrow(/pinned port/);
    expect(() => decodeSdp(encodeSdp({ ...base, portSource: 'pinned' }, 1))).toThrow(/pinned port/);
    expect(() => decodeSdp(encodeSdp(base, 1).replace('x-sc2c-port:predicted', 'x-sc2c-port:guess'))).toThrow(
      /x-sc2c-port/,
    );
    expect(decodeSdp(text('16'))).toMatchObject({ portSource: 'pinned', pin: 16 });
  });
});
