/** Reading and validating YAML config files: every failure is a ConfigError naming the file and field. */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';

/** A configuration problem the user can fix; the CLI prints the message without a stack trace. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Turns a zod error into lines like `profiles.full-cone.mapping: Invalid option: expected one of ...`. */
export function formatZodError(error: z.ZodError, source: string): string {
  const lines = error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `  ${path}: ${issue.message}`;
  });
  return `${source} is not valid:\n${lines.join('\n')}`;
}

/** Parses YAML `text` and validates it against `schema`. */
export function parseConfig<S extends z.ZodType>(text: string, source: string, schema: S): z.infer<S> {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`${source}: YAML syntax error: ${(error as Error).message}`);
  }
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(formatZodError(result.error, source));
  return result.data;
}

export function readConfigFile(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file (sc2c init --dir DIR writes a working set)'
        : code === 'EACCES'
          ? 'permission denied'
          : (code ?? String(error));
    throw new ConfigError(`cannot read ${what} ${path}: ${why}`);
  }
}
