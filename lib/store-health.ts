import type { TokenAuthEvents } from './events.js'

/**
 * Tells outages of the token store apart from single failed calls, so an incident is reported
 * twice, when it starts and when it ends, instead of once per 503 (docs/design.md, «Store
 * outages»). An outage starts with the first failed store call and ends with the first call
 * that succeeds; meanwhile every 503 a plugin route answers is counted.
 */
export class StoreHealth {
  readonly #events: TokenAuthEvents
  readonly #now: () => number
  /** When the current outage started, or `null` while the store answers. */
  #downSince: number | null = null
  #unavailableResponses = 0

  constructor (events: TokenAuthEvents, now: () => number = Date.now) {
    this.#events = events
    this.#now = now
    events.on('unavailableResponse', () => { if (this.#downSince !== null) this.#unavailableResponses++ })
  }

  /** True during an outage: it has been reported, so callers need not report each failure. */
  get down (): boolean {
    return this.#downSince !== null
  }

  failed (cause: unknown): void {
    if (this.#downSince !== null) return
    this.#downSince = this.#now()
    this.#unavailableResponses = 0
    this.#events.emit('storeUnavailable', { cause })
  }

  succeeded (): void {
    if (this.#downSince === null) return
    const unavailableMs = this.#now() - this.#downSince
    this.#downSince = null
    this.#events.emit('storeRecovered', { unavailableMs, unavailableResponses: this.#unavailableResponses })
  }
}
