/**
 * The DTLS 1.2 record layer (RFC 6347 §4.1): several records may share one datagram.
 *
 *  0               1               2               3
 * +---------------+---------------+---------------+---------------+
 * |  ContentType  |    ProtocolVersion (254,253)  |     epoch     |
 * +---------------+---------------+---------------+---------------+
 * |     epoch     |            sequence_number (48 bits)          |
 * +---------------+---------------+---------------+---------------+
 * |        sequence_number        |            length             |
 * +---------------+---------------+---------------+---------------+
 * |                     fragment (length bytes)                   |
 */
import { DecodeError } from '../decode-error.ts';
import { concat, Reader, uint } from './reader.ts';

export const ContentType = {
  changeCipherSpec: 20,
  alert: 21,
  handshake: 22,
  applicationData: 23,
} as const;
export type ContentType = (typeof ContentType)[keyof typeof ContentType];

/** DTLS 1.2 on the wire: the ones' complement of 1.2 (RFC 6347 §4.1). */
export const DTLS_1_2 = 0xfefd;
/** DTLS 1.0, which some stacks put on their first ClientHello record. */
export const DTLS_1_0 = 0xfeff;
/** RFC 6347 §4.1: a fragment is at most 2^14 bytes, plus 2048 of cipher expansion. */
export const MAX_FRAGMENT = 2 ** 14 + 2048;
export const RECORD_HEADER = 13;

export interface DtlsRecord {
  readonly type: ContentType;
  readonly version: number;
  readonly epoch: number;
  readonly sequence: number;
  readonly fragment: Uint8Array;
}

/**
 * RFC 7983 §7: on a port shared with STUN and RTP, a first byte of 20-63 is DTLS. Ours only sends
 * the four content types above.
 */
export function isDtls(data: Uint8Array): boolean {
  const first = data[0];
  return data.byteLength >= RECORD_HEADER && first !== undefined && first >= 20 && first <= 63;
}

/** Every record in one datagram. Throws `DecodeError` on a truncated or oversized record. */
export function decodeRecords(datagram: Uint8Array): DtlsRecord[] {
  const records: DtlsRecord[] = [];
  const r = new Reader(datagram, 'record');
  while (r.remaining > 0) {
    const type = r.u8('content type');
    if (type < 20 || type > 23) r.fail(`unknown content type ${type}`);
    const version = r.u16('version');
    if (version !== DTLS_1_2 && version !== DTLS_1_0) r.fail(`version 0x${version.toString(16)} is not DTLS`);
    const epoch = r.u16('epoch');
    const sequence = r.u48('sequence number');
    const fragment = r.vector(2, 'fragment', MAX_FRAGMENT);
    records.push({ type: type as ContentType, version, epoch, sequence, fragment });
  }
  if (records.length === 0) throw new DecodeError('DTLS', 0, 'record: empty datagram');
  return records;
}

export function encodeRecord(record: DtlsRecord): Uint8Array {
  return concat(
    uint(record.type, 1),
    uint(record.version, 2),
    uint(record.epoch, 2),
    uint(record.sequence, 6),
    uint(record.fragment.byteLength, 2),
    record.fragment,
  );
}
