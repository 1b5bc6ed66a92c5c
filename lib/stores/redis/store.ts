import { randomBytes } from 'node:crypto'
import {
  type CreateOptions, type CreateResult, DEFAULT_SWEEP_BATCH,
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, StoreDeadlineError,
  type TokenStore
} from '../types.js'
import { type Connection, connectionFor, ignore, nodeRedisConnection, type RedisClientLike } from './clients.js'
import { embeddedTag, RedisKeys, ttl, userTag } from './keys.js'
import { decodeBucket } from './bucket.js'
import { encodeAuthExtra, encodeClient, encodePacked, packable, taggedHash } from './packed.js'
import { decodeRecord, encodeRecord, type RecordFormat } from './record.js'
import { listenForRevocations, readRevocations, recordClaimsChanges, recordRevocations, sweepRevocations } from './feed.js'
import { runScript, SCRIPTS } from './scripts.js'
import { warnIfEvicting } from './settings.js'

export interface RedisStoreOptions {
  /**
   * A client the app already has: node-redis 5 or 6 (`createClient()` or `createCluster()`;
   * connected on first use if it is not yet) or ioredis (`new Redis()` or `new Cluster()`). The
   * store never closes it unless `closeClient` is set. Give either `client` or `url`.
   */
  client?: RedisClientLike
  /**
   * A Redis URL (`redis://…`, `rediss://…`): the store creates its own node-redis client (the
   * `redis` package must be installed) and closes it in `close()`.
   */
  url?: string
  /**
   * Start of every key and of the pub/sub channel, so several apps (or tests) can share a Redis.
   * Must not contain `{` or `}` (they would break the cluster hash tags).
   * @default 'fta:'
   */
  prefix?: string
  /**
   * Close the `client` you passed when the store is closed.
   * @default false
   */
  closeClient?: boolean
  /**
   * Keys examined per SCAN step and sessions handled per script while sweeping, so no sweep
   * command blocks Redis for long.
   * @default 1000
   */
  sweepBatchSize?: number
  /**
   * The format new session records are written in: `'packed'`, binary and about 30% smaller, or
   * `'json'`, the format of earlier releases, which cannot read packed records. Records of
   * either format are always read, and a rotation keeps a record's format. Deploy with `'json'`
   * while instances of an earlier release still share the Redis; switch to `'packed'` once every
   * instance runs this one (docs/stores.md, «Upgrading»).
   * @default 'packed'
   */
  recordFormat?: RecordFormat
}

const DEFAULT_PREFIX = 'fta:'
/** Attempts of `revokeUserSessions` when the user's index keeps changing under it. */
const REVOKE_ALL_ATTEMPTS = 5

function strings (reply: unknown): string[] {
  return reply as string[]
}

type RotateOutcome = 'rotated' | 'recovered' | 'grace' | 'superseded' | 'reused' | 'expired'

/** A deadline as the scripts take it: '' for none. */
function deadlineArg (deadline: number | undefined): string {
  return deadline === undefined ? '' : String(deadline)
}

/**
 * The production store for Redis, standalone or Cluster. Every change to a user's sessions is
 * one Lua script in that user's hash slot; the revocation feed lives in a slot of its own and
 * is written right after (see feed.ts). The key layout is in keys.ts, the Redis settings it
 * needs in settings.ts.
 */
export class RedisStore implements TokenStore {
  readonly #keys: RedisKeys
  readonly #sweepBatchSize: number
  readonly #recordFormat: RecordFormat
  readonly #url: string | undefined
  readonly #closeClient: boolean
  #connection: Connection | undefined
  #ready: Promise<Connection> | undefined
  readonly #subscriptions = new Set<() => Promise<void>>()
  #closed = false

  constructor (options: RedisStoreOptions) {
    if ((options.client === undefined) === (options.url === undefined)) {
      throw new TypeError('RedisStore needs exactly one of the options "client" and "url"')
    }
    const prefix = options.prefix ?? DEFAULT_PREFIX
    if (typeof prefix !== 'string' || /[{}]/.test(prefix)) {
      throw new TypeError(`RedisStore option "prefix" must be a string without "{" or "}", got ${JSON.stringify(prefix)}`)
    }
    const sweepBatchSize = options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH
    if (!Number.isSafeInteger(sweepBatchSize) || sweepBatchSize <= 0) {
      throw new TypeError(`RedisStore option "sweepBatchSize" must be a positive integer, got ${String(sweepBatchSize)}`)
    }
    const recordFormat = options.recordFormat ?? 'packed'
    if (recordFormat !== 'packed' && recordFormat !== 'json') {
      throw new TypeError(`RedisStore option "recordFormat" must be 'packed' or 'json', got ${JSON.stringify(recordFormat)}`)
    }
    this.#recordFormat = recordFormat
    this.#keys = new RedisKeys(prefix)
    this.#sweepBatchSize = sweepBatchSize
    this.#url = options.url
    this.#closeClient = options.url !== undefined || options.closeClient === true
    if (options.client !== undefined) this.#connection = connectionFor(options.client)
  }

  /**
   * A new session id for `userId` that names its user's slot, so `rotate` and `revokeSession`
   * need no pointer lookup: the tag, then 16 random bytes, all base64url (30 characters). Any
   * other id works too (see keys.ts).
   */
  sessionIdFor (userId: string): string {
    return userTag(userId) + randomBytes(16).toString('base64url')
  }

  async createSession (session: SessionRecord, options: CreateOptions = {}): Promise<CreateResult> {
    const redis = await this.#use()
    const tag = userTag(session.userId)
    if (embeddedTag(session.id) !== tag) {
      // Written first: a failure here leaves no session behind, and a crash (or a late script)
      // after it leaves a pointer to nothing, which answers `missing` and expires with the session.
      const pointer = this.#keys.pointer(session.id)
      await redis.send(pointer, ['SET', pointer, tag, 'PX', ttl(session.absoluteExpiresAt, session.lastUsedAt)])
    }
    // Packed, it holds its id: it may become an entry of the user's bucket (bucket.ts).
    const packed = this.#recordFormat === 'packed' && packable(session)
    const record = packed ? encodePacked(session, tag) : encodeRecord(session, 'json')
    const limit = options.sessionLimit
    const args = [session.id, record, String(session.expiresAt), String(session.lastUsedAt), deadlineArg(options.deadline), packed ? '1' : '0',
      limit === undefined ? '' : String(limit.max), limit?.policy ?? '', String(session.createdAt), session.userId]
    const reply = await runScript(redis, SCRIPTS.create, this.#sessionKeys(tag, session.id), args, true) as Buffer[]
    const outcome = String(reply[0])
    if (outcome === 'late') throw new StoreDeadlineError('createSession')
    if (outcome === 'refused') {
      await this.#dropPointers(redis, tag, [session.id])
      return { outcome }
    }
    const ended: SessionRecord[] = []
    for (let i = 1; i < reply.length; i += 2) ended.push(decodeRecord(String(reply[i]), reply[i + 1] as Buffer))
    if (limit !== undefined && ended.length > 0) {
      const endedIds = ended.map((s) => s.id)
      await recordRevocations(redis, this.#keys, endedIds, { now: session.createdAt, keepFor: limit.keepRevocationFor })
      await this.#dropPointers(redis, tag, endedIds)
    }
    return { outcome: 'created', ended }
  }

  async getSession (sessionId: string, now: number): Promise<SessionRecord | null> {
    const redis = await this.#use()
    const found = await this.#inSessionSlot(redis, sessionId, async (tag) => {
      const key = this.#keys.record(tag, sessionId)
      // One slot, so one MGET even on a cluster: the record's own key, else the bucket.
      const [raw, bucket] = await redis.send(key, ['MGET', key, this.#keys.bucket(tag)], true) as Array<Buffer | null>
      if (raw !== null && raw !== undefined) return decodeRecord(sessionId, raw)
      return (bucket === null || bucket === undefined ? [] : decodeBucket(bucket, tag)).find((entry) => entry.id === sessionId) ?? null
    })
    const session = found?.reply
    return session !== undefined && now < session.expiresAt && now < session.absoluteExpiresAt ? session : null
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    const redis = await this.#use()
    const { sessionId, now } = request
    const update = JSON.stringify([request.userAgent, request.ip, request.claims === undefined ? null : JSON.stringify(request.claims)])
    const { authentication, absoluteExpiresAt } = request
    // Hashes, client and authentication as both formats hold them: the script rewrites the record in its own.
    const args = [sessionId, request.presentedHash, request.nextHash, taggedHash(request.presentedHash), taggedHash(request.nextHash),
      String(now), String(now + request.idleTtl), String(request.grace), String(request.graceLimit), update,
      encodeClient(request.userAgent, request.ip), deadlineArg(request.deadline), absoluteExpiresAt === undefined ? '' : String(absoluteExpiresAt),
      authentication === undefined ? '' : JSON.stringify(authentication), String(authentication?.time ?? ''),
      authentication === undefined ? '' : encodeAuthExtra(authentication)]
    const found = await this.#inSessionSlot(redis, sessionId, async (tag) =>
      await runScript(redis, SCRIPTS.rotate, this.#sessionKeys(tag, sessionId), args, true) as [Buffer, Buffer] | null)
    if (found === null) return { outcome: 'missing' }
    const outcome = String(found.reply[0]) as RotateOutcome | 'late'
    const raw = found.reply[1]
    if (outcome === 'late') throw new StoreDeadlineError('rotate')
    if (outcome === 'reused') await recordRevocations(redis, this.#keys, [sessionId], { now, keepFor: request.keepRevocationFor })
    if (outcome === 'reused' || outcome === 'expired') await this.#dropPointers(redis, found.tag, [sessionId])
    return { outcome, session: decodeRecord(sessionId, raw) }
  }

  async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    const redis = await this.#use()
    const args = [sessionId, userId === undefined ? '0' : '1', userId ?? '', String(context.now)]
    const revoke = async (tag: string): Promise<Buffer | null> =>
      await runScript(redis, SCRIPTS.revoke, this.#sessionKeys(tag, sessionId), args, true) as Buffer | null
    // A record lives in its owner's slot: with the owner given, that is the only place to look.
    const found = userId === undefined
      ? await this.#inSessionSlot(redis, sessionId, revoke)
      : await this.#inSlot(userTag(userId), revoke)
    if (found === null) return null
    await recordRevocations(redis, this.#keys, [sessionId], context)
    await this.#dropPointers(redis, found.tag, [sessionId])
    return decodeRecord(sessionId, found.reply)
  }

  async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    const redis = await this.#use()
    const tag = userTag(userId)
    const index = this.#keys.index(tag)
    for (let attempt = 1; ; attempt++) {
      const ids = strings(await redis.send(index, ['ZRANGE', index, '0', '-1']))
      const revoked = await runScript(redis, SCRIPTS.revokeAll, [index, this.#keys.bucket(tag), ...ids.map((id) => this.#keys.record(tag, id))],
        [userId, String(context.now), ...ids]) as string[] | null
      if (revoked !== null) {
        await recordRevocations(redis, this.#keys, revoked, context)
        await this.#dropPointers(redis, tag, revoked)
        return revoked
      }
      if (attempt === REVOKE_ALL_ATTEMPTS) {
        throw new Error(`RedisStore: the sessions of a user kept changing during ${REVOKE_ALL_ATTEMPTS} attempts to revoke them all`)
      }
    }
  }

  async updateUserClaims (userId: string, claims: Record<string, unknown>, context: RevocationContext): Promise<RevocationRecord[]> {
    const redis = await this.#use()
    const tag = userTag(userId)
    const flat = await runScript(redis, SCRIPTS.updateClaims, [this.#keys.index(tag), this.#keys.bucket(tag)],
      [userId, String(context.now), JSON.stringify(claims), this.#keys.record(tag, '')]) as Array<string | number>
    const changes: RevocationRecord[] = []
    for (let i = 0; i < flat.length; i += 2) changes.push({ sessionId: String(flat[i]), revokedAt: context.now, claimsVersion: Number(flat[i + 1]) })
    await recordClaimsChanges(redis, this.#keys, changes, context)
    return changes
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    const redis = await this.#use()
    const tag = userTag(userId)
    const index = this.#keys.index(tag)
    const ids = strings(await redis.send(index, ['ZRANGE', index, '0', '-1']))
    // One slot, so one MGET even on a cluster. A snapshot: records may change right after.
    const bucket = this.#keys.bucket(tag)
    const [entries, ...raws] = await redis.send(bucket, ['MGET', bucket, ...ids.map((id) => this.#keys.record(tag, id))], true) as Array<Buffer | null>
    const found = entries === null || entries === undefined ? [] : decodeBucket(entries, tag)
    for (const [i, raw] of raws.entries()) if (raw !== null) found.push(decodeRecord(ids[i] as string, raw))
    const sessions = found.filter((session) => session.userId === userId && now < session.expiresAt)
    return sessions.sort((a, b) => a.createdAt - b.createdAt)
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    const redis = await this.#use()
    return await readRevocations(redis, this.#keys, since)
  }

  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    const redis = await this.#use()
    const stop = await listenForRevocations(redis, this.#keys, listener)
    this.#subscriptions.add(stop)
    return async () => {
      if (this.#subscriptions.delete(stop)) await stop()
    }
  }

  /**
   * One `SET NX` (keys.ts), so Redis answers OK to the first call only, across every process;
   * a single key, so any node of a cluster. Its TTL is relative (from `now`, as every TTL here)
   * and drops the key: the sweep has nothing to do for proofs.
   */
  async useOnce (key: string, expiresAt: number, now: number): Promise<boolean> {
    const redis = await this.#use()
    const name = this.#keys.proofId(key)
    return await redis.send(name, ['SET', name, '1', 'PX', String(Math.max(Math.ceil(expiresAt - now), 1)), 'NX']) === 'OK'
  }

  /**
   * Redis deletes records by their TTL on its own; this removes what TTLs cannot: records
   * expired by the caller's clock before Redis's (the contract's `now`), their index entries,
   * entries left by records that expired by TTL, expired sessions in a bucket that lives on for
   * a longer-lived one (bucket.ts), and feed entries past their keep time. It walks
   * each master's keys with SCAN, `sweepBatchSize` at a time, so no command blocks Redis long;
   * the walk is O(keys), so with many sessions a longer `sweepInterval` costs nothing in safety.
   */
  async sweep (now: number): Promise<number> {
    const redis = await this.#use()
    const batch = String(this.#sweepBatchSize)
    const pattern = this.#keys.sweepPattern()
    let removed = 0
    for (const send of await redis.masters()) {
      let cursor = '0'
      do {
        const [next, found] = await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', batch]) as [string, string[]]
        cursor = next
        const counts = await Promise.all(found.map(async (key) =>
          this.#keys.isBucket(key) ? await this.#sweepBucket(redis, key, now) : await this.#sweepIndex(redis, key, now)))
        for (const count of counts) removed += count
      } while (cursor !== '0')
    }
    await sweepRevocations(redis, this.#keys, now, this.#sweepBatchSize)
    return removed
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const subscriptions = [...this.#subscriptions]
    this.#subscriptions.clear()
    await Promise.all(subscriptions.map(async (stop) => await stop()))
    if (this.#closeClient && this.#connection !== undefined) await this.#connection.close()
  }

  /** The connection, connected (once) on first use. */
  async #use (): Promise<Connection> {
    if (this.#closed) throw new Error('RedisStore is closed')
    this.#ready ??= this.#open().catch((error: unknown) => {
      this.#ready = undefined // the next call tries again
      throw error
    })
    return await this.#ready
  }

  async #open (): Promise<Connection> {
    if (this.#connection === undefined) {
      const { createClient } = await import('redis')
      // Closed while the module loaded: open nothing that close() would no longer see.
      if (this.#closed) throw new Error('RedisStore is closed')
      // Commands fail at once while disconnected (the plugin answers 503) instead of queueing.
      const client = createClient({ url: this.#url, disableOfflineQueue: true })
      // Failed commands reject on their own; an 'error' event without a listener would crash the process.
      client.on('error', ignore)
      this.#connection = nodeRedisConnection(client)
    }
    await this.#connection.connect()
    await warnIfEvicting(this.#connection)
    return this.#connection
  }

  async #inSlot<T> (tag: string, operation: (tag: string) => Promise<T | null>): Promise<{ tag: string, reply: T } | null> {
    const reply = await operation(tag)
    return reply === null ? null : { tag, reply }
  }

  /**
   * Runs `operation` in the slot of a session known only by its id: the slot its id names
   * (`sessionIdFor`), else the one its pointer names. `operation` answers null for "not here".
   */
  async #inSessionSlot<T> (redis: Connection, sessionId: string, operation: (tag: string) => Promise<T | null>): Promise<{ tag: string, reply: T } | null> {
    const guess = embeddedTag(sessionId)
    if (guess !== undefined) {
      const found = await this.#inSlot(guess, operation)
      if (found !== null) return found
    }
    const pointer = this.#keys.pointer(sessionId)
    const tag = await redis.send(pointer, ['GET', pointer]) as string | null
    if (tag === null) return null
    return await this.#inSlot(tag, operation)
  }

  /** The keys of a session's scripts: its record key, its user's index and bucket. */
  #sessionKeys (tag: string, sessionId: string): string[] {
    return [this.#keys.record(tag, sessionId), this.#keys.index(tag), this.#keys.bucket(tag)]
  }

  async #sweepBucket (redis: Connection, bucket: string, now: number): Promise<number> {
    const ids = strings(await runScript(redis, SCRIPTS.sweepBucket, [bucket], [String(now)]))
    await this.#dropPointers(redis, this.#keys.tagOfIndex(bucket), ids)
    return ids.length
  }

  async #sweepIndex (redis: Connection, index: string, now: number): Promise<number> {
    const tag = this.#keys.tagOfIndex(index)
    let removed = 0
    for (;;) {
      const ids = strings(await redis.send(index, ['ZRANGEBYSCORE', index, '-inf', String(now), 'LIMIT', '0', String(this.#sweepBatchSize)]))
      if (ids.length === 0) return removed
      const count = await runScript(redis, SCRIPTS.sweepIndex, [index, ...ids.map((id) => this.#keys.record(tag, id))], [String(now), ...ids]) as number
      await this.#dropPointers(redis, tag, ids)
      removed += count
      if (ids.length < this.#sweepBatchSize) return removed
    }
  }

  /**
   * Deletes the pointers of deleted sessions. Best effort: a pointer left behind points to
   * nothing (`missing`) and expires with its session's absolute lifetime anyway.
   */
  async #dropPointers (redis: Connection, tag: string, sessionIds: string[]): Promise<void> {
    const pointers = sessionIds.filter((id) => embeddedTag(id) !== tag).map((id) => this.#keys.pointer(id))
    await Promise.all(pointers.map(async (pointer) => await redis.send(pointer, ['DEL', pointer]))).catch(ignore)
  }
}
