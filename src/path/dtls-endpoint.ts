/**
 * One side of a DTLS 1.2 handshake for DTLS-SRTP (RFC 6347, RFC 5763/5764), as a state machine on
 * an injected clock and an injected `send`. Both peers are gateways: each authenticates the other's
 * certificate against the fingerprint from the authenticated SDP, so neither the signaling server
 * nor a relay on the path can stand in the middle.
 *
 * Client (`a=setup:active`)                      Server (`a=setup:passive`)
 *   1. ClientHello                      ──►
 *                                       ◄──  2. ServerHello, Certificate, ServerKeyExchange
 *                                               (signed), CertificateRequest, ServerHelloDone
 *   3. Certificate, ClientKeyExchange,
 *      CertificateVerify, CCS, Finished ──►     the server may send SRTP from here
 *                                       ◄──  4. CCS, Finished
 *   the client may send SRTP from here
 *
 * There is no cookie exchange (RFC 6347 §4.2.1 makes it a SHOULD against amplification): flight 2
 * only ever goes to an address the call's connectivity checks confirmed.
 *
 * The last flight sent is retransmitted after `rtoMs`, doubling (RFC 6347 §4.2.4), until the
 * handshake completes or `timeoutMs` runs out. Unauthenticated alerts do not end a handshake (anyone
 * can forge them); they are kept as a hint for the timeout's message.
 */
import { createECDH, randomBytes, sign, timingSafeEqual, verify } from 'node:crypto';
import type { Clock, Timer } from '../net/clock.ts';
import { certificateKey, type DtlsIdentity, fingerprintOf } from '../protocol/dtls/certificate.ts';
import {
  CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256,
  decodeCertificate,
  decodeCertificateVerify,
  decodeClientHello,
  decodeClientKeyExchange,
  decodeHandshakes,
  decodeServerHello,
  decodeServerKeyExchange,
  decodeUseSrtp,
  type Extension,
  ExtensionType,
  encodeCertificate,
  encodeCertificateRequest,
  encodeCertificateVerify,
  encodeClientHello,
  encodeEcdhParams,
  encodeHandshake,
  encodeServerHello,
  encodeServerKeyExchange,
  encodeUseSrtp,
  GROUP_P256,
  type HandshakeMessage,
  HandshakeType,
  SIGNATURE_ECDSA_SHA256,
} from '../protocol/dtls/handshake.ts';
import {
  exportKeyingMaterial,
  extendedMasterSecret,
  finishedVerifyData,
  openRecord,
  type RecordKeys,
  recordKeys,
  sealRecord,
  transcriptHash,
} from '../protocol/dtls/keys.ts';
import { concat, uint, vector } from '../protocol/dtls/reader.ts';
import {
  ContentType,
  DTLS_1_2,
  type DtlsRecord,
  decodeRecords,
  encodeRecord,
} from '../protocol/dtls/record.ts';
import { type MasterKey, masterLengths, type SrtpProfile } from '../protocol/srtp/keys.ts';
import { TypedEmitter } from '../util/typed-emitter.ts';

export type DtlsRole = 'client' | 'server';

export interface DtlsEndpointInit {
  readonly role: DtlsRole;
  readonly identity: DtlsIdentity;
  /** The peer's certificate fingerprint (sha-256) from its SDP. */
  readonly remoteFingerprint: string;
  /** SRTP profiles in our order of preference. Default GCM, then AES-CM with HMAC-SHA1-80. */
  readonly profiles?: readonly SrtpProfile[];
  /**
   * First retransmission timeout. RFC 6347 suggests 1 s for an unknown path; ours was just
   * measured by the punch (tens of ms), so 400 ms: above any single RTT we expect, a quarter of
   * the default's wait after a lost flight. Default 400.
   */
  readonly rtoMs?: number;
  /** Give up after this long. Default 10 000 ms. */
  readonly timeoutMs?: number;
}

/** What the handshake gives SRTP: the agreed profile and the master keys of each direction. */
export interface DtlsKeys {
  readonly profile: SrtpProfile;
  readonly local: MasterKey;
  readonly remote: MasterKey;
}

export type DtlsEndpointEvents = {
  connected: [keys: DtlsKeys];
  failed: [reason: string];
  /** The peer closed the association with an authenticated close_notify. */
  closed: [];
};

export interface DtlsCounters {
  datagramsSent: number;
  retransmits: number;
  /** Datagrams that did not decode as DTLS, or records that failed authentication. */
  dropped: number;
}

type State =
  | 'idle'
  | 'hello-sent'
  | 'finished-sent'
  | 'waiting-hello'
  | 'flight-sent'
  | 'connected'
  | 'failed'
  | 'closed';

interface OutRecord {
  readonly type: ContentType;
  readonly epoch: 0 | 1;
  readonly plaintext: Uint8Array;
}

/** Handshake messages held while a flight is incomplete: a flight of ours has at most 5. */
const MAX_PENDING = 8;
const ALERT_FATAL = 2;
const ALERT_CLOSE_NOTIFY = 0;
const ALERT_HANDSHAKE_FAILURE = 40;
const ALERT_BAD_CERTIFICATE = 42;

export class DtlsEndpoint extends TypedEmitter<DtlsEndpointEvents> {
  readonly counters: DtlsCounters = { datagramsSent: 0, retransmits: 0, dropped: 0 };
  #state: State = 'idle';
  #send: (datagram: Uint8Array) => void;
  readonly #ecdh = createECDH('prime256v1');
  readonly #localRandom = new Uint8Array(randomBytes(32));
  #remoteRandom?: Uint8Array;
  readonly #transcript: Uint8Array[] = [];
  readonly #pending = new Map<number, HandshakeMessage>();
  #nextReceiveSeq = 0;
  #nextSendSeq = 0;
  readonly #recordSeq = [0, 0];
  #flight: OutRecord[] = [];
  #rtoMs: number;
  #retransmit?: Timer;
  #deadline?: Timer;
  #master?: Uint8Array;
  #keys?: RecordKeys;
  #profile?: SrtpProfile;
  #peerKey?: ReturnType<typeof certificateKey>;
  #peerAlert?: number;
  #lastResendAtMs = Number.NEGATIVE_INFINITY;
  /** Whether any DTLS record from the peer decoded. */
  #heard = false;
  #failure?: string;
  readonly #startedAtMs: number;
  #result?: DtlsKeys;

  constructor(
    private readonly c: { readonly clock: Clock },
    private readonly init: DtlsEndpointInit,
    send: (datagram: Uint8Array) => void,
  ) {
    super();
    this.#send = send;
    this.#rtoMs = init.rtoMs ?? 400;
    this.#ecdh.generateKeys();
    this.#startedAtMs = c.clock.now();
  }

  get role(): DtlsRole {
    return this.init.role;
  }

  get state(): State {
    return this.#state;
  }

  /** Why the handshake failed, once it has. */
  get failure(): string | undefined {
    return this.#failure;
  }

  /** The keys once connected. */
  get keys(): DtlsKeys | undefined {
    return this.#result;
  }

  /**
   * Where datagrams go from now on (the punch confirmed the pair, or the call went to the relay).
   * With `resend`, a flight nobody has answered yet leaves again at once on the new way, rather
   * than at the next (backed-off) retransmission.
   */
  setSend(send: (datagram: Uint8Array) => void, resend = false): void {
    this.#send = send;
    if (resend && !this.#heard && this.#flight.length > 0 && this.#state !== 'connected')
      this.#sendRecords(this.#flight);
  }

  /** Starts the handshake: the client sends its ClientHello, the server waits for one. */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#deadline = this.c.clock.setTimeout(() => this.#timedOut(), this.init.timeoutMs ?? 10_000);
    if (this.init.role === 'server') {
      this.#state = 'waiting-hello';
      return;
    }
    const extensions: Extension[] = [
      { type: ExtensionType.supportedGroups, data: vector(2, uint(GROUP_P256, 2)) },
      { type: ExtensionType.ecPointFormats, data: vector(1, uint(0, 1)) },
      { type: ExtensionType.signatureAlgorithms, data: vector(2, uint(SIGNATURE_ECDSA_SHA256, 2)) },
      { type: ExtensionType.useSrtp, data: encodeUseSrtp(this.#profiles()) },
      { type: ExtensionType.extendedMasterSecret, data: new Uint8Array(0) },
    ];
    const hello = encodeClientHello({
      random: this.#localRandom,
      sessionId: new Uint8Array(0),
      cookie: new Uint8Array(0),
      cipherSuites: [CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256],
      extensions,
    });
    this.#state = 'hello-sent';
    this.#sendFlight([this.#handshake(HandshakeType.clientHello, hello)]);
  }

  /** A datagram from the peer that looks like DTLS (RFC 7983). Never throws. */
  handle(datagram: Uint8Array): void {
    if (this.#state === 'failed' || this.#state === 'closed' || this.#state === 'idle') return;
    let records: DtlsRecord[];
    try {
      records = decodeRecords(datagram);
    } catch {
      this.counters.dropped++;
      return;
    }
    this.#heard = true;
    try {
      // Advance after each record: the client's Finished (epoch 1) follows the messages that key it.
      for (const record of records) {
        this.#record(record);
        this.#advance();
      }
    } catch (error) {
      this.#fail((error as Error).message, ALERT_HANDSHAKE_FAILURE);
    }
  }

  /** Idempotent: stops the timers; once connected, tells the peer with a close_notify. */
  close(): void {
    if (this.#state === 'closed') return;
    const handshaking = this.#state !== 'connected' && this.#state !== 'failed';
    if (this.#state === 'connected')
      this.#sendRecords([
        { type: ContentType.alert, epoch: 1, plaintext: Uint8Array.of(1, ALERT_CLOSE_NOTIFY) },
      ]);
    this.#state = 'closed';
    this.#stopTimers();
    if (handshaking) {
      this.#failure = 'the call ended before the DTLS handshake finished';
      this.emit('failed', this.#failure);
    }
  }

  #profiles(): readonly SrtpProfile[] {
    return this.init.profiles ?? [7, 1];
  }

  #handshake(type: number, body: Uint8Array): OutRecord {
    const bytes = encodeHandshake({ type, messageSeq: this.#nextSendSeq++, body });
    this.#transcript.push(bytes);
    return { type: ContentType.handshake, epoch: 0, plaintext: bytes };
  }

  #sendRecords(records: readonly OutRecord[]): void {
    const parts = records.map((r) => {
      const sequence = this.#recordSeq[r.epoch]!++;
      let fragment = r.plaintext;
      if (r.epoch === 1) {
        const keys = this.#keys!;
        const [key, iv] =
          this.init.role === 'client' ? [keys.clientKey, keys.clientIv] : [keys.serverKey, keys.serverIv];
        fragment = sealRecord(key, iv, r.type, 1, sequence, r.plaintext);
      }
      return encodeRecord({ type: r.type, version: DTLS_1_2, epoch: r.epoch, sequence, fragment });
    });
    this.counters.datagramsSent++;
    try {
      this.#send(concat(...parts));
    } catch {
      // A closed or unready transport: the retransmission timer tries again.
    }
  }

  #sendFlight(records: OutRecord[]): void {
    this.#flight = records;
    this.#rtoMs = this.init.rtoMs ?? 400;
    this.#sendRecords(records);
    this.#armRetransmit();
  }

  #armRetransmit(): void {
    this.#retransmit?.clear();
    this.#retransmit = this.c.clock.setTimeout(() => {
      if (this.#state === 'connected' || this.#state === 'failed' || this.#state === 'closed') return;
      if (this.#flight.length === 0) return;
      this.counters.retransmits++;
      this.#sendRecords(this.#flight);
      this.#rtoMs = Math.min(this.#rtoMs * 2, 4000);
      this.#armRetransmit();
    }, this.#rtoMs);
  }

  /** The peer sent its previous flight again: ours was lost. Once per half RTO at most. */
  #resend(): void {
    const now = this.c.clock.now();
    if (now - this.#lastResendAtMs < (this.init.rtoMs ?? 400) / 2 || this.#flight.length === 0) return;
    this.#lastResendAtMs = now;
    this.counters.retransmits++;
    this.#sendRecords(this.#flight);
  }

  #record(record: DtlsRecord): void {
    let plaintext = record.fragment;
    if (record.epoch === 1) {
      const keys = this.#keys;
      if (!keys) return; // keys come with the rest of the flight; the peer retransmits
      const [key, iv] =
        this.init.role === 'client' ? [keys.serverKey, keys.serverIv] : [keys.clientKey, keys.clientIv];
      try {
        plaintext = openRecord(key, iv, record.type, 1, record.sequence, record.fragment);
      } catch {
        this.counters.dropped++;
        return;
      }
    } else if (record.epoch !== 0) {
      this.counters.dropped++;
      return;
    }
    switch (record.type) {
      case ContentType.handshake: {
        let messages: HandshakeMessage[];
        try {
          messages = decodeHandshakes(plaintext);
        } catch {
          // Undecodable bytes are dropped, not fatal: on an unauthenticated epoch anyone could send them.
          this.counters.dropped++;
          return;
        }
        for (const message of messages) this.#message(message, record.epoch);
        return;
      }
      case ContentType.alert:
        if (plaintext.byteLength < 2) return;
        if (record.epoch === 0) {
          this.#peerAlert = plaintext[1];
          return;
        }
        if (plaintext[1] === ALERT_CLOSE_NOTIFY || plaintext[0] === ALERT_FATAL) {
          const wasConnected = this.#state === 'connected';
          this.#state = 'closed';
          this.#stopTimers();
          if (wasConnected) this.emit('closed');
          else this.#failWith(`the peer ended the DTLS handshake (alert ${plaintext[1]})`);
        }
        return;
      default:
        // ChangeCipherSpec is implied by the epoch; application data is not used by DTLS-SRTP.
        return;
    }
  }

  #message(message: HandshakeMessage, epoch: number): void {
    if (message.messageSeq < this.#nextReceiveSeq) {
      // The peer retransmitted a flight we already took: ours did not arrive.
      this.#resend();
      return;
    }
    // Finished is the only message sent under epoch 1; anything else there is not ours.
    if ((message.type === HandshakeType.finished) !== (epoch === 1)) return;
    if (this.#pending.size >= MAX_PENDING || message.messageSeq > this.#nextReceiveSeq + MAX_PENDING) return;
    this.#pending.set(message.messageSeq, message);
  }

  /** Takes the next `types.length` messages in order when they are all here. */
  #take(types: readonly number[]): HandshakeMessage[] | undefined {
    const out: HandshakeMessage[] = [];
    for (let i = 0; i < types.length; i++) {
      const m = this.#pending.get(this.#nextReceiveSeq + i);
      if (!m) return undefined;
      if (m.type !== types[i])
        throw new Error(`unexpected DTLS handshake message ${m.type} (expected ${types[i]})`);
      out.push(m);
    }
    for (let i = 0; i < types.length; i++) this.#pending.delete(this.#nextReceiveSeq + i);
    this.#nextReceiveSeq += types.length;
    for (const m of out) this.#transcript.push(encodeHandshake(m));
    return out;
  }

  #advance(): void {
    switch (this.#state) {
      case 'waiting-hello': {
        const taken = this.#take([HandshakeType.clientHello]);
        if (taken) this.#onClientHello(taken[0]!);
        return;
      }
      case 'hello-sent': {
        const taken = this.#take([
          HandshakeType.serverHello,
          HandshakeType.certificate,
          HandshakeType.serverKeyExchange,
          HandshakeType.certificateRequest,
          HandshakeType.serverHelloDone,
        ]);
        if (taken) this.#onServerFlight(taken);
        return;
      }
      case 'flight-sent': {
        if (!this.#keys) {
          const taken = this.#take([
            HandshakeType.certificate,
            HandshakeType.clientKeyExchange,
            HandshakeType.certificateVerify,
          ]);
          if (taken) this.#onClientFlight(taken);
        }
        if (this.#keys) {
          const finished = this.#take([HandshakeType.finished]);
          if (finished) this.#onClientFinished(finished[0]!);
        }
        return;
      }
      case 'finished-sent': {
        const finished = this.#take([HandshakeType.finished]);
        if (finished) this.#onServerFinished(finished[0]!);
        return;
      }
      default:
        return;
    }
  }

  // Server, flight 2.
  #onClientHello(message: HandshakeMessage): void {
    const hello = decodeClientHello(message.body);
    if (!hello.cipherSuites.includes(CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256)) {
      this.#fail(
        'the peer offers no cipher suite we accept (ECDHE-ECDSA-AES128-GCM-SHA256)',
        ALERT_HANDSHAKE_FAILURE,
      );
      return;
    }
    const offered = hello.extensions.find((e) => e.type === ExtensionType.useSrtp);
    const theirs = offered ? decodeUseSrtp(offered.data) : [];
    const profile = this.#profiles().find((p) => theirs.includes(p));
    if (profile === undefined) {
      this.#fail('no SRTP profile in common with the peer', ALERT_HANDSHAKE_FAILURE);
      return;
    }
    if (!hello.extensions.some((e) => e.type === ExtensionType.extendedMasterSecret)) {
      this.#fail('the peer does not use the extended master secret (RFC 7627)', ALERT_HANDSHAKE_FAILURE);
      return;
    }
    this.#profile = profile;
    this.#remoteRandom = hello.random;
    const serverHello = encodeServerHello({
      random: this.#localRandom,
      sessionId: new Uint8Array(0),
      cipherSuite: CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256,
      extensions: [
        { type: ExtensionType.useSrtp, data: encodeUseSrtp([profile]) },
        { type: ExtensionType.extendedMasterSecret, data: new Uint8Array(0) },
      ],
    });
    const point = new Uint8Array(this.#ecdh.getPublicKey());
    const signed = concat(hello.random, this.#localRandom, encodeEcdhParams(point));
    const signature = sign('sha256', signed, { key: this.init.identity.privateKey, dsaEncoding: 'der' });
    this.#state = 'flight-sent';
    this.#sendFlight([
      this.#handshake(HandshakeType.serverHello, serverHello),
      this.#handshake(HandshakeType.certificate, encodeCertificate([this.init.identity.certificate])),
      this.#handshake(HandshakeType.serverKeyExchange, encodeServerKeyExchange(point, signature)),
      this.#handshake(HandshakeType.certificateRequest, encodeCertificateRequest()),
      this.#handshake(HandshakeType.serverHelloDone, new Uint8Array(0)),
    ]);
  }

  // Client, flight 3.
  #onServerFlight([hello, certificate, keyExchange]: HandshakeMessage[]): void {
    const serverHello = decodeServerHello(hello!.body);
    if (serverHello.cipherSuite !== CIPHER_ECDHE_ECDSA_AES128_GCM_SHA256) {
      this.#fail(
        `the peer chose cipher suite 0x${serverHello.cipherSuite.toString(16)}, which we did not offer`,
        ALERT_HANDSHAKE_FAILURE,
      );
      return;
    }
    const useSrtp = serverHello.extensions.find((e) => e.type === ExtensionType.useSrtp);
    const chosen = useSrtp ? decodeUseSrtp(useSrtp.data) : [];
    if (chosen.length !== 1 || !this.#profiles().includes(chosen[0] as SrtpProfile)) {
      this.#fail('the peer chose no SRTP profile we offered', ALERT_HANDSHAKE_FAILURE);
      return;
    }
    if (!serverHello.extensions.some((e) => e.type === ExtensionType.extendedMasterSecret)) {
      this.#fail('the peer does not use the extended master secret (RFC 7627)', ALERT_HANDSHAKE_FAILURE);
      return;
    }
    this.#profile = chosen[0] as SrtpProfile;
    this.#remoteRandom = serverHello.random;
    if (!this.#acceptCertificate(certificate!)) return;
    const ske = decodeServerKeyExchange(keyExchange!.body);
    const signed = concat(this.#localRandom, serverHello.random, ske.params);
    if (
      ske.scheme !== SIGNATURE_ECDSA_SHA256 ||
      !verify('sha256', signed, { key: this.#peerKey!, dsaEncoding: 'der' }, ske.signature)
    ) {
      this.#fail(
        "the peer's ServerKeyExchange signature does not verify with its certificate",
        ALERT_BAD_CERTIFICATE,
      );
      return;
    }
    const preMaster = this.#ecdh.computeSecret(ske.publicKey);
    const records = [
      this.#handshake(HandshakeType.certificate, encodeCertificate([this.init.identity.certificate])),
      this.#handshake(HandshakeType.clientKeyExchange, vector(1, new Uint8Array(this.#ecdh.getPublicKey()))),
    ];
    this.#deriveKeys(preMaster);
    const signature = sign('sha256', concat(...this.#transcript), {
      key: this.init.identity.privateKey,
      dsaEncoding: 'der',
    });
    records.push(this.#handshake(HandshakeType.certificateVerify, encodeCertificateVerify(signature)));
    records.push({ type: ContentType.changeCipherSpec, epoch: 0, plaintext: Uint8Array.of(1) });
    const verifyData = finishedVerifyData(this.#master!, 'client', transcriptHash(this.#transcript));
    const finished = this.#handshake(HandshakeType.finished, verifyData);
    records.push({ ...finished, epoch: 1 });
    this.#state = 'finished-sent';
    this.#sendFlight(records);
  }

  // Server: the client's certificate, key and proof of its key.
  #onClientFlight([certificate, keyExchange, certificateVerify]: HandshakeMessage[]): void {
    if (!this.#acceptCertificate(certificate!)) return;
    // The transcript now ends with CertificateVerify; what it signs ends with ClientKeyExchange.
    const signedPart = this.#transcript.slice(0, -1);
    const preMaster = this.#ecdh.computeSecret(decodeClientKeyExchange(keyExchange!.body));
    this.#deriveKeys(preMaster, signedPart);
    const cv = decodeCertificateVerify(certificateVerify!.body);
    if (
      cv.scheme !== SIGNATURE_ECDSA_SHA256 ||
      !verify('sha256', concat(...signedPart), { key: this.#peerKey!, dsaEncoding: 'der' }, cv.signature)
    ) {
      this.#fail("the peer's CertificateVerify does not verify with its certificate", ALERT_BAD_CERTIFICATE);
      return;
    }
  }

  /** RFC 5246 §7.4.9: the peer's verify_data over the transcript before its Finished; fails the handshake if not. */
  #finishedMatches(finished: HandshakeMessage, sender: 'client' | 'server'): boolean {
    const expected = finishedVerifyData(this.#master!, sender, transcriptHash(this.#transcript.slice(0, -1)));
    if (equal(expected, finished.body)) return true;
    this.#fail("the peer's Finished does not match the handshake", ALERT_HANDSHAKE_FAILURE);
    return false;
  }

  #onClientFinished(finished: HandshakeMessage): void {
    if (!this.#finishedMatches(finished, 'client')) return;
    const verifyData = finishedVerifyData(this.#master!, 'server', transcriptHash(this.#transcript));
    const serverFinished = this.#handshake(HandshakeType.finished, verifyData);
    this.#flight = [
      { type: ContentType.changeCipherSpec, epoch: 0, plaintext: Uint8Array.of(1) },
      { ...serverFinished, epoch: 1 },
    ];
    this.#sendRecords(this.#flight);
    this.#connected();
  }

  #onServerFinished(finished: HandshakeMessage): void {
    if (this.#finishedMatches(finished, 'server')) this.#connected();
  }

  #acceptCertificate(message: HandshakeMessage): boolean {
    const chain = decodeCertificate(message.body);
    const der = chain[0];
    if (!der) {
      this.#fail('the peer sent no DTLS certificate', ALERT_BAD_CERTIFICATE);
      return false;
    }
    const actual = fingerprintOf(der);
    if (actual !== this.init.remoteFingerprint.toUpperCase()) {
      this.#fail(
        `the peer's DTLS certificate (sha-256 ${short(actual)}) does not match the fingerprint in its SDP (${short(this.init.remoteFingerprint)})`,
        ALERT_BAD_CERTIFICATE,
      );
      return false;
    }
    try {
      this.#peerKey = certificateKey(der);
    } catch (error) {
      this.#fail((error as Error).message, ALERT_BAD_CERTIFICATE);
      return false;
    }
    return true;
  }

  /** Master secret and record keys; `sessionPart` is the transcript through ClientKeyExchange. */
  #deriveKeys(preMaster: Uint8Array, sessionPart: readonly Uint8Array[] = this.#transcript): void {
    this.#master = extendedMasterSecret(preMaster, transcriptHash(sessionPart));
    const [clientRandom, serverRandom] = this.#randoms();
    this.#keys = recordKeys(this.#master, clientRandom, serverRandom);
  }

  #randoms(): [Uint8Array, Uint8Array] {
    return this.init.role === 'client'
      ? [this.#localRandom, this.#remoteRandom!]
      : [this.#remoteRandom!, this.#localRandom];
  }

  #connected(): void {
    this.#state = 'connected';
    this.#stopTimers();
    const profile = this.#profile!;
    const { keyLength, saltLength } = masterLengths(profile);
    const [clientRandom, serverRandom] = this.#randoms();
    // RFC 5764 §4.2: client key, server key, client salt, server salt.
    const m = exportKeyingMaterial(
      this.#master!,
      'EXTRACTOR-dtls_srtp',
      clientRandom,
      serverRandom,
      2 * (keyLength + saltLength),
    );
    const client: MasterKey = {
      key: m.slice(0, keyLength),
      salt: m.slice(2 * keyLength, 2 * keyLength + saltLength),
    };
    const server: MasterKey = {
      key: m.slice(keyLength, 2 * keyLength),
      salt: m.slice(2 * keyLength + saltLength),
    };
    this.#result =
      this.init.role === 'client'
        ? { profile, local: client, remote: server }
        : { profile, local: server, remote: client };
    this.emit('connected', this.#result);
  }

  #timedOut(): void {
    if (this.#state === 'connected' || this.#state === 'closed' || this.#state === 'failed') return;
    const hint =
      this.#peerAlert === undefined ? '' : `; the peer sent an (unauthenticated) alert ${this.#peerAlert}`;
    this.#failWith(
      `DTLS handshake not complete after ${Math.round(this.c.clock.now() - this.#startedAtMs)} ms (${this.counters.retransmits} retransmissions)${hint}`,
    );
  }

  #fail(reason: string, alert: number): void {
    if (this.#state === 'failed' || this.#state === 'closed') return;
    this.#sendRecords([{ type: ContentType.alert, epoch: 0, plaintext: Uint8Array.of(ALERT_FATAL, alert) }]);
    this.#failWith(reason);
  }

  #failWith(reason: string): void {
    if (this.#state === 'failed') return;
    this.#state = 'failed';
    this.#failure = reason;
    this.#stopTimers();
    this.emit('failed', reason);
  }

  #stopTimers(): void {
    this.#retransmit?.clear();
    this.#deadline?.clear();
    if (this.#state !== 'connected') this.#flight = [];
  }
}

/** Finished verify_data, compared in constant time. */
const equal = (a: Uint8Array, b: Uint8Array): boolean =>
  a.byteLength === b.byteLength && timingSafeEqual(a, b);

const short = (fingerprint: string): string => `${fingerprint.slice(0, 8)}…${fingerprint.slice(-8)}`;
