/**
 * DTLS 1.2 handshake messages (RFC 6347 §4.2.2, bodies from RFC 5246 §7.4, ECDHE from RFC 8422).
 * Only what a DTLS-SRTP call between two of our gateways needs: one cipher suite
 * (TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), P-256, certificates both ways, `use_srtp`
 * (RFC 5764 §4.1.1) and the extended master secret (RFC 7627).
 *
 * Header (12 bytes): msg_type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3).
 * Our messages fit one record, so fragments are refused (a fragmented message is not ours).
 */
import { concat, Reader, uint, vector } from './reader.ts';

export const HandshakeType = {
  clientHello: 1,
  serverHello: 2,
  helloVerifyRequest: 3,
  certificate: 11,
  serverKeyExchange: 12,
  certificateRequest: 13,
  serverHelloDone: 14,
  certificateVerify: 15,
  clientKeyExchange: 16,
  finished: 20,
} as const;
export type HandshakeType = (typeof HandshakeType)[keyof typeof HandshakeType];

export const HANDSHAKE_HEADER = 12;
/** The largest handshake message we accept: a certificate chain of our own is well under 1 KB. */
export const MAX_HANDSHAKE = 8192;

/** TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (RFC 5289). */
export const CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256 = 0xc02b;
/** secp256r1 (RFC 8422 §5.1.1). */
export const GROUP_P256 = 23;
/** ecdsa_secp256r1_sha256: hash sha256 (4), signature ecdsa (3) (RFC 5246 §7.4.1.4.1). */
export const SIGNATURE_ECDSA_SHA256 = 0x0403;
/** certificate_type ecdsa_sign (RFC 8422 §5.5). */
export const CERT_TYPE_ECDSA_SIGN = 64;

export const ExtensionType = {
  supportedGroups: 10,
  ecPointFormats: 11,
  signatureAlgorithms: 13,
  useSrtp: 14,
  extendedMasterSecret: 23,
  renegotiationInfo: 0xff01,
} as const;

/** RFC 5764 §4.1.2 and RFC 7714 §14.2. */
export const SrtpProfile = {
  aes128CmHmacSha1_80: 0x0001,
  aeadAes128Gcm: 0x0007,
} as const;
export type SrtpProfileId = (typeof SrtpProfile)[keyof typeof SrtpProfile];

export interface Extension {
  readonly type: number;
  readonly data: Uint8Array;
}

export interface HandshakeMessage {
  readonly type: number;
  readonly messageSeq: number;
  readonly body: Uint8Array;
}

/** The handshake messages of one record's fragment. */
export function decodeHandshakes(fragment: Uint8Array): HandshakeMessage[] {
  const r = new Reader(fragment, 'handshake');
  const out: HandshakeMessage[] = [];
  while (r.remaining > 0) {
    const type = r.u8('msg_type');
    const length = r.u24('length');
    const messageSeq = r.u16('message_seq');
    const offset = r.u24('fragment_offset');
    const fragmentLength = r.u24('fragment_length');
    if (length > MAX_HANDSHAKE) r.fail(`message of ${length} bytes exceeds ${MAX_HANDSHAKE}`);
    if (offset !== 0 || fragmentLength !== length) r.fail('fragmented handshake message');
    out.push({ type, messageSeq, body: r.bytesOf(length, 'body') });
  }
  return out;
}

/** The message as sent, which is also its form in the handshake transcript (RFC 6347 §4.2.6). */
export function encodeHandshake(message: HandshakeMessage): Uint8Array {
  const n = message.body.byteLength;
  return concat(
    uint(message.type, 1),
    uint(n, 3),
    uint(message.messageSeq, 2),
    uint(0, 3),
    uint(n, 3),
    message.body,
  );
}

function encodeExtensions(extensions: readonly Extension[]): Uint8Array {
  return vector(2, concat(...extensions.map((e) => concat(uint(e.type, 2), vector(2, e.data)))));
}

function decodeExtensions(r: Reader): Extension[] {
  if (r.remaining === 0) return [];
  const er = new Reader(r.vector(2, 'extensions'), 'extensions');
  const out: Extension[] = [];
  while (er.remaining > 0) out.push({ type: er.u16('extension type'), data: er.vector(2, 'extension data') });
  return out;
}

export interface ClientHello {
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cookie: Uint8Array;
  readonly cipherSuites: readonly number[];
  readonly extensions: readonly Extension[];
}

export function encodeClientHello(h: ClientHello): Uint8Array {
  return concat(
    uint(0xfefd, 2),
    h.random,
    vector(1, h.sessionId),
    vector(1, h.cookie),
    vector(2, concat(...h.cipherSuites.map((s) => uint(s, 2)))),
    vector(1, new Uint8Array([0])),
    encodeExtensions(h.extensions),
  );
}

export function decodeClientHello(body: Uint8Array): ClientHello {
  const r = new Reader(body, 'ClientHello');
  r.u16('client_version');
  const random = r.bytesOf(32, 'random');
  const sessionId = r.vector(1, 'session_id', 32);
  const cookie = r.vector(1, 'cookie', 255);
  const suites = new Reader(r.vector(2, 'cipher_suites'), 'cipher_suites');
  const cipherSuites: number[] = [];
  while (suites.remaining > 0) cipherSuites.push(suites.u16('cipher suite'));
  const compression = r.vector(1, 'compression_methods');
  if (!compression.includes(0)) r.fail('no null compression');
  const extensions = decodeExtensions(r);
  r.end();
  return { random, sessionId, cookie, cipherSuites, extensions };
}

export interface ServerHello {
  readonly random: Uint8Array;
  readonly sessionId: Uint8Array;
  readonly cipherSuite: number;
  readonly extensions: readonly Extension[];
}

export function encodeServerHello(h: ServerHello): Uint8Array {
  return concat(
    uint(0xfefd, 2),
    h.random,
    vector(1, h.sessionId),
    uint(h.cipherSuite, 2),
    uint(0, 1),
    encodeExtensions(h.extensions),
  );
}

export function decodeServerHello(body: Uint8Array): ServerHello {
  const r = new Reader(body, 'ServerHello');
  const version = r.u16('server_version');
  if (version !== 0xfefd) r.fail(`version 0x${version.toString(16)} is not DTLS 1.2`);
  const random = r.bytesOf(32, 'random');
  const sessionId = r.vector(1, 'session_id', 32);
  const cipherSuite = r.u16('cipher_suite');
  if (r.u8('compression_method') !== 0) r.fail('compression is not null');
  const extensions = decodeExtensions(r);
  r.end();
  return { random, sessionId, cipherSuite, extensions };
}

/** Certificate (RFC 5246 §7.4.2): a chain of DER certificates, ours has one. */
export function encodeCertificate(chain: readonly Uint8Array[]): Uint8Array {
  return vector(3, concat(...chain.map((der) => vector(3, der))));
}

export function decodeCertificate(body: Uint8Array): Uint8Array[] {
  const r = new Reader(body, 'Certificate');
  const list = new Reader(r.vector(3, 'certificate_list'), 'certificate_list');
  r.end();
  const chain: Uint8Array[] = [];
  while (list.remaining > 0) chain.push(list.vector(3, 'certificate'));
  return chain;
}

/** ServerECDHParams (RFC 8422 §5.4): named curve and the ephemeral public point. */
export function encodeEcdhParams(publicKey: Uint8Array): Uint8Array {
  return concat(uint(3, 1), uint(GROUP_P256, 2), vector(1, publicKey));
}

export interface ServerKeyExchange {
  /** The bytes the signature covers after the two randoms. */
  readonly params: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly scheme: number;
  readonly signature: Uint8Array;
}

export function encodeServerKeyExchange(publicKey: Uint8Array, signature: Uint8Array): Uint8Array {
  return concat(encodeEcdhParams(publicKey), uint(SIGNATURE_ECDSA_SHA256, 2), vector(2, signature));
}

export function decodeServerKeyExchange(body: Uint8Array): ServerKeyExchange {
  const r = new Reader(body, 'ServerKeyExchange');
  if (r.u8('curve_type') !== 3) r.fail('curve type is not named_curve');
  const group = r.u16('named_curve');
  if (group !== GROUP_P256) r.fail(`curve ${group} is not secp256r1`);
  const publicKey = r.vector(1, 'public', 133);
  const params = body.subarray(0, r.offset);
  const scheme = r.u16('signature algorithm');
  const signature = r.vector(2, 'signature', 512);
  r.end();
  return { params, publicKey, scheme, signature };
}

/** CertificateRequest (RFC 5246 §7.4.4): ECDSA certificates, signed with SHA-256, any authority. */
export function encodeCertificateRequest(): Uint8Array {
  return concat(
    vector(1, uint(CERT_TYPE_ECDSA_SIGN, 1)),
    vector(2, uint(SIGNATURE_ECDSA_SHA256, 2)),
    vector(2, new Uint8Array(0)),
  );
}

export function decodeCertificateRequest(body: Uint8Array): { types: Uint8Array; schemes: number[] } {
  const r = new Reader(body, 'CertificateRequest');
  const types = r.vector(1, 'certificate_types');
  const sr = new Reader(r.vector(2, 'supported_signature_algorithms'), 'supported_signature_algorithms');
  const schemes: number[] = [];
  while (sr.remaining > 0) schemes.push(sr.u16('signature algorithm'));
  r.vector(2, 'certificate_authorities');
  r.end();
  return { types, schemes };
}

export function encodeCertificateVerify(signature: Uint8Array): Uint8Array {
  return concat(uint(SIGNATURE_ECDSA_SHA256, 2), vector(2, signature));
}

export function decodeCertificateVerify(body: Uint8Array): { scheme: number; signature: Uint8Array } {
  const r = new Reader(body, 'CertificateVerify');
  const scheme = r.u16('signature algorithm');
  const signature = r.vector(2, 'signature', 512);
  r.end();
  return { scheme, signature };
}

export function decodeClientKeyExchange(body: Uint8Array): Uint8Array {
  const r = new Reader(body, 'ClientKeyExchange');
  const point = r.vector(1, 'ecdh_Yc', 133);
  r.end();
  return point;
}

/** use_srtp (RFC 5764 §4.1.1): protection profiles and an empty MKI. */
export function encodeUseSrtp(profiles: readonly number[]): Uint8Array {
  return concat(vector(2, concat(...profiles.map((p) => uint(p, 2)))), vector(1, new Uint8Array(0)));
}

export function decodeUseSrtp(data: Uint8Array): number[] {
  const r = new Reader(data, 'use_srtp');
  const pr = new Reader(r.vector(2, 'SRTPProtectionProfiles'), 'SRTPProtectionProfiles');
  const profiles: number[] = [];
  while (pr.remaining > 0) profiles.push(pr.u16('profile'));
  r.vector(1, 'srtp_mki');
  r.end();
  return profiles;
}
