import { describe, expect, it } from 'vitest';
import { loadPopulation, modelBehaviour, parsePopulation } from '../../src/nat/population.ts';
import { ConfigError, loadProfiles, parseProfileFile } from '../../src/nat/profiles.ts';

const catalog = loadProfiles();

describe('NAT profiles', () => {
  it('ships the six named profiles, each with +pks and +ips', () => {
    expect(catalog.names()).toEqual([
      'full-cone',
      'restricted-cone',
      'port-restricted-cone',
      'symmetric-seq1',
      'symmetric-seq2',
      'symmetric-random',
    ]);
    expect(catalog.shippedSpecs()).toHaveLength(18);
  });

  it('applies modifiers left to right', () => {
    const b = catalog.resolve('symmetric-seq2+pks+ips');
    expect(b).toMatchObject({
      mapping: 'address-and-port-dependent',
      allocation: { type: 'sequential', delta: 2 },
      pks: true,
      ips: true,
    });
  });

  it('names the allowed values for an unknown profile or modifier', () => {
    expect(() => catalog.resolve('cone')).toThrow(
      /unknown NAT profile 'cone'.*Allowed: full-cone, restricted-cone/,
    );
    expect(() => catalog.resolve('full-cone+pkz')).toThrow(/modifier '\+pkz'.*Allowed: \+pks, \+ips/);
  });

  it('rejects a malformed file naming the field at fault', () => {
    const bad = `
defaults: { portRange: { min: 1024, max: 65535 } }
profiles:
  weird: { mapping: endpoint-dependent }
`;
    expect(() => parseProfileFile(bad, 'bad.yaml')).toThrow(ConfigError);
    expect(() => parseProfileFile(bad, 'bad.yaml')).toThrow(/profiles\.weird\.mapping/);
  });

  it('rejects an incomplete profile at load time, not mid-run', () => {
    const incomplete = `
defaults: {}
profiles:
  half: { mapping: endpoint-independent }
`;
    expect(() => parseProfileFile(incomplete, 'half.yaml')).toThrow(/filtering/);
  });

  it('rejects a bad allocation, an inverted port range and unknown keys', () => {
    const base = `defaults: {}\nprofiles:\n  p: `;
    expect(() => parseProfileFile(`${base}{ allocation: { type: sequential } }`, 'f')).toThrow(
      /allocation\.delta/,
    );
    expect(() => parseProfileFile(`${base}{ portRange: { min: 9, max: 5 } }`, 'f')).toThrow(/portRange/);
    expect(() => parseProfileFile(`${base}{ mappng: endpoint-independent }`, 'f')).toThrow(/mappng/);
    expect(() => parseProfileFile('profiles: [', 'f')).toThrow(/YAML syntax error/);
  });

  it('reports a missing file clearly', () => {
    expect(() => loadProfiles('/nonexistent/nat.yaml')).toThrow(
      /cannot read NAT profile file .*no such file/,
    );
  });
});

describe('the paper population (Tables 1-3)', () => {
  const models = loadPopulation();
  const count = (pred: (m: (typeof models)[number]) => boolean): number => models.filter(pred).length;

  it('has 134 models with Table 1 STUN types', () => {
    expect(models).toHaveLength(134);
    expect(count((m) => m.stunType === 'full-cone')).toBe(20);
    expect(count((m) => m.stunType === 'restricted-cone')).toBe(31);
    expect(count((m) => m.stunType === 'port-restricted-cone')).toBe(79);
    expect(count((m) => m.stunType === 'symmetric')).toBe(4);
  });

  it('has Table 2 port-change rules', () => {
    expect(count((m) => m.portRule === '+1')).toBe(126);
    expect(count((m) => m.portRule === '+2')).toBe(5);
    expect(count((m) => m.portRule === 'random')).toBe(3);
    expect(
      models
        .filter((m) => m.portRule === 'random')
        .map((m) => `${m.brand} ${m.model}`)
        .sort(),
    ).toEqual(['ASUS Rx3081', 'AboCom FSM410', 'Octtle SP4220']);
  });

  it('has Table 3 behaviours with the named PKS brands and IPS models', () => {
    expect(count((m) => m.pks)).toBe(28);
    expect(count((m) => m.ips)).toBe(2);
    const pksBrands: Record<string, number> = {};
    for (const m of models.filter((x) => x.pks)) pksBrands[m.brand!] = (pksBrands[m.brand!] ?? 0) + 1;
    expect(pksBrands).toEqual({
      AboCom: 1,
      ASUS: 1,
      'D-Link': 11,
      EDIMAX: 7,
      GigaByte: 1,
      SAPIDO: 5,
      SMC: 1,
      ZyXel: 1,
    });
    expect(
      models
        .filter((m) => m.ips)
        .map((m) => `${m.brand} ${m.model}`)
        .sort(),
    ).toEqual(['AboCom CAS4047B', 'IO DATA NP-BBRM']);
  });

  it('turns a model into a complete behaviour', () => {
    const octtle = models.find((m) => m.model === 'SP4220')!;
    expect(modelBehaviour(octtle, catalog)).toMatchObject({
      mapping: 'address-and-port-dependent',
      allocation: { type: 'random' },
    });
  });

  it('rejects a model that is both PKS and IPS', () => {
    const text = 'groups:\n  - { count: 1, stunType: symmetric, portRule: "+1", pks: true, ips: true }\n';
    expect(() => parsePopulation(text, 'pop.yaml')).toThrow(/groups\.0.*PKS or IPS/s);
  });
});
