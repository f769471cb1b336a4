/**
 * SRTP session keys (RFC 3711 §4.3): the AES-CM PRF with key derivation rate 0 turns a master key
 * and salt into the encryption key, authentication key and salt of SRTP (labels 0-2) and SRTCP
 * (labels 3-5). RFC 7714's 96-bit master salt is padded with zeros to the 112 bits the PRF expects
 * (RFC 7714 errata 4938).
 */
import { createCipheriv } from 'node:crypto';

export const SrtpProfileName = {
  1: 'AES_CM_128_HMAC_SHA1_80',
  7: 'AEAD_AES_128_GCM',
} as const;
export type SrtpProfile = keyof typeof SrtpProfileName;

/** Master key and salt lengths per profile (RFC 5764 §4.1.2, RFC 7714 §12). */
export function masterLengths(profile: SrtpProfile): { keyLength: number; saltLength: number } {
  return profile === 7 ? { keyLength: 16, saltLength: 12 } : { keyLength: 16, saltLength: 14 };
}

/** One direction's master key material, as the DTLS exporter gives it (RFC 5764 §4.2). */
export interface MasterKey {
  readonly key: Uint8Array;
  readonly salt: Uint8Array;
}

export interface SessionKeys {
  readonly rtpKey: Uint8Array;
  readonly rtpAuth: Uint8Array;
  readonly rtpSalt: Uint8Array;
  readonly rtcpKey: Uint8Array;
  readonly rtcpAuth: Uint8Array;
  readonly rtcpSalt: Uint8Array;
}

/** AES-CM PRF (RFC 3711 §4.3.3): `length` bytes for `label` at index 0. */
export function deriveKey(master: MasterKey, label: number, length: number): Uint8Array {
  const iv = new Uint8Array(16);
  iv.set(master.salt.subarray(0, 14));
  iv[7]! ^= label;
  const cipher = createCipheriv('aes-128-ctr', master.key, iv);
  return new Uint8Array(cipher.update(new Uint8Array(length)));
}

export function sessionKeys(master: MasterKey, profile: SrtpProfile): SessionKeys {
  const saltLength = masterLengths(profile).saltLength;
  return {
    rtpKey: deriveKey(master, 0, 16),
    rtpAuth: deriveKey(master, 1, 20),
    rtpSalt: deriveKey(master, 2, saltLength),
    rtcpKey: deriveKey(master, 3, 16),
    rtcpAuth: deriveKey(master, 4, 20),
    rtcpSalt: deriveKey(master, 5, saltLength),
  };
}
