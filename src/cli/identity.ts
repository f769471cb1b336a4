/** The gateway's DTLS certificate on disk: made on first start, kept beside the config, reused after. */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  createIdentity,
  type DtlsIdentity,
  identityFromPem,
  identityToPem,
} from '../protocol/dtls/certificate.ts';
import { UsageError } from '../util/usage-error.ts';

/**
 * Reads the identity at `path`, or makes one and writes it there (mode 0600, written to a temporary
 * file and renamed, so two gateways starting at once never read half a file). `created` says which.
 */
export function loadOrCreateIdentity(
  path: string,
  name: string,
): { identity: DtlsIdentity; created: boolean } {
  if (existsSync(path)) {
    try {
      return { identity: identityFromPem(readFileSync(path, 'utf8')), created: false };
    } catch (error) {
      throw new UsageError(
        `cannot use the DTLS certificate ${path}: ${(error as Error).message}. Delete it to have a new one made (peers learn the new fingerprint from the SDP).`,
      );
    }
  }
  const identity = createIdentity(name);
  try {
    mkdirSync(dirname(path), { recursive: true });
    const temporary = `${path}.${process.pid}.tmp`;
    writeFileSync(temporary, identityToPem(identity), { mode: 0o600 });
    renameSync(temporary, path);
  } catch (error) {
    throw new UsageError(
      `cannot write the DTLS certificate to ${path}: ${(error as Error).message}. Set media.certificate in the gateway config to a writable path.`,
    );
  }
  return { identity, created: true };
}
