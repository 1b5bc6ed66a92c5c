import type { RevocationList } from './revocations.js'
import type { StoreCalls } from './store-calls.js'
import type { TokenStore } from './stores/types.js'

/** How far each poll of the revocation feed reaches back before the previous one (ms). */
const FEED_OVERLAP = 10_000

/**
 * This process's reading of the store's revocation feed (docs/design.md, «Revocation reaches
 * access tokens»): polled from where the last read stopped, and pushed when the store can, both
 * into the denylist.
 */
export class RevocationFeed {
  readonly #store: TokenStore
  readonly #revocations: RevocationList
  readonly #calls: StoreCalls
  readonly #now: () => number
  /** Where the next poll starts. */
  #cursor: number

  /** `keepFor`: how long (ms) revocations stay in the feed; a process that starts late still learns of those whose access tokens live on. */
  constructor (store: TokenStore, revocations: RevocationList, calls: StoreCalls, now: () => number, keepFor: number) {
    this.#store = store
    this.#revocations = revocations
    this.#calls = calls
    this.#now = now
    this.#cursor = now() - keepFor
  }

  /**
   * Reads the feed from where the last read stopped. The cursor overlaps the previous read by
   * `FEED_OVERLAP` to tolerate clock skew between processes and late-visible writes; re-adding a
   * known revocation is harmless. Resolves with how many entries were read.
   */
  async poll (): Promise<number> {
    const startedAt = this.#now()
    const records = await this.#calls.run(() => this.#store.revokedSince(this.#cursor))
    for (const record of records) this.#revocations.learn(record)
    this.#cursor = startedAt - FEED_OVERLAP
    return records.length
  }

  /**
   * Feeds pushed revocations straight into the denylist; undefined when the store cannot push.
   * Not async: the caller awaits the store's own promise, with no hop added.
   */
  subscribe (): Promise<() => Promise<void>> | undefined {
    return this.#store.subscribeRevocations?.((record) => { this.#revocations.learn(record) })
  }
}
