import type { Pool, PoolClient } from 'pg'
import type { RevocationRecord } from '../types.js'

/** First and longest pause before reopening a lost LISTEN connection (doubling in between). */
const RECONNECT_MIN_DELAY = 100
const RECONNECT_MAX_DELAY = 5000

/**
 * One LISTEN connection for one listener. The first open must succeed (`start` rejects
 * otherwise); after that a lost connection is reopened in the background until `stop`.
 * `stop` never waits for a reopen in flight: that attempt sees `#stopped` and gives up.
 */
export class RevocationSubscription {
  readonly #pool: Pool
  readonly #listen: string
  readonly #unlisten: string
  readonly #listener: (record: RevocationRecord) => void
  /** The connection listening (or about to), if any. */
  #client: PoolClient | undefined
  #timer: NodeJS.Timeout | undefined
  #failures = 0
  #stopped = false

  constructor (pool: Pool, channelIdentifier: string, listener: (record: RevocationRecord) => void) {
    this.#pool = pool
    this.#listen = `LISTEN ${channelIdentifier}`
    this.#unlisten = `UNLISTEN ${channelIdentifier}`
    this.#listener = listener
  }

  async start (): Promise<void> {
    try {
      await this.#connect()
    } catch (error) {
      await this.stop() // cancels a reopen the failed attempt may have scheduled
      throw error
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    const client = this.#client
    if (client === undefined) return
    this.#detach(client)
    try {
      // Queued behind a LISTEN still in flight on this connection, if any.
      await client.query(this.#unlisten)
      client.release()
    } catch (error) {
      client.release(error as Error)
    }
  }

  async #connect (): Promise<void> {
    const client = await this.#pool.connect()
    if (this.#stopped) {
      client.release()
      return
    }
    client.on('notification', this.#onNotification)
    client.on('error', this.#onError)
    this.#client = client
    try {
      await client.query(this.#listen)
    } catch (error) {
      // The connection may already be released, by its 'error' event or by `stop`.
      if (this.#client === client) this.#drop(client, error as Error)
      throw error
    }
  }

  readonly #onNotification = (message: { payload?: string }): void => {
    const record = parseRevocation(message.payload)
    if (record !== undefined) this.#listener(record)
  }

  /**
   * The connection broke: drop it and reopen later. Only the current connection has this
   * listener (`#detach` removes it), so `#client` is the connection that failed.
   */
  readonly #onError = (error: Error): void => {
    this.#drop(this.#client as PoolClient, error)
    this.#reconnectLater()
  }

  #drop (client: PoolClient, error: Error): void {
    this.#detach(client)
    client.release(error)
  }

  #detach (client: PoolClient): void {
    client.off('notification', this.#onNotification)
    client.off('error', this.#onError)
    this.#client = undefined
  }

  #reconnectLater (): void {
    if (this.#stopped) return
    clearTimeout(this.#timer)
    const delay = Math.min(RECONNECT_MIN_DELAY * 2 ** this.#failures, RECONNECT_MAX_DELAY)
    this.#timer = setTimeout(() => {
      this.#connect().then(() => { this.#failures = 0 }, () => {
        this.#failures++
        this.#reconnectLater()
      })
    }, delay)
    this.#timer.unref()
  }
}

/** A NOTIFY payload of our channel, or `undefined` for anything else sent on it. */
function parseRevocation (payload: string | undefined): RevocationRecord | undefined {
  try {
    const value = JSON.parse(payload as string) as Partial<RevocationRecord>
    if (typeof value.sessionId === 'string' && typeof value.revokedAt === 'number') {
      return toRevocation(value.sessionId, value.revokedAt, typeof value.claimsVersion === 'number' ? value.claimsVersion : null)
    }
  } catch {}
  return undefined
}

/**
 * A feed entry, pushed or read: a claims change with its version; a revocation without the
 * property at all (the contract's `deepStrictEqual` tells absent from `undefined`).
 */
export function toRevocation (sessionId: string, revokedAt: number, claimsVersion: number | null): RevocationRecord {
  return claimsVersion === null ? { sessionId, revokedAt } : { sessionId, revokedAt, claimsVersion }
}
