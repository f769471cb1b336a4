/**
 * The long-running commands' log (issue 18): pino underneath, levels and ISO timestamps on every
 * line; one JSON object per line with `--log-json` (or `--json`), a line a person reads otherwise:
 * `2026-12-04T03:34:37.809Z INFO  registered camera1 from 203.0.113.5:50112`. Synchronous writes,
 * so nothing logged just before an exit is lost.
 */
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { UsageError } from '../util/usage-error.ts';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Fields of one log line; `event` names it for machines (`registered`, `call`, `refused` …). */
export type LogFields = Record<string, unknown>;

export interface Log {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export interface LogInit {
  /** JSON lines instead of text. */
  readonly json?: boolean;
  /** Lines below this level are dropped. Default `info`. */
  readonly level?: LogLevel;
  /** File descriptor: 1 (stdout, a command's output) or 2 (stderr, a server's log). */
  readonly fd: 1 | 2;
}

const LABELS: Record<number, string> = { 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR' };

/** Turns pino's JSON line into `time LEVEL message`. Fields stay in the JSON form only. */
function textLines(fd: 1 | 2): Writable {
  const out = pino.destination({ dest: fd, sync: true });
  return new Writable({
    write(chunk: Buffer, _encoding, done) {
      try {
        const line = JSON.parse(chunk.toString()) as { time: string; level: number; msg: string };
        out.write(`${line.time} ${LABELS[line.level] ?? line.level} ${line.msg}\n`);
      } catch {
        out.write(chunk.toString());
      }
      done();
    },
  });
}

export function createLog(init: LogInit): Log {
  const logger: Logger = pino(
    {
      level: init.level ?? 'info',
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (_label, number) => ({ level: number }) },
    },
    init.json ? pino.destination({ dest: init.fd, sync: true }) : textLines(init.fd),
  );
  const at =
    (level: LogLevel) =>
    (message: string, fields?: LogFields): void => {
      if (fields) logger[level](fields, message);
      else logger[level](message);
    };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** `--log-level` values, checked. */
export function parseLogLevel(value: string): LogLevel {
  if ((LOG_LEVELS as readonly string[]).includes(value)) return value as LogLevel;
  throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')}, got '${value}'`);
}
