/**
 * Connectivity checks with the call's credentials, as ICE does them (RFC 8445 §7.2.2): a Binding
 * request with USERNAME `remote-ufrag:local-ufrag` and MESSAGE-INTEGRITY under the remote password,
 * answered with a success response signed under the answerer's own password, both with FINGERPRINT.
 * The punch (traversal/punch.ts) and route consent (relay/route-consent.ts) use the same ones.
 */
import { decodeText } from './attributes.ts';
import {
  addFingerprint,
  addMessageIntegrity,
  verifyFingerprint,
  verifyMessageIntegrity,
} from './integrity.ts';
import {
  AttributeType,
  encodeStun,
  findAttribute,
  type StunAttribute,
  StunClass,
  type StunMessage,
  StunMethod,
} from './message.ts';

/** A check from us: `username` is `remote:local`, `key` the remote password. */
export function encodeCheck(transactionId: Uint8Array, username: Uint8Array, key: Uint8Array): Uint8Array {
  const request = encodeStun({
    method: StunMethod.binding,
    cls: StunClass.request,
    transactionId,
    attributes: [{ type: AttributeType.USERNAME, value: username }],
  });
  return addFingerprint(addMessageIntegrity(request, key));
}

/** The answer to a check, signed with `key` (our own password). */
export function encodeCheckAnswer(
  transactionId: Uint8Array,
  key: Uint8Array,
  attributes: StunAttribute[] = [],
): Uint8Array {
  const response = encodeStun({
    method: StunMethod.binding,
    cls: StunClass.success,
    transactionId,
    attributes,
  });
  return addFingerprint(addMessageIntegrity(response, key));
}

/** Is `data` (decoded as `message`) a peer's check for us: `expected` USERNAME, signed with our `key`? */
export function isValidCheck(
  data: Uint8Array,
  message: StunMessage,
  expected: string,
  key: Uint8Array,
): boolean {
  if (message.method !== StunMethod.binding || message.cls !== StunClass.request) return false;
  const username = findAttribute(message, AttributeType.USERNAME);
  return (
    verifyFingerprint(data) &&
    username !== undefined &&
    decodeText(username.value) === expected &&
    verifyMessageIntegrity(data, key)
  );
}

/** Is `data` an answer signed with the peer's `key` (the transaction is the caller's to match)? */
export function isValidAnswer(data: Uint8Array, message: StunMessage, key: Uint8Array): boolean {
  return (
    message.method === StunMethod.binding &&
    message.cls === StunClass.success &&
    verifyFingerprint(data) &&
    verifyMessageIntegrity(data, key)
  );
}
