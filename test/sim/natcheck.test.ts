import { describe, expect, it } from 'vitest';
import type { NatBehaviour } from '../../src/nat/behaviour.ts';
import { loadProfiles } from '../../src/nat/profiles.ts';
import { simulateNatcheck } from '../../src/sim/natcheck.ts';
import { declaredObservation } from '../../src/traversal/natcheck/observation.ts';

const catalog = loadProfiles();

describe('sim natcheck over every shipped profile', () => {
  for (const spec of catalog.shippedSpecs()) {
    it(`${spec}: observed behaviour equals declared`, async () => {
      const result = await simulateNatcheck({ profile: spec, behaviour: catalog.resolve(spec), seed: 7 });
      expect(result.mismatches).toEqual([]);
      expect(result.match).toBe(true);
    });
  }
});

describe('natcheck reads packets, not profile names', () => {
  const base = catalog.resolve('symmetric-seq1');
  const cone = catalog.resolve('port-restricted-cone');
  // Behaviours no shipped profile has: natcheck must still see each one as it is.
  const variants: [string, NatBehaviour, NatBehaviour][] = [
    [
      'address-dependent mapping',
      base,
      { ...base, mapping: 'address-dependent', filtering: 'address-dependent' },
    ],
    ['hairpin off (cone)', cone, { ...cone, hairpin: false }],
    ['hairpin off (symmetric)', base, { ...base, hairpin: false }],
    ['silent drop of unsolicited packets', base, { ...base, unsolicitedReply: 'drop', pks: true }],
    ['sequential +3', base, { ...base, allocation: { type: 'sequential', delta: 3 } }],
    ['preserving cone with PKS', cone, { ...cone, allocation: { type: 'preserve-if-free' }, pks: true }],
    ['random cone with IPS', cone, { ...cone, allocation: { type: 'random' }, ips: true }],
    [
      'endpoint-independent filtering on a symmetric mapping',
      base,
      { ...base, filtering: 'endpoint-independent' },
    ],
  ];
  for (const [name, from, behaviour] of variants) {
    it(`${name}`, async () => {
      // The variant really differs from the profile it was made from...
      expect(declaredObservation(behaviour)).not.toEqual(declaredObservation(from));
      // ...and natcheck sees the variant exactly, not the profile.
      const result = await simulateNatcheck({ profile: name, behaviour, seed: 3 });
      expect(result.mismatches).toEqual([]);
      expect(result.observed).toEqual(declaredObservation(behaviour));
    });
  }

  it('reports a mismatch when the declared behaviour is not the real one', async () => {
    const result = await simulateNatcheck({ profile: 'mislabelled', behaviour: base, seed: 5 });
    const wrong = { ...declaredObservation(base), pks: true, filtering: 'endpoint-independent' as const };
    const mismatched = (Object.keys(wrong) as (keyof typeof wrong)[]).filter(
      (k) => wrong[k] !== result.observed[k],
    );
    expect(mismatched.sort()).toEqual(['filtering', 'pks']);
  });

  it('says why hairpin cannot be observed on a random symmetric NAT, instead of guessing', async () => {
    const result = await simulateNatcheck({
      profile: 'symmetric-random',
      behaviour: catalog.resolve('symmetric-random'),
      seed: 9,
    });
    expect(result.observed.hairpin).toBeNull();
    expect(result.unobservable.hairpin).toMatch(/random allocation/);
  });
});
