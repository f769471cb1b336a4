/** The one error every codec throws on bad input: it says where (byte offset) and what. */
export class DecodeError extends Error {
  constructor(
    readonly protocol: string,
    readonly offset: number,
    readonly reason: string,
  ) {
    super(`${protocol}: ${reason} (at byte ${offset})`);
    this.name = 'DecodeError';
  }
}
