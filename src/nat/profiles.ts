/**
 * Named NAT profiles (`config/nat-profiles.yaml`) and profile specs such as `symmetric-seq1+pks`.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import type { NatBehaviour } from './behaviour.ts';
import {
  formatZodError,
  fullBehaviourSchema,
  type ProfileFile,
  profileFileSchema,
} from './profile-schema.ts';

export const DEFAULT_PROFILES_PATH = fileURLToPath(
  new URL('../../config/nat-profiles.yaml', import.meta.url),
);

/** A configuration problem the user can fix; the CLI prints the message without a stack trace. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export class ProfileCatalog {
  constructor(readonly file: ProfileFile) {}

  /** Base profile names, in file order. */
  names(): string[] {
    return Object.keys(this.file.profiles);
  }

  modifierNames(): string[] {
    return Object.keys(this.file.modifiers);
  }

  /** Every base profile plus each base with each single modifier: what natcheck verifies. */
  shippedSpecs(): string[] {
    const specs: string[] = [];
    for (const name of this.names()) {
      specs.push(name);
      for (const modifier of this.modifierNames()) specs.push(`${name}+${modifier}`);
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
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: YAML syntax error: ${(error as Error).message}`);
  }
  const result = profileFileSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatZodError(result.error, source));
  const catalog = new ProfileCatalog(result.data);
  // Resolve every profile once so an incomplete one fails at start-up, not mid-run.
  for (const spec of catalog.shippedSpecs()) catalog.resolve(spec);
  return catalog;
}

export function loadProfiles(path: string = DEFAULT_PROFILES_PATH): ProfileCatalog {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `cannot read NAT profile file ${path}: ${(error as NodeJS.ErrnoException).code ?? error}`,
    );
  }
  return parseProfileFile(text, path);
}
