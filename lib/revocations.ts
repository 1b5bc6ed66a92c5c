/**
 * Ended sessions whose access tokens may still be unexpired (docs/design.md, «Revocation reaches access tokens»). Checked on every protected
 * request, so it lives in memory: one Map lookup, no store round trip. An entry is only needed
 * until the last access token of that session expires, i.e. `accessTokenTtl` after revocation.
 */
export class RevocationList {
  readonly #until = new Map<string, number>()
  readonly #ttl: number

  /** @param ttl how long (ms) to remember a revoked session: the access-token lifetime. */
  constructor (ttl: number) {
    this.#ttl = ttl
  }

  /** Remembers a session revoked at `revokedAt` until its last access token has expired. */
  add (sessionId: string, revokedAt: number): void {
    const until = revokedAt + this.#ttl
    const known = this.#until.get(sessionId)
    if (known !== undefined && known >= until) return
    // Delete first so insertion order stays (nearly) expiry order, which lets `prune` stop early.
    this.#until.delete(sessionId)
    this.#until.set(sessionId, until)
  }

  has (sessionId: string): boolean {
    return this.#until.has(sessionId)
  }

  get size (): number {
    return this.#until.size
  }

  /**
   * Forgets sessions whose access tokens have all expired; O(entries removed). Entries from
   * other processes may arrive slightly out of order; one kept a little long is harmless.
   */
  prune (now: number): void {
    for (const [sessionId, until] of this.#until) {
      if (until > now) return
      this.#until.delete(sessionId)
    }
  }
}
