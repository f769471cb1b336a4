/**
 * DTLS-SRTP for a call's settled path (issue 17): who is the DTLS client (RFC 5763 §5: the offerer
 * says actpass, our answerer takes passive, so the caller is the client), what a call needs from
 * both SDPs, and turning an established outcome into one whose media path encrypts.
 */
import { DtlsEndpoint } from '../media/secure/dtls-endpoint.ts';
import { SecurePath } from '../media/secure/secure-path.ts';
import type { Clock } from '../net/clock.ts';
import type { DtlsIdentity } from '../protocol/dtls/certificate.ts';
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

/** Our SDP's DTLS attributes: actpass in an offer, passive in an answer to a DTLS offer. */
export function withDtls(
  description: CallDescription,
  dtls: DtlsInit | undefined,
  offer?: CallDescription,
): CallDescription {
  if (!dtls || (offer && !offer.dtls)) return description;
  return {
    ...description,
    dtls: { fingerprint: dtls.identity.fingerprint, setup: offer ? 'passive' : 'actpass' },
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
  // RFC 5763 §5: passive is the DTLS server; an actpass offer answered passive makes us the client.
  const role = local.dtls.setup === 'passive' || remote.dtls.setup === 'active' ? 'server' : 'client';
  const endpoint = new DtlsEndpoint(
    c,
    {
      role,
      identity: dtls.identity,
      remoteFingerprint: remote.dtls.fingerprint,
      rtoMs: dtls.rtoMs,
      timeoutMs: dtls.timeoutMs,
    },
    () => {},
  );
  active.dtls = endpoint;
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
