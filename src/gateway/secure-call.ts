/**
 * DTLS-SRTP for a call's settled path (issue 17): who is the DTLS client (RFC 5763 §5: the offerer
 * says actpass, our answerer takes passive, so the caller is the client, unless the caller will pin
 * its mapping and only answer: then the callee takes active), what a call needs from
 * both SDPs, and turning an established outcome into one whose media path encrypts.
 */

import type { Endpoint } from '../net/address.ts';
import type { Clock } from '../net/clock.ts';
import { DtlsEndpoint } from '../path/dtls-endpoint.ts';
import { SecurePath } from '../path/secure-path.ts';
import type { DtlsIdentity } from '../protocol/dtls/certificate.ts';
import { isDtls } from '../protocol/dtls/record.ts';
import type { CallDescription } from '../protocol/sdp.ts';
import type { ActiveCall } from './active-call.ts';
import type { CallOutcome } from './types.ts';

export interface DtlsInit {
  readonly identity: DtlsIdentity;
  /** First DTLS retransmission timeout. Default 400 ms (see `DtlsEndpointInit`). */
  readonly rtoMs?: number;
  /** The handshake must finish within this. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/**
 * Our SDP's DTLS attributes: actpass in an offer; in an answer to a DTLS offer, passive (the caller
 * is the client), or active when `client` (RFC 5763 §5 lets the answerer take either role).
 */
export function withDtls(
  description: CallDescription,
  dtls: DtlsInit | undefined,
  offer?: CallDescription,
  client = false,
): CallDescription {
  if (!dtls || (offer && !offer.dtls)) return description;
  return {
    ...description,
    dtls: {
      fingerprint: dtls.identity.fingerprint,
      setup: offer ? (client ? 'active' : 'passive') : 'actpass',
    },
  };
}

/**
 * Why a call cannot go on with these two descriptions, or undefined. Encryption is on unless both
 * sides turned it off: a gateway that wants DTLS-SRTP never falls back to plain RTP because the
 * other side (or someone rewriting the SDP) asked.
 */
export function encryptionMismatch(
  dtls: DtlsInit | undefined,
  remote: CallDescription,
  remoteIsOffer: boolean,
): string | undefined {
  if (dtls && !remote.dtls)
    return `the peer ${remoteIsOffer ? 'offers' : 'answered with'} plain RTP, and this gateway requires encrypted media (DTLS-SRTP; --insecure-media turns it off on both sides)`;
  if (!dtls && remote.dtls && !remoteIsOffer)
    return 'the peer answered with DTLS-SRTP, which this gateway (--insecure-media) did not offer';
  return undefined;
}

function endpointFor(
  c: { readonly clock: Clock },
  dtls: DtlsInit,
  local: CallDescription,
  remote: CallDescription,
): DtlsEndpoint {
  // RFC 5763 §5: passive is the DTLS server; an actpass offer answered passive makes us the client.
  const role = local.dtls?.setup === 'passive' || remote.dtls?.setup === 'active' ? 'server' : 'client';
  return new DtlsEndpoint(
    c,
    {
      role,
      identity: dtls.identity,
      remoteFingerprint: remote.dtls!.fingerprint,
      rtoMs: dtls.rtoMs,
      timeoutMs: dtls.timeoutMs,
    },
    () => {},
  );
}

/**
 * Starts the handshake while the punch runs, so that it costs about one round trip after the path
 * confirms instead of two (issue 17's budget). The client's ClientHello leaves right after the
 * first checks, to the same candidates; DTLS is taken only from an endpoint that proved the call's
 * credentials in a check (`Puncher.verified`), and answered there. A ClientHello that overtakes
 * its check waits (one, the latest) until that check arrives. `secureOutcome` moves the handshake
 * onto the settled path.
 */
export function startEarlyDtls(
  c: { readonly clock: Clock },
  dtls: DtlsInit | undefined,
  active: ActiveCall,
  local: CallDescription,
  remote: CallDescription,
): void {
  const puncher = active.puncher;
  if (!dtls || !local.dtls || !remote.dtls || !puncher || active.routed || active.dtls) return;
  const endpoint = endpointFor(c, dtls, local, remote);
  active.dtls = endpoint;
  const socket = active.socket;
  endpoint.setSend((datagram) => {
    for (const target of puncher.targets) socket.send(datagram, target);
  });
  let waiting: { data: Uint8Array; from: Endpoint } | undefined;
  const take = (data: Uint8Array, from: Endpoint): void => {
    endpoint.setSend((datagram) => socket.send(datagram, from));
    endpoint.handle(data);
  };
  const off = socket.on('message', (data, from) => {
    if (!isDtls(data)) return;
    if (puncher.verified(from)) take(data, from);
    else waiting = { data, from };
  });
  // A side that only answers (its mapping pinned, issue 19) had nowhere to send its ClientHello:
  // it goes, at once, to the first endpoint that proves the call's credentials.
  let passive = puncher.targets.length === 0;
  puncher.onVerified = (from) => {
    if (waiting && waiting.from.address === from.address && waiting.from.port === from.port) {
      const { data } = waiting;
      waiting = undefined;
      take(data, from);
    } else if (passive) {
      passive = false;
      endpoint.setSend((datagram) => socket.send(datagram, from), true);
    }
  };
  active.earlyOff = () => {
    off();
    puncher.onVerified = undefined;
    waiting = undefined;
  };
  endpoint.start();
}

/**
 * Runs the handshake on an established outcome's path. Resolves with the outcome whose `path`
 * encrypts (`confirmedAtMs` moves to when keys exist; `dtlsMs` is the handshake), or a failed
 * outcome with the reason. `active.dtls` holds the endpoint so that ending the call stops it.
 */
export async function secureOutcome(
  c: { readonly clock: Clock },
  outcome: CallOutcome,
  dtls: DtlsInit | undefined,
  active: ActiveCall,
): Promise<CallOutcome> {
  if (!outcome.ok || !outcome.path) return outcome;
  const local = outcome.local;
  const remote = outcome.remote;
  if (!dtls || !local?.dtls || !remote?.dtls) return { ...outcome, encryption: 'none' };
  const endpoint = active.dtls ?? endpointFor(c, dtls, local, remote);
  active.dtls = endpoint;
  active.earlyOff?.();
  if (active.ended) endpoint.close();
  const startedAtMs = c.clock.now();
  try {
    const secure = await SecurePath.establish(outcome.path, endpoint, outcome.routed !== undefined);
    active.secure = secure;
    const now = c.clock.now();
    return {
      ...outcome,
      path: secure,
      secure,
      confirmedAtMs: now,
      dtlsMs: now - startedAtMs,
      encryption: secure.encryption,
    };
  } catch (error) {
    return { ...outcome, ok: false, path: undefined, reason: (error as Error).message, encryption: 'none' };
  }
}
