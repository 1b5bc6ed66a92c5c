import type { TokenStore } from './stores/types.js'

/** What the sync needs of the session service (`SessionService` fits): the feed, the sweep and the store's health. */
export interface RevocationSyncSessions {
  /** Reads the revocation feed into the denylist. */
  pollRevocations (): Promise<unknown>
  /** Starts pushing revocations into the denylist; resolves with the unsubscribe, if the store can push. */
  subscribeRevocations (): Promise<(() => Promise<void>) | undefined>
  sweep (): Promise<unknown>
  /** `down` during a store outage, which is reported as one incident. */
  readonly health: { readonly down: boolean }
}

export interface RevocationSyncOptions {
  sessions: RevocationSyncSessions
  /** The store behind `sessions`: whether it can push, and closing it when we own it. */
  store: Pick<TokenStore, 'subscribeRevocations' | 'close'>
  /** Milliseconds between reads of the revocation feed (and retries of a failed push subscription). */
  pollInterval: number
  /** Milliseconds between sweeps of expired sessions and revocations. */
  sweepInterval: number
  /** Reports a failed background step (`what` failed); only called while the store is not known to be down. */
  warn: (what: string, error: unknown) => void
  /** Whether the store was created by us, and so is ours to close. */
  ownsStore: boolean
}

export interface RevocationSync {
  /** Reads the feed once, then starts the push subscription without waiting for it. Never rejects. */
  ready (): Promise<void>
  /** Stops polling and sweeping, ends the push subscription and, when owned, closes the store. */
  close (): Promise<void>
}

/**
 * Keeps this process's denylist in step with revocations made by other processes, through the
 * store's feed: pushed when the store can, polled always (the bound, and the catch-up after any
 * disconnect). Also sweeps expired sessions. Starts polling and sweeping at once; both timers are
 * unref'd, so they never keep a process alive. Background failures go to `warn` and never throw.
 */
export function startRevocationSync (options: RevocationSyncOptions): RevocationSync {
  const { sessions, store } = options
  // Silent while the store is down: an outage is logged twice, when it starts and when it ends
  // (docs/design.md, «Store outages»); what fails meanwhile, background work included, is part of it.
  const warn = (what: string) => (error: unknown) => {
    if (!sessions.health.down) options.warn(what, error)
  }
  const sweeper = setInterval(() => { sessions.sweep().catch(warn('sweeping expired sessions')) }, options.sweepInterval).unref()
  let unsubscribe: (() => Promise<void>) | undefined
  let subscribing: Promise<void> | undefined
  let closing = false
  // One attempt at a time; never awaited by boot, so an app can start while the store is down.
  const subscribe = (): Promise<void> => (subscribing ??= (async () => {
    const stop = await sessions.subscribeRevocations().catch((error: unknown) => { warn('subscribing to revocations')(error); return undefined })
    // Closed while subscribing: let go at once, or the subscription would hold a connection.
    if (closing) await stop?.()
    else unsubscribe = stop
  })().finally(() => { subscribing = undefined }))
  const poller = setInterval(() => {
    sessions.pollRevocations().catch(warn('reading the revocation feed'))
    // A push subscription that failed (store down at boot) is retried with the poll.
    if (unsubscribe === undefined && subscribing === undefined && store.subscribeRevocations !== undefined) {
      subscribe().catch(warn('subscribing to revocations'))
    }
  }, options.pollInterval).unref()

  return {
    async ready () {
      await sessions.pollRevocations().catch(warn('reading the revocation feed'))
      subscribe().catch(warn('subscribing to revocations'))
    },
    async close () {
      closing = true
      clearInterval(sweeper)
      clearInterval(poller)
      // Before the app ends its own client or pool: a subscription holds a connection.
      await unsubscribe?.()
      // A store the app passed in is the app's to close.
      if (options.ownsStore) await store.close()
    }
  }
}
