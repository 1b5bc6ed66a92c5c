/**
 * Ended sessions whose access tokens may still be unexpired (docs/design.md, «Revocation reaches access tokens»), and sessions whose
 * claims changed («Claims that change»). Checked on every protected request, so it lives in
 * memory: one Map lookup, no store round trip. An entry is only needed until the last access
 * token signed before it expires, i.e. `accessTokenTtl` after the revocation or change.
 */
import type { RevocationRecord } from './stores/types.js'

export class RevocationList {
  readonly #until = new Map<string, number>()
  /** Session id -> the lowest claims version its access tokens may carry, and until when that matters. */
  readonly #versions = new Map<string, { version: number, until: number }>()
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

  /** A feed entry (docs/design.md, «The revocation feed»): a revocation, or a claims change when it carries a version. */
  learn (record: RevocationRecord): void {
    if (record.claimsVersion === undefined) this.add(record.sessionId, record.revokedAt)
    else this.addClaimsVersion(record.sessionId, record.claimsVersion, record.revokedAt)
  }

  has (sessionId: string): boolean {
    return this.#until.has(sessionId)
  }

  /**
   * Remembers that the session's claims reached `version` at `changedAt`: access tokens signed
   * with a lower one are refused until the last of them has expired. A lower version than one
   * known is ignored (feeds may deliver out of order).
   */
  addClaimsVersion (sessionId: string, version: number, changedAt: number): void {
    const known = this.#versions.get(sessionId)
    if (known !== undefined && known.version >= version) return
    this.#versions.delete(sessionId)
    this.#versions.set(sessionId, { version, until: changedAt + this.#ttl })
  }

  /**
   * Whether an access token of the session carrying claims version `version` (absent = 0) is
   * older than the session's claims. Free when no claims changed: the map is empty.
   */
  isStale (sessionId: string, version: number | undefined): boolean {
    if (this.#versions.size === 0) return false
    const known = this.#versions.get(sessionId)
    return known !== undefined && (version ?? 0) < known.version
  }

  get size (): number {
    return this.#until.size
  }

  /**
   * Forgets sessions whose access tokens have all expired; O(entries removed). Entries from
   * other processes may arrive slightly out of order; one kept a little long is harmless.
   */
  prune (now: number): void {
    pruneMap(this.#until, now, (until) => until)
    pruneMap(this.#versions, now, (entry) => entry.until)
  }
}

function pruneMap<V> (map: Map<string, V>, now: number, untilOf: (value: V) => number): void {
  for (const [sessionId, value] of map) {
    if (untilOf(value) > now) return
    map.delete(sessionId)
  }
}
