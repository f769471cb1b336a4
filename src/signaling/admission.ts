/**
 * Which connections the server takes: at most `maxConnections` at once and `maxConnectionsPerSource`
 * from one address (issue 16: 21 000 idle connections once locked every REGISTER and the admin API
 * out). Counts only; the server closes what is refused.
 */
export interface AdmissionInit {
  /** Default 10 000. */
  readonly maxConnections?: number;
  /** Default 256: a site's gateways share its NAT's public address. */
  readonly maxConnectionsPerSource?: number;
}

export class Admission {
  readonly #perSource = new Map<string, number>();
  #total = 0;

  constructor(private readonly init: AdmissionInit = {}) {}

  /** Takes one more connection from `source`, or false when a cap is reached. */
  admit(source: string): boolean {
    const fromSource = this.#perSource.get(source) ?? 0;
    if (this.#total >= (this.init.maxConnections ?? 10_000)) return false;
    if (fromSource >= (this.init.maxConnectionsPerSource ?? 256)) return false;
    this.#perSource.set(source, fromSource + 1);
    this.#total++;
    return true;
  }

  release(source: string): void {
    const left = (this.#perSource.get(source) ?? 0) - 1;
    if (left <= 0) this.#perSource.delete(source);
    else this.#perSource.set(source, left);
    this.#total = Math.max(0, this.#total - 1);
  }
}
