/**
 * Named NAT profiles (`config/nat-profiles.yaml`) and profile specs such as `symmetric-seq1+pks`.
 */
import { fileURLToPath } from 'node:url';
import { ConfigError, formatZodError, parseConfig, readConfigFile } from '../util/config-file.ts';
import type { NatBehaviour } from './behaviour.ts';
import { fullBehaviourSchema, type ProfileFile, profileFileSchema } from './profile-schema.ts';

export { ConfigError };

export const DEFAULT_PROFILES_PATH = fileURLToPath(
  new URL('../../config/nat-profiles.yaml', import.meta.url),
);

/**
 * Modifier fields the UDP behaviour tests cannot see: the port-mapping servers (issue 20) and TCP's
 * reply and counter (issue 21). A modifier setting only these makes no profile of its own here.
 */
const UNOBSERVED_FIELDS = new Set(['portMapping', 'unsolicitedTcpReply', 'tcpCounter']);

export class ProfileCatalog {
  constructor(readonly file: ProfileFile) {}

  /** Base profile names, in file order. */
  names(): string[] {
    return Object.keys(this.file.profiles);
  }

  modifierNames(): string[] {
    return Object.keys(this.file.modifiers);
  }

  /**
   * Every base profile plus each base with each single modifier that changes what natcheck
   * discovers: `+pcp` and `+natpmp` add a port-mapping server and leave mapping and filtering be.
   */
  shippedSpecs(): string[] {
    const specs: string[] = [];
    const observable = this.modifierNames().filter((m) =>
      Object.keys(this.file.modifiers[m] ?? {}).some((field) => !UNOBSERVED_FIELDS.has(field)),
    );
    for (const name of this.names()) {
      specs.push(name);
      for (const modifier of observable) specs.push(`${name}+${modifier}`);
    }
    return specs;
  }

  /** Resolves `NAME[+MODIFIER...]` into a complete behaviour, or throws a ConfigError. */
  resolve(spec: string): NatBehaviour {
    const [name, ...modifiers] = spec.trim().split('+');
    const base = name === undefined ? undefined : this.file.profiles[name];
    if (!name || !base) {
      const where = modifiers.length > 0 ? ` in '${spec}'` : '';
      throw new ConfigError(
        `unknown NAT profile '${name ?? ''}'${where}. Allowed: ${this.names().join(', ')}`,
      );
    }
    let merged = { ...this.file.defaults, ...base };
    for (const modifier of modifiers) {
      const patch = this.file.modifiers[modifier];
      if (!patch) {
        throw new ConfigError(
          `unknown NAT profile modifier '+${modifier}' in '${spec}'. Allowed: ${this.modifierNames()
            .map((m) => `+${m}`)
            .join(', ')}`,
        );
      }
      merged = { ...merged, ...patch };
    }
    const result = fullBehaviourSchema.safeParse(merged);
    if (!result.success) throw new ConfigError(formatZodError(result.error, `NAT profile '${spec}'`));
    return result.data;
  }
}

export function parseProfileFile(text: string, source: string): ProfileCatalog {
  const catalog = new ProfileCatalog(parseConfig(text, source, profileFileSchema));
  // Resolve every profile once so an incomplete one fails at start-up, not mid-run.
  for (const spec of catalog.shippedSpecs()) catalog.resolve(spec);
  return catalog;
}

export function loadProfiles(path: string = DEFAULT_PROFILES_PATH): ProfileCatalog {
  return parseProfileFile(readConfigFile(path, 'NAT profile file'), path);
}
