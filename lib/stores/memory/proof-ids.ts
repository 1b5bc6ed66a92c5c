import { setImmediate as yieldToEventLoop } from 'node:timers/promises'

/**
 * The MemoryStore's replay cache of DPoP proofs (`useOnce`, types.ts): each key with the time
 * it expires, in a Map, whose insertion order is the order proofs were first used. Every proof
 * is recorded for the same lifetime from about the time it arrives, so that order is nearly
 * the order of expiry: expired keys gather at the front, and each call drops them from there
 * until it meets a live one (amortised O(1): a key is dropped once). The few expired keys that
 * arrived out of order wait for `sweep`, or are used anew before then. A key used anew after its
 * expiry moves to the end, where its new expiry belongs.
 *
 * Memory is bounded by `max` whatever clients send. When full, the oldest key goes: it is the
 * nearest to expiry, so the replay it allows again is the one with the least time left to run
 * (a proof past `dpopProofLifetime` fails its `iat` check anyway). Refusing new proofs instead
 * would let anyone holding a key (any client: proofs are self-signed) fill the cache and lock
 * every bound session out until its entries expire.
 */
export class ProofIds {
  readonly #expiries = new Map<string, number>()

  constructor (readonly max: number) {}

  /** Keys held, expired ones included until dropped. */
  get size (): number {
    return this.#expiries.size
  }

  /** `true` and recorded until `expiresAt` when `key` is new or expired at `now`, else `false`. */
  useOnce (key: string, expiresAt: number, now: number): boolean {
    this.#dropExpiredFront(now)
    const until = this.#expiries.get(key)
    if (until !== undefined && now < until) return false
    // Out of order and expired: deleted first, so it is re-recorded at the end.
    this.#expiries.delete(key)
    if (this.#expiries.size >= this.max) this.#expiries.delete(this.#expiries.keys().next().value as string)
    this.#expiries.set(key, expiresAt)
    return true
  }

  /**
   * Drops every key expired at `now`, `batchSize` examined per event-loop turn. Keys recorded
   * while it yields are visited too (a Map iterates live), which only costs their look.
   */
  async sweep (now: number, batchSize: number): Promise<void> {
    let seen = 0
    for (const [key, until] of this.#expiries) {
      if (now >= until) this.#expiries.delete(key)
      if (++seen % batchSize === 0) await yieldToEventLoop()
    }
  }

  #dropExpiredFront (now: number): void {
    for (const [key, until] of this.#expiries) {
      if (now < until) return
      this.#expiries.delete(key)
    }
  }
}
