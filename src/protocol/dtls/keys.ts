/**
 * The key schedule of DTLS 1.2 with TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: the TLS 1.2 PRF
 * (RFC 5246 §5), the extended master secret (RFC 7627 §4), the key block (RFC 5246 §6.3), the
 * Finished verify_data (§7.4.9), the keying-material exporter (RFC 5705 §4) that gives DTLS-SRTP
 * its keys (RFC 5764 §4.2), and AES-GCM record protection (RFC 5288 §3, RFC 6347 §4.1.2.1).
 */
import { createCipheriv, createDecipheriv, createHash, createHmac } from 'node:crypto';
import { DecodeError } from '../decode-error.ts';
import { concat, uint } from './reader.ts';

/** P_SHA256 (RFC 5246 §5): `length` bytes of PRF(secret, label, seed). */
export function prf(secret: Uint8Array, label: string, seed: Uint8Array, length: number): Uint8Array {
  const labelSeed = concat(new TextEncoder().encode(label), seed);
  const out = new Uint8Array(length);
  let a: Uint8Array = labelSeed;
  let at = 0;
  while (at < length) {
    a = createHmac('sha256', secret).update(a).digest();
    const block = createHmac('sha256', secret).update(a).update(labelSeed).digest();
    out.set(block.subarray(0, Math.min(block.byteLength, length - at)), at);
    at += block.byteLength;
  }
  return out;
}

/** RFC 7627 §4: the master secret bound to the whole handshake up to ClientKeyExchange. */
export function extendedMasterSecret(preMaster: Uint8Array, sessionHash: Uint8Array): Uint8Array {
  return prf(preMaster, 'extended master secret', sessionHash, 48);
}

export function transcriptHash(messages: readonly Uint8Array[]): Uint8Array {
  const hash = createHash('sha256');
  for (const m of messages) hash.update(m);
  return hash.digest();
}

/** RFC 5246 §7.4.9: 12 bytes of PRF(master, "client finished" | "server finished", hash). */
export function finishedVerifyData(
  master: Uint8Array,
  side: 'client' | 'server',
  hash: Uint8Array,
): Uint8Array {
  return prf(master, `${side} finished`, hash, 12);
}

export interface RecordKeys {
  readonly clientKey: Uint8Array;
  readonly serverKey: Uint8Array;
  /** The 4-byte implicit part of the GCM nonce (RFC 5288 §3). */
  readonly clientIv: Uint8Array;
  readonly serverIv: Uint8Array;
}

/** RFC 5246 §6.3 for an AEAD suite: no MAC keys; 16-byte keys and 4-byte IVs. */
export function recordKeys(
  master: Uint8Array,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
): RecordKeys {
  const block = prf(master, 'key expansion', concat(serverRandom, clientRandom), 40);
  return {
    clientKey: block.slice(0, 16),
    serverKey: block.slice(16, 32),
    clientIv: block.slice(32, 36),
    serverIv: block.slice(36, 40),
  };
}

/** RFC 5705 §4 without a context value: keying material for another protocol. */
export function exportKeyingMaterial(
  master: Uint8Array,
  label: string,
  clientRandom: Uint8Array,
  serverRandom: Uint8Array,
  length: number,
): Uint8Array {
  return prf(master, label, concat(clientRandom, serverRandom), length);
}

const GCM_EXPLICIT = 8;
const GCM_TAG = 16;

function additionalData(type: number, epoch: number, sequence: number, length: number): Uint8Array {
  return concat(uint(epoch, 2), uint(sequence, 6), uint(type, 1), uint(0xfefd, 2), uint(length, 2));
}

/** Seals one record's plaintext; the explicit nonce is the record's epoch and sequence number. */
export function sealRecord(
  key: Uint8Array,
  iv: Uint8Array,
  type: number,
  epoch: number,
  sequence: number,
  plaintext: Uint8Array,
): Uint8Array {
  const explicit = concat(uint(epoch, 2), uint(sequence, 6));
  const cipher = createCipheriv('aes-128-gcm', key, concat(iv, explicit));
  cipher.setAAD(additionalData(type, epoch, sequence, plaintext.byteLength));
  const body = cipher.update(plaintext);
  cipher.final();
  return concat(explicit, body, cipher.getAuthTag());
}

/** Opens a sealed record; throws `DecodeError` when it does not authenticate. */
export function openRecord(
  key: Uint8Array,
  iv: Uint8Array,
  type: number,
  epoch: number,
  sequence: number,
  fragment: Uint8Array,
): Uint8Array {
  if (fragment.byteLength < GCM_EXPLICIT + GCM_TAG)
    throw new DecodeError('DTLS', 0, `sealed record of ${fragment.byteLength} bytes is too short`);
  const explicit = fragment.subarray(0, GCM_EXPLICIT);
  const body = fragment.subarray(GCM_EXPLICIT, fragment.byteLength - GCM_TAG);
  const decipher = createDecipheriv('aes-128-gcm', key, concat(iv, explicit));
  decipher.setAAD(additionalData(type, epoch, sequence, body.byteLength));
  decipher.setAuthTag(fragment.subarray(fragment.byteLength - GCM_TAG));
  try {
    const plain = decipher.update(body);
    decipher.final();
    return plain;
  } catch {
    throw new DecodeError('DTLS', 0, 'record failed authentication');
  }
}
