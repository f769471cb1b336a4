/** Every decoder fuzzed with 10^4 inputs in CI; `npm run fuzz` runs 10^6 each (issue 16). */
import { describe, expect, it } from 'vitest';
import { fuzz, TARGETS } from './targets.ts';

describe('fuzzing the decoders (10^4 inputs each)', () => {
  it('covers every decoder that takes network or config input', () => {
    expect(TARGETS.map((t) => t.name)).toEqual(
      expect.arrayContaining([
        'sip message',
        'sip stream framing',
        'sdp',
        'stun/turn',
        'channeldata',
        'rtp',
        'rtcp',
        'server config',
      ]),
    );
  });
  for (const target of TARGETS)
    it(`${target.name}: throws nothing but its declared error`, () => fuzz(target, 10_000), 120_000);
});
