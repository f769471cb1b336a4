/**
 * The gateway's DTLS identity: an ECDSA P-256 key and a self-signed X.509 certificate (RFC 5280),
 * built here in DER because Node can parse certificates but not make them. Peers do not trust it
 * through a CA: its SHA-256 fingerprint travels in the SDP (RFC 8122 §5) over the authenticated
 * signaling connection, and the DTLS handshake checks the certificate against it (RFC 5763 §5).
 */
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  X509Certificate,
} from 'node:crypto';
import { concat } from './reader.ts';

export interface DtlsIdentity {
  readonly privateKey: KeyObject;
  /** The certificate, DER. */
  readonly certificate: Uint8Array;
  /** `AB:CD:...`, as `a=fingerprint:sha-256` carries it. */
  readonly fingerprint: string;
}

/** A SHA-256 fingerprint as RFC 8122 writes it: 32 hex pairs with colons (either case). */
export const SHA256_FINGERPRINT = /^[0-9A-F]{2}(:[0-9A-F]{2}){31}$/i;

/** SHA-256 fingerprint of a DER certificate in RFC 8122 form (upper-case hex pairs with colons). */
export function fingerprintOf(der: Uint8Array): string {
  const hex = createHash('sha256').update(der).digest('hex').toUpperCase();
  return hex.match(/../g)!.join(':');
}

function der(tag: number, body: Uint8Array): Uint8Array {
  const n = body.byteLength;
  const length =
    n < 0x80 ? Uint8Array.of(n) : n < 0x100 ? Uint8Array.of(0x81, n) : Uint8Array.of(0x82, n >> 8, n & 0xff);
  return concat(Uint8Array.of(tag), length, body);
}

const sequence = (...parts: Uint8Array[]): Uint8Array => der(0x30, concat(...parts));
/** 1.2.840.10045.4.3.2 ecdsa-with-SHA256 (RFC 5758 §3.2): no parameters. */
const ECDSA_SHA256 = sequence(Uint8Array.of(0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02));

function commonName(name: string): Uint8Array {
  // 2.5.4.3 id-at-commonName, UTF8String.
  const attribute = sequence(
    Uint8Array.of(0x06, 0x03, 0x55, 0x04, 0x03),
    der(0x0c, new TextEncoder().encode(name)),
  );
  return sequence(der(0x31, attribute));
}

/** GeneralizedTime YYYYMMDDHHMMSSZ (RFC 5280 §4.1.2.5.2). */
function time(date: Date): Uint8Array {
  const text = `${date.toISOString().slice(0, 19).replace(/[-:T]/g, '')}Z`;
  return der(0x18, new TextEncoder().encode(text));
}

/**
 * A new identity: a fresh key pair and a v1 self-signed certificate for `name`, valid from a day
 * ago (clock skew) for `validDays` (default 3650: the fingerprint, not the dates, is what peers check).
 */
export function createIdentity(name = 'sc2c-gateway', now = new Date(), validDays = 3650): DtlsIdentity {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return identityFrom(privateKey, selfSign(privateKey, publicKey, name, now, validDays));
}

function selfSign(
  privateKey: KeyObject,
  publicKey: KeyObject,
  name: string,
  now: Date,
  validDays: number,
): Uint8Array {
  const serial = randomBytes(16);
  // A positive INTEGER in minimal DER (X.690 §8.3.2): a first byte of 0x00 followed by one below
  // 0x80 is a redundant leading zero, which OpenSSL refuses to parse (the certificate could not be
  // read back, nor taken by a peer, about once in 256).
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const spki = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
  const tbs = sequence(
    der(0x02, serial),
    ECDSA_SHA256,
    commonName(name),
    sequence(
      time(new Date(now.getTime() - 86_400_000)),
      time(new Date(now.getTime() + validDays * 86_400_000)),
    ),
    commonName(name),
    spki,
  );
  const signature = sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  return sequence(tbs, ECDSA_SHA256, der(0x03, concat(Uint8Array.of(0), signature)));
}

function identityFrom(privateKey: KeyObject, certificate: Uint8Array): DtlsIdentity {
  return { privateKey, certificate, fingerprint: fingerprintOf(certificate) };
}

/** The identity as one PEM file: the PKCS#8 key, then the certificate. */
export function identityToPem(identity: DtlsIdentity): string {
  const key = identity.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const cert = Buffer.from(identity.certificate)
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `${key}-----BEGIN CERTIFICATE-----\n${cert}\n-----END CERTIFICATE-----\n`;
}

/**
 * Reads an identity written by `identityToPem`. Throws with a plain message when the file holds no
 * P-256 key, no certificate, or a certificate for another key.
 */
export function identityFromPem(pem: string): DtlsIdentity {
  const keyPem = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(pem)?.[0];
  const certB64 = /-----BEGIN CERTIFICATE-----([\s\S]+?)-----END CERTIFICATE-----/.exec(pem)?.[1];
  if (!keyPem || !certB64) throw new Error('expected a PRIVATE KEY and a CERTIFICATE block');
  const privateKey = createPrivateKey(keyPem);
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error('the key is not an ECDSA P-256 key');
  const certificate = new Uint8Array(Buffer.from(certB64.replace(/\s+/g, ''), 'base64'));
  const parsed = new X509Certificate(certificate);
  if (!parsed.checkPrivateKey(privateKey)) throw new Error('the certificate is not for this key');
  return identityFrom(privateKey, certificate);
}

/** The public key of a peer's DER certificate, P-256 only. Throws on anything else. */
export function certificateKey(certificate: Uint8Array): KeyObject {
  const key = new X509Certificate(certificate).publicKey;
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error('the peer certificate does not hold an ECDSA P-256 key');
  return key;
}
