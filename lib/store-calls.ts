import { CallDeadlines } from './call-deadlines.js'
import { StoreUnavailableError } from './errors.js'
import type { TokenAuthEvents } from './events.js'
import { StoreHealth } from './store-health.js'

/**
 * Spends a single-use value (a DPoP proof, a DBSC challenge) in the store's `useOnce`, through the
 * session service's deadline: whether this was its first use.
 */
export type SpendOnce = (replayKey: string, expiresAt: number) => Promise<boolean>

/**
 * How the session service calls its store: each call with a deadline, reported to the store's
 * health; any failure becomes a 503 and nothing is issued. The deadline goes to the store too, on
 * the wall clock: a write that reaches it later is dropped there (docs/design.md, «A 503 is the
 * truth»).
 */
export class StoreCalls {
  /** Whether the store is answering; every call reports to it. */
  readonly health: StoreHealth
  readonly #deadlines: CallDeadlines

  constructor (timeout: number, events: TokenAuthEvents) {
    this.#deadlines = new CallDeadlines(timeout)
    this.health = new StoreHealth(events)
  }

  async run<T> (operation: (deadline: number) => Promise<T>): Promise<T> {
    try {
      const result = await this.#deadlines.run(operation)
      this.health.succeeded()
      return result
    } catch (cause) {
      this.health.failed(cause)
      throw new StoreUnavailableError({ cause })
    }
  }
}
