import { randomBytes } from 'node:crypto'
import { setImmediate as yieldToEventLoop } from 'node:timers/promises'
import {
  type CreateOptions, type CreateResult, DEFAULT_SWEEP_BATCH,
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionLimit, type SessionRecord,
  StoreDeadlineError, type TokenStore
} from '../types.js'
import { packClaims, stringHash } from './codec.js'
import {
  ABSOLUTE_EXPIRES_AT, EXPIRES_AT, GRACE_USES, LAST_USED_AT, PREVIOUS, SessionSlab, TOKEN
} from './slab.js'
import { ProofIds } from './proof-ids.js'
import { NONE, SlotIndex } from './slot-index.js'

export interface MemoryStoreOptions {
  /**
   * Most sessions kept at once. When full, the oldest session is dropped so memory stays
   * bounded whatever clients do (its user simply has to log in again).
   * @default 100000
   */
  maxSessions?: number
  /**
   * Most DPoP proof ids (`useOnce`) kept at once. When full, the oldest goes: the nearest to
   * expiry (proof-ids.ts says why that beats refusing new proofs).
   * @default 1000000
   */
  maxProofIds?: number
  /**
   * Sessions examined per event-loop turn while sweeping, so a sweep never blocks requests.
   * @default 1000
   */
  sweepBatchSize?: number
}

const DEFAULT_MAX_SESSIONS = 100_000
const DEFAULT_MAX_PROOF_IDS = 1_000_000
/** Slots a new store starts with; the slab doubles from there up to `maxSessions`. */
const INITIAL_CAPACITY = 256

/**
 * The default store: one process, nothing survives a restart. Every operation is O(1) but
 * those on all of a user's sessions (listing, revoking them, updating their claims, creating
 * under a session limit): O(sessions of that user). Records are packed into a slab (slab.ts) and unpacked
 * into new objects on the way out, so callers can never mutate stored state and values behave
 * as they would in a serialising store.
 */
export class MemoryStore implements TokenStore {
  readonly #slab: SessionSlab
  /** Sessions by id. */
  readonly #ids: SlotIndex
  /** Sessions by user id: a user's sessions share a chain, newest first. */
  readonly #users: SlotIndex
  readonly #seed = randomBytes(4).readInt32LE()
  /** The revocation feed, in the order revocations happened. */
  #feed: Array<RevocationRecord & { until: number }> = []
  readonly #listeners = new Set<(record: RevocationRecord) => void>()
  /** The DPoP replay cache (`useOnce`). */
  readonly #proofIds: ProofIds
  readonly #maxSessions: number
  readonly #sweepBatchSize: number

  constructor (options: MemoryStoreOptions = {}) {
    this.#maxSessions = positiveInteger(options.maxSessions ?? DEFAULT_MAX_SESSIONS, 'maxSessions')
    this.#sweepBatchSize = positiveInteger(options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH, 'sweepBatchSize')
    this.#proofIds = new ProofIds(positiveInteger(options.maxProofIds ?? DEFAULT_MAX_PROOF_IDS, 'maxProofIds'))
    this.#slab = new SessionSlab(INITIAL_CAPACITY, this.#maxSessions, this.#seed)
    this.#ids = new SlotIndex(this.#slab.capacity)
    this.#users = new SlotIndex(this.#slab.capacity)
  }

  /** How many sessions are held (expired ones included until swept). */
  get size (): number {
    return this.#slab.size
  }

  async createSession (session: SessionRecord, options: CreateOptions = {}): Promise<CreateResult> {
    // In process, a call runs when it is made: only a deadline already past can be missed.
    if (isPast(options.deadline)) throw new StoreDeadlineError('createSession')
    // No await from here on: the count, the sessions ended and the insert are one atomic step.
    let ended: SessionRecord[] = []
    if (options.sessionLimit !== undefined) {
      const limited = this.#makeRoom(session, options.sessionLimit)
      if (limited === null) return { outcome: 'refused' }
      ended = limited
    }
    this.#deleteId(session.id)
    // The oldest session is first in the slab's insertion order.
    if (this.#slab.size >= this.#maxSessions) this.#delete(this.#slab.oldest)
    // Another session of the user lends its user id string, and its claims when they are equal.
    const sibling = this.#anySessionOf(session.userId)
    let claims = packClaims(session.claims)
    if (sibling !== NONE && this.#slab.claims(sibling) === claims) claims = this.#slab.claims(sibling)
    const slot = this.#take()
    this.#slab.write(slot, session, sibling === NONE ? session.userId : this.#slab.userId(sibling), claims)
    this.#ids.add(slot, this.#slab.idHash(slot))
    this.#users.add(slot, this.#userHash(session.userId))
    return { outcome: 'created', ended }
  }

  async getSession (sessionId: string, now: number): Promise<SessionRecord | null> {
    const slot = this.#find(sessionId)
    // The idle expiry is never later than the absolute one: one comparison covers both.
    return slot === NONE || now >= this.#slab.number(slot, EXPIRES_AT) ? null : this.#slab.read(slot, sessionId)
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    if (isPast(request.deadline)) throw new StoreDeadlineError('rotate')
    // No await between the read and the write: in one process this is atomic.
    const slab = this.#slab
    const slot = this.#find(request.sessionId)
    if (slot === NONE) return { outcome: 'missing' }
    if (request.now >= slab.number(slot, EXPIRES_AT)) {
      const session = slab.read(slot, request.sessionId)
      this.#delete(slot)
      return { outcome: 'expired', session }
    }
    slab.prepareHash(request.presentedHash)
    if (slab.hashIs(slot, TOKEN, request.presentedHash)) {
      slab.promoteToken(slot)
      return { outcome: 'rotated', session: this.#renew(slot, request) }
    }
    if (slab.hashIs(slot, PREVIOUS, request.presentedHash)) {
      const rotatedAt = slab.rotatedAt(slot) as number
      if (request.grace > 0 && request.now - rotatedAt <= request.grace) {
        const graceUses = slab.number(slot, GRACE_USES)
        if (graceUses >= request.graceLimit) return { outcome: 'superseded', session: slab.read(slot, request.sessionId) }
        slab.setNumber(slot, GRACE_USES, graceUses + 1)
        return { outcome: 'grace', session: slab.read(slot, request.sessionId) }
      }
      if (request.now <= rotatedAt) return { outcome: 'superseded', session: slab.read(slot, request.sessionId) }
      return { outcome: 'recovered', session: this.#renew(slot, request) }
    }
    const session = slab.read(slot, request.sessionId)
    this.#revoke(session.id, { now: request.now, keepFor: request.keepRevocationFor })
    return { outcome: 'reused', session }
  }

  async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    const slot = this.#find(sessionId)
    if (slot === NONE || (userId !== undefined && this.#slab.userId(slot) !== userId)) return null
    const session = this.#slab.read(slot)
    this.#revoke(sessionId, context)
    return session
  }

  async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    const ids = this.#sessionsOf(userId).map((slot) => this.#slab.id(slot))
    for (const id of ids) this.#revoke(id, context)
    return ids
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    // The feed is in time order: walk back from the newest entry only as far as needed.
    let start = this.#feed.length
    while (start > 0 && (this.#feed[start - 1] as RevocationRecord).revokedAt >= since) start--
    return this.#feed.slice(start).map(feedRecord)
  }

  async updateUserClaims (userId: string, claims: Record<string, unknown>, context: RevocationContext): Promise<RevocationRecord[]> {
    // One string for all of the user's sessions.
    const packed = packClaims(claims)
    const entries: RevocationRecord[] = []
    for (const slot of this.#sessionsOf(userId)) {
      if (context.now >= this.#slab.number(slot, EXPIRES_AT)) continue
      const claimsVersion = this.#slab.claimsVersion(slot) + 1
      this.#slab.setClaims(slot, packed)
      this.#slab.setClaimsVersion(slot, claimsVersion)
      entries.push(this.#feedEntry({ sessionId: this.#slab.id(slot), revokedAt: context.now, claimsVersion }, context.keepFor))
    }
    return entries
  }

  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    this.#listeners.add(listener)
    return async () => { this.#listeners.delete(listener) }
  }

  /** No await: the look-up and the record are one atomic step in this process. */
  async useOnce (key: string, expiresAt: number, now: number): Promise<boolean> {
    return this.#proofIds.useOnce(key, expiresAt, now)
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    return this.#sessionsOf(userId)
      .filter((slot) => now < this.#slab.number(slot, EXPIRES_AT))
      .map((slot) => this.#slab.read(slot))
      .sort((a, b) => a.createdAt - b.createdAt)
  }

  async sweep (now: number): Promise<number> {
    this.#feed = this.#feed.filter((entry) => entry.until > now)
    let removed = 0
    let seen = 0
    // Slot by slot: a slot freed or filled while the sweep yields changes nothing of the walk.
    for (let slot = 0; slot < this.#slab.top; slot++) {
      if (!this.#slab.isLive(slot)) continue
      if (now >= this.#slab.number(slot, EXPIRES_AT)) {
        this.#delete(slot)
        removed++
      }
      if (++seen % this.#sweepBatchSize === 0) await yieldToEventLoop()
    }
    await this.#proofIds.sweep(now, this.#sweepBatchSize)
    return removed
  }

  async close (): Promise<void> {}

  /** A slot for a new session: the slab grows when full, and the indexes are rebuilt for it. */
  #take (): number {
    if (this.#slab.full) {
      this.#slab.grow()
      this.#ids.resize(this.#slab.capacity)
      this.#users.resize(this.#slab.capacity)
      // Oldest first, so each user's chain keeps its order (newest first).
      for (let slot = this.#slab.oldest; slot !== NONE; slot = this.#slab.newer(slot)) {
        this.#ids.add(slot, this.#slab.idHash(slot))
        this.#users.add(slot, this.#userHash(this.#slab.userId(slot)))
      }
    }
    return this.#slab.take()
  }

  #find (sessionId: string): number {
    let slot = this.#ids.first(this.#slab.prepareId(sessionId))
    while (slot !== NONE && !this.#slab.idIs(slot, sessionId)) slot = this.#ids.next(slot)
    return slot
  }

  #userHash (userId: string): number {
    return stringHash(userId, this.#seed)
  }

  /** The newest session of `userId`, or NONE. */
  #anySessionOf (userId: string): number {
    let slot = this.#users.first(this.#userHash(userId))
    while (slot !== NONE && this.#slab.userId(slot) !== userId) slot = this.#users.next(slot)
    return slot
  }

  /** The sessions of `userId`, oldest first. */
  #sessionsOf (userId: string): number[] {
    const slots: number[] = []
    for (let slot = this.#users.first(this.#userHash(userId)); slot !== NONE; slot = this.#users.next(slot)) {
      if (this.#slab.userId(slot) === userId) slots.push(slot)
    }
    return slots.reverse()
  }

  /** Makes `nextHash` current, as a rotation and a recovery both do, and returns the record. */
  #renew (slot: number, request: RotateRequest): SessionRecord {
    const slab = this.#slab
    slab.setHash(slot, TOKEN, request.nextHash)
    slab.setRotatedAt(slot, request.now)
    slab.setNumber(slot, GRACE_USES, 0)
    slab.setNumber(slot, LAST_USED_AT, request.now)
    let absoluteExpiresAt = slab.number(slot, ABSOLUTE_EXPIRES_AT)
    if (request.absoluteExpiresAt !== undefined && request.absoluteExpiresAt < absoluteExpiresAt) {
      absoluteExpiresAt = request.absoluteExpiresAt
      slab.setNumber(slot, ABSOLUTE_EXPIRES_AT, absoluteExpiresAt)
    }
    slab.setNumber(slot, EXPIRES_AT, Math.min(request.now + request.idleTtl, absoluteExpiresAt))
    slab.setClient(slot, request.userAgent, request.ip)
    if (request.authentication !== undefined) slab.setAuthentication(slot, request.authentication)
    if (request.claims !== undefined) {
      const claims = packClaims(request.claims)
      // Unchanged claims keep their string (maybe shared with the user's other sessions).
      if (claims !== slab.claims(slot)) slab.setClaims(slot, claims)
    }
    return slab.read(slot, request.sessionId, request.nextHash)
  }

  /**
   * With `limit`, room for `session` (docs/design.md, «Session caps»): null when the policy
   * refuses, else the records of the sessions ended for it, least recently used first.
   */
  #makeRoom (session: SessionRecord, limit: SessionLimit): SessionRecord[] | null {
    const slab = this.#slab
    const live = this.#sessionsOf(session.userId).filter((slot) => session.createdAt < slab.number(slot, EXPIRES_AT))
    if (live.length < limit.max) return []
    if (limit.policy === 'refuse') return null
    const ending = live.map((slot) => slab.read(slot))
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1))
      .slice(0, live.length + 1 - limit.max)
    for (const ended of ending) this.#revoke(ended.id, { now: session.createdAt, keepFor: limit.keepRevocationFor })
    return ending
  }

  #revoke (sessionId: string, context: RevocationContext): void {
    this.#deleteId(sessionId)
    this.#feedEntry({ sessionId, revokedAt: context.now }, context.keepFor)
  }

  /** Feeds `record`, kept `keepFor` ms, and pushes it to the listeners; returns it. */
  #feedEntry (record: RevocationRecord, keepFor: number): RevocationRecord {
    this.#feed.push({ ...record, until: record.revokedAt + keepFor })
    for (const listener of this.#listeners) listener({ ...record })
    return record
  }

  #deleteId (sessionId: string): void {
    const slot = this.#find(sessionId)
    if (slot !== NONE) this.#delete(slot)
  }

  #delete (slot: number): void {
    this.#ids.remove(slot, this.#slab.idHash(slot))
    this.#users.remove(slot, this.#userHash(this.#slab.userId(slot)))
    this.#slab.release(slot)
  }
}

/** A feed entry as callers see it: a `claimsVersion` only when it has one. */
function feedRecord ({ sessionId, revokedAt, claimsVersion }: RevocationRecord): RevocationRecord {
  return claimsVersion === undefined ? { sessionId, revokedAt } : { sessionId, revokedAt, claimsVersion }
}

function isPast (deadline: number | undefined): boolean {
  return deadline !== undefined && Date.now() > deadline
}

function positiveInteger (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`MemoryStore option "${name}" must be a positive integer, got ${String(value)}`)
  }
  return value
}
