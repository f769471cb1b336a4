/**
 * Expected failures of a gateway at start, said in one line a person can act on (issue 18): the
 * server unreachable, the password refused, no STUN answer, a pinned certificate that differs. The
 * long-running `sc2c gateway` keeps retrying the ones that can heal (the server not up yet); the
 * one-shot commands exit 1 with the line.
 */
import { lookup } from 'node:dns/promises';
import { Gateway, type GatewayComponents, type GatewayInit } from '../gateway/gateway.ts';
import { type Endpoint, isIpv4 } from '../net/address.ts';
import { sleep } from '../net/clock.ts';
import { ConnectionRefusedError } from '../net/types.ts';
import { ConnectTimeoutError, SipRequestError } from '../signaling/client.ts';
import { NoStunAnswerError } from '../traversal/stun-tests.ts';
import { UsageError } from '../util/usage-error.ts';

/** A failure at run time that is not a bug: printed as one line, exit code 1. */
export class RuntimeFailure extends Error {
  /** True when trying again later can succeed (the server down, the network away). */
  readonly transient: boolean;
  constructor(message: string, transient = false) {
    super(message);
    this.name = 'RuntimeFailure';
    this.transient = transient;
  }
}

/** Context for the messages: which config to fix. */
export interface FailureContext {
  readonly configPath: string;
  readonly user: string;
  readonly server: Endpoint;
  readonly stun: Endpoint;
}

/** The one-line meaning of a start failure, or the error itself when it is not an expected one. */
export function explainStartFailure(error: unknown, c: FailureContext): Error {
  const server = `${c.server.address}:${c.server.port}`;
  if (error instanceof ConnectionRefusedError)
    return new RuntimeFailure(
      `cannot reach the SIP server at ${server} (connection refused): is sc2c server running there? Check 'server' in ${c.configPath} or --server`,
      true,
    );
  if (error instanceof SipRequestError && error.status === 403)
    return new RuntimeFailure(
      `the server refused user '${c.user}' (403 Forbidden): wrong password or no such user; check --password or SC2C_PASSWORD, and the server's users file`,
    );
  if (error instanceof SipRequestError)
    return new RuntimeFailure(`the server refused to register '${c.user}': ${error.message}`, true);
  if (error instanceof NoStunAnswerError)
    return new RuntimeFailure(
      `no STUN answer from ${c.stun.address}:${c.stun.port}: check 'stun' in ${c.configPath} or --stun (the server's STUN port, 3478 by default) and that UDP to it is not blocked`,
      true,
    );
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (error instanceof ConnectTimeoutError)
    return new RuntimeFailure(
      `no answer from the SIP server at ${server} within 10 s: check 'server' in ${c.configPath}, and that TCP to it is not blocked`,
      true,
    );
  if (code === 'EHOSTUNREACH' || code === 'ENETUNREACH' || code === 'ETIMEDOUT' || code === 'ECONNRESET')
    return new RuntimeFailure(`cannot reach the SIP server at ${server} (${code})`, true);
  if (/certificate|pinned/i.test((error as Error | undefined)?.message ?? ''))
    return new RuntimeFailure(
      `TLS to ${server} refused: ${(error as Error).message}. Check tls in ${c.configPath}`,
    );
  return error instanceof Error ? error : new Error(String(error));
}

/** Starts a gateway; an expected failure becomes a `RuntimeFailure` with its one line. */
export async function startGateway(
  components: GatewayComponents,
  init: GatewayInit,
  context: FailureContext,
  signal?: AbortSignal,
): Promise<Gateway> {
  try {
    return await Gateway.start(components, init, signal);
  } catch (error) {
    if (signal?.aborted) throw error;
    throw explainStartFailure(error, context);
  }
}

/**
 * `startGateway` again and again while the failure is transient (the server not up yet, the
 * network away), waiting `initialMs`, doubling up to `maxMs`, saying so each time; a permanent one
 * (a refused password) is thrown at once. Ends when `signal` aborts.
 */
export async function startGatewayRetrying(
  components: GatewayComponents,
  init: GatewayInit,
  context: FailureContext,
  report: (line: string, event: Record<string, unknown>) => void,
  signal: AbortSignal,
  delays = { initialMs: 1000, maxMs: 30_000 },
): Promise<Gateway> {
  let delayMs = delays.initialMs;
  for (;;) {
    try {
      return await startGateway(components, init, context, signal);
    } catch (error) {
      if (!(error instanceof RuntimeFailure) || !error.transient || signal.aborted) throw error;
      report(`${context.user}: ${error.message}; retrying in ${Math.round(delayMs / 1000)} s`, {
        event: 'start-retry',
        user: context.user,
        reason: error.message,
        retryInMs: delayMs,
      });
      await sleep(components.clock, delayMs, signal).catch(() => undefined);
      if (signal.aborted) throw new RuntimeFailure('stopped before the server answered');
      delayMs = Math.min(delayMs * 2, delays.maxMs);
    }
  }
}

/** A host name or IPv4 literal, resolved to IPv4 (the lab and the punch are IPv4). */
export async function resolveHost(endpoint: Endpoint, what: string): Promise<Endpoint> {
  if (isIpv4(endpoint.address)) return endpoint;
  try {
    const { address } = await lookup(endpoint.address, { family: 4 });
    return { address, port: endpoint.port };
  } catch (error) {
    throw new UsageError(
      `${what}: cannot resolve '${endpoint.address}' to an IPv4 address (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
}
