import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import {
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, StoreDeadlineError,
  type TokenStore, type WriteOptions
} from './types.js'

export interface MemoryStoreOptions {
  /**
   * Most sessions kept at once. When full, the oldest session is dropped so memory stays
   * bounded whatever clients do (its user simply has to log in again).
   * @default 100000
   */
  maxSessions?: number
  /**
   * Sessions examined per event-loop turn while sweeping, so a sweep never blocks requests.
   * @default 1000
   */
  sweepBatchSize?: number
}

const DEFAULT_MAX_SESSIONS = 100_000
const DEFAULT_SWEEP_BATCH = 1000

/**
 * The default store: one process, nothing survives a restart. Every operation is O(1) but
 * listing (O(sessions of that user)). Records are copied in and out, so callers can never
 * mutate stored state and values behave as they would in a serialising store.
 */
export class MemoryStore implements TokenStore {
  readonly #sessions = new Map<string, SessionRecord>()
  readonly #byUser = new Map<string, Set<string>>()
  /** The revocation feed, in the order revocations happened. */
  #feed: Array<RevocationRecord & { until: number }> = []
  readonly #listeners = new Set<(record: RevocationRecord) => void>()
  readonly #maxSessions: number
  readonly #sweepBatchSize: number

  constructor (options: MemoryStoreOptions = {}) {
    this.#maxSessions = positiveInteger(options.maxSessions ?? DEFAULT_MAX_SESSIONS, 'maxSessions')
    this.#sweepBatchSize = positiveInteger(options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH, 'sweepBatchSize')
  }

  /** How many sessions are held (expired ones included until swept). */
  get size (): number {
    return this.#sessions.size
  }

  async createSession (session: SessionRecord, options: WriteOptions = {}): Promise<void> {
    // In process, a call runs when it is made: only a deadline already past can be missed.
    if (isPast(options.deadline)) throw new StoreDeadlineError('createSession')
    this.#delete(session.id)
    if (this.#sessions.size >= this.#maxSessions) {
      // Map iteration order is insertion order: the first key is the oldest session.
      this.#delete(this.#sessions.keys().next().value as string)
    }
    this.#sessions.set(session.id, copy(session))
    let ids = this.#byUser.get(session.userId)
    if (ids === undefined) {
      ids = new Set()
      this.#byUser.set(session.userId, ids)
    }
    ids.add(session.id)
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    if (isPast(request.deadline)) throw new StoreDeadlineError('rotate')
    // No await between the read and the write: in one process this is atomic.
    const session = this.#sessions.get(request.sessionId)
    if (session === undefined) return { outcome: 'missing' }
    if (isExpired(session, request.now)) {
      this.#delete(session.id)
      return { outcome: 'expired', session: copy(session) }
    }
    if (request.presentedHash === session.tokenHash) {
      session.previousTokenHash = session.tokenHash
      return { outcome: 'rotated', session: renew(session, request) }
    }
    if (request.presentedHash === session.previousTokenHash) {
      const rotatedAt = session.rotatedAt as number
      if (request.grace > 0 && request.now - rotatedAt <= request.grace) {
        if (session.graceUses >= request.graceLimit) return { outcome: 'superseded', session: copy(session) }
        session.graceUses++
        return { outcome: 'grace', session: copy(session) }
      }
      if (request.now <= rotatedAt) return { outcome: 'superseded', session: copy(session) }
      return { outcome: 'recovered', session: renew(session, request) }
    }
    this.#revoke(session.id, { now: request.now, keepFor: request.keepRevocationFor })
    return { outcome: 'reused', session: copy(session) }
  }

  async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    const session = this.#sessions.get(sessionId)
    if (session === undefined || (userId !== undefined && session.userId !== userId)) return null
    this.#revoke(sessionId, context)
    return copy(session)
  }

  async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    const ids = [...(this.#byUser.get(userId) ?? [])]
    for (const id of ids) this.#revoke(id, context)
    return ids
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    // The feed is in time order: walk back from the newest entry only as far as needed.
    let start = this.#feed.length
    while (start > 0 && (this.#feed[start - 1] as RevocationRecord).revokedAt >= since) start--
    return this.#feed.slice(start).map(({ sessionId, revokedAt }) => ({ sessionId, revokedAt }))
  }

  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    this.#listeners.add(listener)
    return async () => { this.#listeners.delete(listener) }
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    const list: SessionRecord[] = []
    for (const id of this.#byUser.get(userId) ?? []) {
      const session = this.#sessions.get(id) as SessionRecord
      if (!isExpired(session, now)) list.push(copy(session))
    }
    return list.sort((a, b) => a.createdAt - b.createdAt)
  }

  async sweep (now: number): Promise<number> {
    this.#feed = this.#feed.filter((entry) => entry.until > now)
    let removed = 0
    let seen = 0
    // Map iterators tolerate deletion of visited entries, so the walk resumes where it paused.
    for (const session of this.#sessions.values()) {
      if (isExpired(session, now)) {
        this.#delete(session.id)
        removed++
      }
      if (++seen % this.#sweepBatchSize === 0) await yieldToEventLoop()
    }
    return removed
  }

  async close (): Promise<void> {}

  #revoke (sessionId: string, context: RevocationContext): void {
    this.#delete(sessionId)
    const record = { sessionId, revokedAt: context.now }
    this.#feed.push({ ...record, until: context.now + context.keepFor })
    for (const listener of this.#listeners) listener({ ...record })
  }

  #delete (sessionId: string): void {
    const session = this.#sessions.get(sessionId)
    if (session === undefined) return
    this.#sessions.delete(sessionId)
    const ids = this.#byUser.get(session.userId) as Set<string>
    ids.delete(sessionId)
    if (ids.size === 0) this.#byUser.delete(session.userId)
  }
}

/** Makes `nextHash` current, as a rotation and a recovery both do, and returns a copy. */
function renew (session: SessionRecord, request: RotateRequest): SessionRecord {
  session.tokenHash = request.nextHash
  session.rotatedAt = request.now
  session.graceUses = 0
  session.lastUsedAt = request.now
  session.expiresAt = Math.min(request.now + request.idleTtl, session.absoluteExpiresAt)
  session.userAgent = request.userAgent
  session.ip = request.ip
  if (request.claims !== undefined) session.claims = copyClaims(request.claims)
  return copy(session)
}

function isPast (deadline: number | undefined): boolean {
  return deadline !== undefined && Date.now() > deadline
}

function isExpired (session: SessionRecord, now: number): boolean {
  return now >= session.expiresAt
}

function copy (session: SessionRecord): SessionRecord {
  return { ...session, claims: copyClaims(session.claims) }
}

function copyClaims (claims: Record<string, unknown>): Record<string, unknown> {
  // A JSON round trip: the memory store holds exactly what a serialising store would.
  return JSON.parse(JSON.stringify(claims))
}

function positiveInteger (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`MemoryStore option "${name}" must be a positive integer, got ${String(value)}`)
  }
  return value
}
