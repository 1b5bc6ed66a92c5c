import { createHash, randomBytes } from 'node:crypto'
import {
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, StoreDeadlineError,
  type TokenStore, type WriteOptions
} from './types.js'

/*
 * RedisStore: sessions in Redis (standalone or Cluster), shared by every process of an app.
 *
 * Key layout (P = prefix, T = the user's tag: 8 base64url characters of SHA-256(userId)):
 *   P{T}:s:<sessionId>   string, the session record (JSON array, see `encodeRecord`); TTL: its expiresAt
 *   P{T}:i               sorted set, the sessions of the user(s) with tag T, scored by expiresAt;
 *                        TTL: its longest-lived session
 *   Pp:<sessionId>       string, T: the pointer from a session id to its user's slot (see below);
 *                        TTL: the session's absoluteExpiresAt
 *   P{feed}:at           sorted set, the revocation feed: session id scored by revokedAt
 *   P{feed}:until        sorted set, the same ids scored by when they may leave the feed
 *   channel P revocations   pub/sub: every revocation, pushed as it is recorded
 *
 * `{T}` is a Redis Cluster hash tag: a user's records and index share one hash slot, so every
 * change to them is one Lua script, atomic, and never a CROSSSLOT error. The tag is a digest
 * rather than the user id itself, so any user id gives a short key with no `{` or `}` in it.
 *
 * Finding the slot from a session id alone: `rotate` and `revokeSession` get a session id and no
 * user id. Ids from `sessionIdFor(userId)` (the plugin asks for them) start with their user's tag,
 * so those calls go straight to the slot, one round trip. Any other id (one a caller made itself)
 * gets a pointer key written at login: one GET more per call and ~70 bytes per session. The
 * pointer is written once and never changes, so reading it outside the script races with
 * nothing: the script re-reads the record itself and answers `missing` if it has gone. (A pointer
 * key read in the script instead would be a second slot: CROSSSLOT on a cluster.)
 *
 * Redis settings this store needs, and why:
 * - `maxmemory-policy noeviction` (or no `maxmemory` limit). Every key here has a TTL, so
 *   `volatile-*` policies may evict any of them, and `allkeys-*` too: an evicted record only logs
 *   its user out, but an evicted user index makes logout-everywhere miss sessions, and an evicted
 *   feed entry lets other processes keep accepting a revoked session's access tokens. With
 *   noeviction a full Redis refuses writes instead: the plugin answers 503 and issues nothing
 *   (docs/design.md, «Fail closed»). The store warns (`process.emitWarning`) at first use when it sees another policy.
 * - Persistence (`appendonly yes`, with `appendfsync everysec` or stricter) or a replica that is
 *   promoted on failure: a Redis restarted from an old snapshot (or empty) forgets rotations, so
 *   a refresh token already spent could be accepted again, and forgets revocations.
 * - Redis 6.0 or later (SET KEEPTTL; tested on 7.0); EVAL/EVALSHA and, for the push feed,
 *   PUBLISH/SUBSCRIBE allowed (ACLs); `INFO` too for the eviction check, which is skipped without it.
 *
 * Times: TTLs are computed from the caller's `now` (relative PX, never PXAT; at creation the
 * record's lastUsedAt), so they agree with the times the contract passes in even when the app's
 * clock and Redis's differ. The scripts still compare times themselves. Once Redis has expired a
 * record, calls answer `missing` rather than `expired`, as after a sweep (the plugin has refused
 * the refresh token by its own `exp` by then).
 * The one place the store reads Redis's clock is a write's deadline (types.ts): CREATE and ROTATE
 * read `TIME` first thing, so the clock is read when the change would be applied, however long
 * the command waited in a socket, a queue or a frozen Redis, and a late script writes nothing.
 * (Redis ≥ 5 replicates a script's effects, not the script, so TIME before a write is allowed.)
 * The deadline is on the app's clock: a Redis clock ahead of it refuses in-time changes a little
 * early (a 503, nothing applied); one behind it widens the window in which a change the plugin
 * answered 503 still applies, and then the client's retry with the token it kept finds it the
 * predecessor of an unused successor: `grace` or `recovered`, never theft.
 */

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
}

/** A node-redis 5/6 client from `createClient()`, as far as this store uses it. */
export interface NodeRedisClientLike {
  readonly isOpen: boolean
  readonly isReady: boolean
  connect (): Promise<unknown>
  sendCommand (args: string[]): Promise<unknown>
  duplicate (): NodeRedisClientLike
  subscribe (channel: string, listener: (message: string) => void): Promise<unknown>
  on (event: 'error', listener: (error: Error) => void): unknown
  close (): Promise<unknown>
  destroy (): unknown
}

/** A node-redis 5/6 cluster client from `createCluster()`, as far as this store uses it. */
export interface NodeRedisClusterLike {
  readonly isOpen: boolean
  readonly masters: readonly object[]
  connect (): Promise<unknown>
  sendCommand (firstKey: string | undefined, isReadonly: boolean | undefined, args: string[]): Promise<unknown>
  nodeClient (node: object): Promise<{ sendCommand (args: string[]): Promise<unknown> }>
  subscribe (channel: string, listener: (message: string | Buffer) => void): Promise<unknown>
  unsubscribe (channel: string, listener: (message: string | Buffer) => void): Promise<unknown>
  close (): Promise<unknown>
}

/** An ioredis 5/6 client (`Redis` or `Cluster`), as far as this store uses it. */
export interface IoredisLike {
  readonly isCluster: boolean
  readonly status: string
  call (command: string, args: string[]): Promise<unknown>
  nodes? (role: 'master'): IoredisLike[]
  duplicate (): IoredisSubscriberLike
  quit (): Promise<unknown>
}

interface IoredisSubscriberLike {
  subscribe (channel: string): Promise<unknown>
  on (event: 'message', listener: (channel: string, message: string) => void): unknown
  on (event: 'error', listener: (error: Error) => void): unknown
  quit (): Promise<unknown>
  disconnect (): unknown
}

export type RedisClientLike = NodeRedisClientLike | NodeRedisClusterLike | IoredisLike

const DEFAULT_PREFIX = 'fta:'
const DEFAULT_SWEEP_BATCH = 1000
/** Characters of the user tag: 48 bits, so two users sharing a slot tag is rare (and harmless). */
const TAG_LENGTH = 8
/** Length of an id from `sessionIdFor`: the tag, then 16 random bytes in base64url. */
const TAGGED_ID_LENGTH = TAG_LENGTH + 22
/** Attempts of `revokeUserSessions` when the user's index keeps changing under it. */
const REVOKE_ALL_ATTEMPTS = 5
/**
 * Shortest TTL given to a key (ms): a record created or rotated right at its expiry stays
 * readable for a moment, so the caller gets `expired` (as from any store) rather than `missing`.
 */
const MIN_TTL = 1000

// ---------------------------------------------------------------------------------------------
// Lua. Each script touches only the keys passed in KEYS, all in one hash slot (cluster-safe).
// A record is a JSON array of strings and nulls, numbers written as decimal strings: Lua's cjson
// would print numbers with 14 significant digits, so numbers are never re-encoded as numbers,
// and claims are stored as their JSON text, which Lua never parses.
// ---------------------------------------------------------------------------------------------

/** Shared by every session script: the record's field positions and the TTL helpers. */
const LUA_PRELUDE = `
local USER, CLAIMS, CREATED, LAST_USED, EXPIRES, ABSOLUTE = 1, 2, 3, 4, 5, 6
local TOKEN, PREVIOUS, ROTATED, GRACE_USES, AGENT, IP = 7, 8, 9, 10, 11, 12

-- True once Redis's clock (ms) has passed the caller's deadline ('' for none): the caller has
-- answered 503, so the change must not be applied.
local function late(deadline)
  if deadline == '' then return false end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) > tonumber(deadline)
end

-- Milliseconds from now until at, as the integer PEXPIRE wants, never below the minimum.
local function ttl(at, now)
  return math.max(math.ceil(tonumber(at) - tonumber(now)), ${MIN_TTL})
end

-- An index lives as long as its longest-lived session (an empty sorted set is already gone).
local function expireIndex(index, now)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', index, ttl(last[2], now)) end
end

local function deleteSession(key, index, id, now)
  redis.call('DEL', key)
  redis.call('ZREM', index, id)
  expireIndex(index, now)
end
`

/**
 * Stores a record and adds it to its user's index; returns 1, or 0 when late (nothing stored).
 * KEYS: record, index. ARGV: session id, record, expiresAt, now (the record's lastUsedAt),
 * deadline ('' for none).
 */
const CREATE = `${LUA_PRELUDE}
if late(ARGV[5]) then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl(ARGV[3], ARGV[4]))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
expireIndex(KEYS[2], ARGV[4])
return 1
`

/**
 * The rotate state machine of types.ts (`RotateResult`), step for step as MemoryStore.rotate:
 * the deadline first (a late call changes nothing, not even an expired record), then expiry,
 * the current hash, the predecessor (grace, superseded or recovered), and anything else is
 * reuse. Returns {'late'}, false (missing) or {outcome, record}, where the record is the new one
 * for rotated/recovered/grace and the one as it was otherwise.
 * KEYS: record, index. ARGV: session id, presented hash, next hash, now, now + idleTtl, grace,
 * graceLimit, JSON [userAgent, ip, claims JSON text or null to keep the stored claims],
 * deadline ('' for none).
 */
const ROTATE = `${LUA_PRELUDE}
if late(ARGV[9]) then return {'late'} end
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local s = cjson.decode(raw)
local now = tonumber(ARGV[4])
if now >= tonumber(s[EXPIRES]) then
  deleteSession(KEYS[1], KEYS[2], ARGV[1], now)
  return {'expired', raw}
end

-- The next hash becomes current, as a rotation and a recovery both do (they differ in PREVIOUS).
local function renew(outcome)
  local client = cjson.decode(ARGV[8])
  s[TOKEN] = ARGV[3]
  s[ROTATED] = ARGV[4]
  s[GRACE_USES] = '0'
  s[LAST_USED] = ARGV[4]
  if tonumber(ARGV[5]) < tonumber(s[ABSOLUTE]) then s[EXPIRES] = ARGV[5] else s[EXPIRES] = s[ABSOLUTE] end
  s[AGENT] = client[1]
  s[IP] = client[2]
  if client[3] ~= cjson.null then s[CLAIMS] = client[3] end
  raw = cjson.encode(s)
  redis.call('SET', KEYS[1], raw, 'PX', ttl(s[EXPIRES], now))
  redis.call('ZADD', KEYS[2], 'XX', s[EXPIRES], ARGV[1])
  expireIndex(KEYS[2], now)
  return {outcome, raw}
end

if ARGV[2] == s[TOKEN] then
  s[PREVIOUS] = s[TOKEN]
  return renew('rotated')
end
if ARGV[2] == s[PREVIOUS] then
  -- Its successor was never used: a retry of a response that never arrived, not a theft.
  local grace, rotatedAt = tonumber(ARGV[6]), tonumber(s[ROTATED])
  if grace > 0 and now - rotatedAt <= grace then
    local uses = tonumber(s[GRACE_USES])
    if uses >= tonumber(ARGV[7]) then return {'superseded', raw} end
    s[GRACE_USES] = tostring(uses + 1)
    raw = cjson.encode(s)
    redis.call('SET', KEYS[1], raw, 'KEEPTTL')
    return {'grace', raw}
  end
  -- No successor but the current one can be minted at its rotation's ms (or a clock behind it).
  if now <= rotatedAt then return {'superseded', raw} end
  return renew('recovered')
end
deleteSession(KEYS[1], KEYS[2], ARGV[1], now)
return {'reused', raw}
`

/**
 * Deletes one session, only if it belongs to the given user when one is given. Returns the
 * record as it was, or false when nothing was deleted.
 * KEYS: record, index. ARGV: session id, '1' to check the owner or '0', owner, now.
 */
const REVOKE = `${LUA_PRELUDE}
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
if ARGV[2] == '1' and cjson.decode(raw)[USER] ~= ARGV[3] then return false end
deleteSession(KEYS[1], KEYS[2], ARGV[1], ARGV[4])
return raw
`

/**
 * Deletes every session of a user listed in the index. The caller read the index just before
 * and passes those ids (and their keys, so the script touches only declared keys); if the
 * index changed meanwhile (a login, a logout), nothing is done and false tells the caller to
 * read again, so the whole change is one atomic step over exactly the sessions there are.
 * An id whose record already expired (TTL) is only dropped from the index.
 * KEYS: index, then the records of ARGV[3..]. ARGV: user id, now, session ids...
 */
const REVOKE_ALL = `${LUA_PRELUDE}
if redis.call('ZCARD', KEYS[1]) ~= #ARGV - 2 then return false end
for i = 3, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then return false end
end
local revoked = {}
for i = 3, #ARGV do
  local raw = redis.call('GET', KEYS[i - 1])
  if not raw then
    redis.call('ZREM', KEYS[1], ARGV[i])
  elseif cjson.decode(raw)[USER] == ARGV[1] then
    redis.call('DEL', KEYS[i - 1])
    redis.call('ZREM', KEYS[1], ARGV[i])
    revoked[#revoked + 1] = ARGV[i]
  end
end
expireIndex(KEYS[1], ARGV[2])
return revoked
`

/**
 * The sweep of one index: the caller read the entries whose score (expiresAt) had passed; each
 * is checked again against its record, since a rotation may have renewed it meanwhile. Expired
 * records are deleted; entries whose record is already gone (TTL) are dropped. Returns how many
 * sessions left the index.
 * KEYS: index, then the records of ARGV[2..]. ARGV: now, session ids...
 */
const SWEEP_INDEX = `${LUA_PRELUDE}
local now = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local raw = redis.call('GET', KEYS[i])
  local expiresAt = raw and tonumber(cjson.decode(raw)[EXPIRES])
  if raw and now < expiresAt then
    redis.call('ZADD', KEYS[1], 'XX', expiresAt, ARGV[i])
  else
    if raw then redis.call('DEL', KEYS[i]) end
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
expireIndex(KEYS[1], now)
return removed
`

/**
 * Records revocations in the feed and publishes them. The feed keys live as long as their
 * longest-kept entry.
 * KEYS: feed by revokedAt, feed by keep-until. ARGV: revokedAt, keep-until, channel, message,
 * session ids...
 */
const FEED_ADD = `
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = math.max(math.ceil(tonumber(last[2]) - tonumber(ARGV[1])), ${MIN_TTL})
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
`

/**
 * Reads the feed from `since` on, oldest first, as a flat {id, revokedAt, ...} list (a script,
 * so the reply has this shape whatever protocol the client speaks).
 * KEYS: feed by revokedAt. ARGV: since.
 */
const FEED_READ = `
return redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'WITHSCORES')
`

/**
 * Drops up to a batch of feed entries whose keep time has passed; returns how many went.
 * KEYS: feed by revokedAt, feed by keep-until. ARGV: now, batch size.
 */
const FEED_SWEEP = `
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #old > 0 then
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
`

/** A Lua script and its SHA-1: sent as EVALSHA, and as EVAL only when Redis does not know it. */
class LuaScript {
  readonly sha: string
  constructor (readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex')
  }
}

const SCRIPTS = {
  create: new LuaScript(CREATE),
  rotate: new LuaScript(ROTATE),
  revoke: new LuaScript(REVOKE),
  revokeAll: new LuaScript(REVOKE_ALL),
  sweepIndex: new LuaScript(SWEEP_INDEX),
  feedAdd: new LuaScript(FEED_ADD),
  feedRead: new LuaScript(FEED_READ),
  feedSweep: new LuaScript(FEED_SWEEP)
}

// ---------------------------------------------------------------------------------------------
// Clients: node-redis and ioredis behind one small interface, told apart by their methods, so
// the store imports neither library at load time.
// ---------------------------------------------------------------------------------------------

type Send = (args: string[]) => Promise<unknown>

/** What the store needs from a client, whatever its library. */
interface Connection {
  /** Sends one command; `key` routes it to its node in a cluster (`undefined`: any node). */
  send (key: string | undefined, args: string[]): Promise<unknown>
  /** A sender per master, for commands about one node's own data (SCAN, INFO). */
  masters (): Promise<Send[]>
  /** Subscribes on a connection of its own; resolves with the unsubscribe function. */
  subscribe (channel: string, onMessage: (message: string) => void): Promise<() => Promise<void>>
  /** Makes the client usable (node-redis clients need `connect()`; others connect by themselves). */
  connect (): Promise<void>
  close (): Promise<void>
}

function ignore (): void {}

/**
 * Most time a subscriber connection may take to subscribe. While Redis is down a client keeps
 * reconnecting and `connect()` never settles: the attempt is given up (its connection destroyed)
 * and the plugin retries later, instead of a pending connection that keeps the process alive.
 */
const SUBSCRIBE_TIMEOUT = 5000

async function withinSubscribeTimeout (attempt: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis subscription not ready within ${SUBSCRIBE_TIMEOUT} ms`)), SUBSCRIBE_TIMEOUT)
  })
  attempt.catch(ignore) // a late failure of an abandoned attempt is nobody's to handle
  await Promise.race([attempt, deadline]).finally(() => clearTimeout(timer))
}

function connectionFor (client: RedisClientLike): Connection {
  if ('isCluster' in client && typeof client.call === 'function') return ioredisConnection(client)
  if ('masters' in client && typeof client.nodeClient === 'function') return nodeRedisClusterConnection(client)
  if (typeof (client as Partial<NodeRedisClientLike>).sendCommand === 'function') return nodeRedisConnection(client as NodeRedisClientLike)
  throw new TypeError('RedisStore option "client" must be a node-redis client or cluster, or an ioredis client or cluster')
}

/**
 * A command sent while the connection is down would wait in the client's offline queue and run
 * after the plugin has already answered 503 (a login that creates a session nobody holds, a
 * refresh that rotates away the token the client kept): refuse it at once instead, whatever
 * the app's client options say.
 */
function notConnected (): Error {
  return new Error('Redis connection is not ready')
}

function nodeRedisConnection (client: NodeRedisClientLike): Connection {
  const send: Send = async (args) => {
    if (!client.isReady) throw notConnected()
    return await client.sendCommand(args)
  }
  return {
    send: async (_key, args) => await send(args),
    masters: async () => [send],
    async subscribe (channel, onMessage) {
      // A subscribed RESP2 connection can run nothing else: listen on a duplicate.
      const subscriber = client.duplicate()
      subscriber.on('error', ignore)
      try {
        await withinSubscribeTimeout((async () => {
          await subscriber.connect()
          await subscriber.subscribe(channel, onMessage)
        })())
      } catch (error) {
        subscriber.destroy()
        throw error
      }
      return async () => { await subscriber.close() }
    },
    async connect () {
      if (!client.isOpen) await client.connect()
    },
    async close () {
      // close() waits for replies still due; a client still trying to connect has none to wait for.
      if (client.isReady) await client.close()
      else client.destroy()
    }
  }
}

function nodeRedisClusterConnection (cluster: NodeRedisClusterLike): Connection {
  return {
    send: async (key, args) => await cluster.sendCommand(key, false, args),
    masters: async () => await Promise.all(cluster.masters.map(async (master) => {
      const client = await cluster.nodeClient(master)
      return async (args: string[]) => await client.sendCommand(args)
    })),
    async subscribe (channel, onMessage) {
      // The cluster client already subscribes on a connection of its own (its pub/sub node).
      const listener = (message: string | Buffer): void => { onMessage(String(message)) }
      await cluster.subscribe(channel, listener)
      return async () => { await cluster.unsubscribe(channel, listener) }
    },
    async connect () {
      if (!cluster.isOpen) await cluster.connect()
    },
    async close () {
      await cluster.close()
    }
  }
}

/** ioredis states in which a command would only be queued for a connection that is gone. */
const IOREDIS_DOWN = new Set(['reconnecting', 'close', 'end'])

function ioredisConnection (client: IoredisLike): Connection {
  const sender = (node: IoredisLike): Send => async (args) => {
    if (IOREDIS_DOWN.has(node.status)) throw notConnected()
    return await node.call(args[0] as string, args.slice(1))
  }
  return {
    // ioredis routes by the command's keys itself (EVALSHA included).
    send: async (_key, args) => await sender(client)(args),
    masters: async () => (client.nodes?.('master') ?? [client]).map(sender),
    async subscribe (channel, onMessage) {
      const subscriber = client.duplicate()
      subscriber.on('error', ignore)
      subscriber.on('message', (from, message) => { if (from === channel) onMessage(message) })
      try {
        await withinSubscribeTimeout(subscriber.subscribe(channel))
      } catch (error) {
        subscriber.disconnect()
        throw error
      }
      return async () => { await subscriber.quit() }
    },
    async connect () {},
    async close () {
      await client.quit()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/** A record as stored: the fields of `SessionRecord` but `id`, in this order (the Lua positions). */
type StoredRecord = [
  userId: string, claims: string, createdAt: string, lastUsedAt: string, expiresAt: string, absoluteExpiresAt: string,
  tokenHash: string, previousTokenHash: string | null, rotatedAt: string | null, graceUses: string,
  userAgent: string | null, ip: string | null
]

function encodeRecord (session: SessionRecord): string {
  const stored: StoredRecord = [
    session.userId, JSON.stringify(session.claims), String(session.createdAt), String(session.lastUsedAt),
    String(session.expiresAt), String(session.absoluteExpiresAt), session.tokenHash, session.previousTokenHash,
    session.rotatedAt === null ? null : String(session.rotatedAt), String(session.graceUses), session.userAgent, session.ip
  ]
  return JSON.stringify(stored)
}

function decodeRecord (id: string, text: string): SessionRecord {
  const [
    userId, claims, createdAt, lastUsedAt, expiresAt, absoluteExpiresAt, tokenHash, previousTokenHash, rotatedAt,
    graceUses, userAgent, ip
  ] = JSON.parse(text) as StoredRecord
  return {
    id,
    userId,
    claims: JSON.parse(claims),
    createdAt: Number(createdAt),
    lastUsedAt: Number(lastUsedAt),
    expiresAt: Number(expiresAt),
    absoluteExpiresAt: Number(absoluteExpiresAt),
    tokenHash,
    previousTokenHash,
    rotatedAt: rotatedAt === null ? null : Number(rotatedAt),
    graceUses: Number(graceUses),
    userAgent,
    ip
  }
}

/** The slot tag of a user: a short digest, the same in every process. */
function userTag (userId: string): string {
  return createHash('sha256').update(userId).digest('base64url').slice(0, TAG_LENGTH)
}

/**
 * The tag an id from `sessionIdFor` starts with. Another id of that length yields a wrong guess,
 * which only costs a lookup: a record lives at exactly one key, in its owner's slot.
 */
function embeddedTag (sessionId: string): string | undefined {
  return sessionId.length === TAGGED_ID_LENGTH ? sessionId.slice(0, TAG_LENGTH) : undefined
}

function ttl (at: number, now: number): string {
  return String(Math.max(Math.ceil(at - now), MIN_TTL))
}

function strings (reply: unknown): string[] {
  return reply as string[]
}

/** Redis glob: `prefix` matched literally. */
function globEscape (text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&')
}

type RotateOutcome = 'rotated' | 'recovered' | 'grace' | 'superseded' | 'reused' | 'expired'

/** A deadline as the scripts take it: '' for none. */
function deadlineArg (deadline: number | undefined): string {
  return deadline === undefined ? '' : String(deadline)
}

/**
 * The production store for Redis, standalone or Cluster. Every change to a user's sessions is
 * one Lua script in that user's hash slot; the revocation feed lives in a slot of its own and
 * is written right after (see `#recordRevocations`). See the notes at the top of this file for
 * the key layout and the Redis settings it needs.
 */
export class RedisStore implements TokenStore {
  readonly #prefix: string
  readonly #sweepBatchSize: number
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
    this.#prefix = prefix
    this.#sweepBatchSize = sweepBatchSize
    this.#url = options.url
    this.#closeClient = options.url !== undefined || options.closeClient === true
    if (options.client !== undefined) this.#connection = connectionFor(options.client)
  }

  /**
   * A new session id for `userId` that names its user's slot, so `rotate` and `revokeSession`
   * need no pointer lookup: the tag, then 16 random bytes, all base64url (30 characters). Any
   * other id works too (see the notes at the top of this file).
   */
  sessionIdFor (userId: string): string {
    return userTag(userId) + randomBytes(16).toString('base64url')
  }

  async createSession (session: SessionRecord, options: WriteOptions = {}): Promise<void> {
    const redis = await this.#use()
    const tag = userTag(session.userId)
    if (embeddedTag(session.id) !== tag) {
      // Written first: a failure here leaves no session behind, and a crash (or a late script)
      // after it leaves a pointer to nothing, which answers `missing` and expires with the session.
      const pointer = this.#pointerKey(session.id)
      await redis.send(pointer, ['SET', pointer, tag, 'PX', ttl(session.absoluteExpiresAt, session.lastUsedAt)])
    }
    const stored = await this.#run(redis, SCRIPTS.create, [this.#recordKey(tag, session.id), this.#indexKey(tag)],
      [session.id, encodeRecord(session), String(session.expiresAt), String(session.lastUsedAt), deadlineArg(options.deadline)])
    if (stored === 0) throw new StoreDeadlineError('createSession')
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    const redis = await this.#use()
    const { sessionId, now } = request
    const update = JSON.stringify([request.userAgent, request.ip, request.claims === undefined ? null : JSON.stringify(request.claims)])
    const args = [sessionId, request.presentedHash, request.nextHash, String(now), String(now + request.idleTtl),
      String(request.grace), String(request.graceLimit), update, deadlineArg(request.deadline)]
    const found = await this.#inSessionSlot(redis, sessionId, async (tag) =>
      await this.#run(redis, SCRIPTS.rotate, [this.#recordKey(tag, sessionId), this.#indexKey(tag)], args) as [RotateOutcome | 'late', string] | null)
    if (found === null) return { outcome: 'missing' }
    const [outcome, raw] = found.reply
    if (outcome === 'late') throw new StoreDeadlineError('rotate')
    if (outcome === 'reused') await this.#recordRevocations(redis, [sessionId], { now, keepFor: request.keepRevocationFor })
    if (outcome === 'reused' || outcome === 'expired') await this.#dropPointers(redis, found.tag, [sessionId])
    return { outcome, session: decodeRecord(sessionId, raw) }
  }

  async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    const redis = await this.#use()
    const args = [sessionId, userId === undefined ? '0' : '1', userId ?? '', String(context.now)]
    const revoke = async (tag: string): Promise<string | null> =>
      await this.#run(redis, SCRIPTS.revoke, [this.#recordKey(tag, sessionId), this.#indexKey(tag)], args) as string | null
    // A record lives in its owner's slot: with the owner given, that is the only place to look.
    const found = userId === undefined
      ? await this.#inSessionSlot(redis, sessionId, revoke)
      : await this.#inSlot(userTag(userId), revoke)
    if (found === null) return null
    await this.#recordRevocations(redis, [sessionId], context)
    await this.#dropPointers(redis, found.tag, [sessionId])
    return decodeRecord(sessionId, found.reply)
  }

  async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    const redis = await this.#use()
    const tag = userTag(userId)
    const index = this.#indexKey(tag)
    for (let attempt = 1; ; attempt++) {
      const ids = strings(await redis.send(index, ['ZRANGE', index, '0', '-1']))
      if (ids.length === 0) return []
      const revoked = await this.#run(redis, SCRIPTS.revokeAll, [index, ...ids.map((id) => this.#recordKey(tag, id))],
        [userId, String(context.now), ...ids]) as string[] | null
      if (revoked !== null) {
        await this.#recordRevocations(redis, revoked, context)
        await this.#dropPointers(redis, tag, revoked)
        return revoked
      }
      if (attempt === REVOKE_ALL_ATTEMPTS) {
        throw new Error(`RedisStore: the sessions of a user kept changing during ${REVOKE_ALL_ATTEMPTS} attempts to revoke them all`)
      }
    }
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    const redis = await this.#use()
    const tag = userTag(userId)
    const index = this.#indexKey(tag)
    const ids = strings(await redis.send(index, ['ZRANGE', index, '0', '-1']))
    if (ids.length === 0) return []
    // One slot, so one MGET even on a cluster. A snapshot: records may change right after.
    const keys = ids.map((id) => this.#recordKey(tag, id))
    const raws = await redis.send(keys[0], ['MGET', ...keys]) as Array<string | null>
    const sessions: SessionRecord[] = []
    for (const [i, raw] of raws.entries()) {
      if (raw === null) continue
      const session = decodeRecord(ids[i] as string, raw)
      if (session.userId === userId && now < session.expiresAt) sessions.push(session)
    }
    return sessions.sort((a, b) => a.createdAt - b.createdAt)
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    const redis = await this.#use()
    const flat = strings(await this.#run(redis, SCRIPTS.feedRead, [this.#feedKey('at')], [String(since)]))
    const records: RevocationRecord[] = []
    for (let i = 0; i < flat.length; i += 2) records.push({ sessionId: flat[i] as string, revokedAt: Number(flat[i + 1]) })
    return records
  }

  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    const redis = await this.#use()
    const stop = await redis.subscribe(this.#channel(), (message) => {
      for (const record of parseRevocations(message)) listener(record)
    })
    this.#subscriptions.add(stop)
    return async () => {
      if (this.#subscriptions.delete(stop)) await stop()
    }
  }

  /**
   * Redis deletes records by their TTL on its own; this removes what TTLs cannot: records
   * expired by the caller's clock before Redis's (the contract's `now`), their index entries,
   * entries left by records that expired by TTL, and feed entries past their keep time. It walks
   * each master's keys with SCAN, `sweepBatchSize` at a time, so no command blocks Redis long;
   * the walk is O(keys), so with many sessions a longer `sweepInterval` costs nothing in safety.
   */
  async sweep (now: number): Promise<number> {
    const redis = await this.#use()
    const batch = String(this.#sweepBatchSize)
    const pattern = `${globEscape(this.#prefix)}{${'?'.repeat(TAG_LENGTH)}}:i`
    let removed = 0
    for (const send of await redis.masters()) {
      let cursor = '0'
      do {
        const [next, indexes] = await send(['SCAN', cursor, 'MATCH', pattern, 'COUNT', batch]) as [string, string[]]
        cursor = next
        const counts = await Promise.all(indexes.map(async (index) => await this.#sweepIndex(redis, index, now)))
        for (const count of counts) removed += count
      } while (cursor !== '0')
    }
    const feed = [this.#feedKey('at'), this.#feedKey('until')]
    let dropped: unknown
    do {
      dropped = await this.#run(redis, SCRIPTS.feedSweep, feed, [String(now), batch])
    } while (dropped === this.#sweepBatchSize)
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

  /** Runs a script by its SHA-1, loading it (EVAL) only when that node does not know it yet. */
  async #run (redis: Connection, script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    const tail = [String(keys.length), ...keys, ...args]
    try {
      return await redis.send(keys[0], ['EVALSHA', script.sha, ...tail])
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
      return await redis.send(keys[0], ['EVAL', script.source, ...tail])
    }
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
    const pointer = this.#pointerKey(sessionId)
    const tag = await redis.send(pointer, ['GET', pointer]) as string | null
    if (tag === null) return null
    return await this.#inSlot(tag, operation)
  }

  async #sweepIndex (redis: Connection, index: string, now: number): Promise<number> {
    const tag = index.slice(this.#prefix.length + 1, this.#prefix.length + 1 + TAG_LENGTH)
    let removed = 0
    for (;;) {
      const ids = strings(await redis.send(index, ['ZRANGEBYSCORE', index, '-inf', String(now), 'LIMIT', '0', String(this.#sweepBatchSize)]))
      if (ids.length === 0) return removed
      const count = await this.#run(redis, SCRIPTS.sweepIndex, [index, ...ids.map((id) => this.#recordKey(tag, id))], [String(now), ...ids]) as number
      await this.#dropPointers(redis, tag, ids)
      removed += count
      if (ids.length < this.#sweepBatchSize) return removed
    }
  }

  /**
   * Records revocations in the feed (and pushes them). The feed lives in another slot than the
   * user's keys, so this is a second command after the script that deleted the sessions. If the
   * process dies (or Redis fails) between the two, the sessions are gone, so their refresh tokens
   * are dead, but other processes never hear of the revocation and keep accepting the sessions'
   * access tokens until those expire: at most `accessTokenTtl`. The caller gets the error, so a
   * logout answers 503 and the client may retry; the retry finds nothing left to revoke.
   */
  async #recordRevocations (redis: Connection, sessionIds: string[], context: RevocationContext): Promise<void> {
    if (sessionIds.length === 0) return
    const message = JSON.stringify({ revokedAt: context.now, sessionIds })
    await this.#run(redis, SCRIPTS.feedAdd, [this.#feedKey('at'), this.#feedKey('until')],
      [String(context.now), String(context.now + context.keepFor), this.#channel(), message, ...sessionIds])
  }

  /**
   * Deletes the pointers of deleted sessions. Best effort: a pointer left behind points to
   * nothing (`missing`) and expires with its session's absolute lifetime anyway.
   */
  async #dropPointers (redis: Connection, tag: string, sessionIds: string[]): Promise<void> {
    const pointers = sessionIds.filter((id) => embeddedTag(id) !== tag).map((id) => this.#pointerKey(id))
    await Promise.all(pointers.map(async (pointer) => await redis.send(pointer, ['DEL', pointer]))).catch(ignore)
  }

  #recordKey (tag: string, sessionId: string): string {
    return `${this.#prefix}{${tag}}:s:${sessionId}`
  }

  #indexKey (tag: string): string {
    return `${this.#prefix}{${tag}}:i`
  }

  #pointerKey (sessionId: string): string {
    return `${this.#prefix}p:${sessionId}`
  }

  #feedKey (part: 'at' | 'until'): string {
    return `${this.#prefix}{feed}:${part}`
  }

  #channel (): string {
    return `${this.#prefix}revocations`
  }
}

/** A pushed message, `{ revokedAt, sessionIds }`; anything else on the channel is ignored. */
function parseRevocations (message: string): RevocationRecord[] {
  let parsed: unknown
  try {
    parsed = JSON.parse(message)
  } catch {
    return []
  }
  const { revokedAt, sessionIds } = (parsed ?? {}) as { revokedAt?: unknown, sessionIds?: unknown }
  if (typeof revokedAt !== 'number' || !Array.isArray(sessionIds)) return []
  return sessionIds.filter((id): id is string => typeof id === 'string').map((sessionId) => ({ sessionId, revokedAt }))
}

/**
 * Warns once when a master may evict keys (a `maxmemory` limit with a policy other than
 * `noeviction`; see the notes at the top of this file). Reads `INFO memory`, which managed
 * services allow more often than CONFIG; any error (a refused command) skips the check.
 */
async function warnIfEvicting (redis: Connection): Promise<void> {
  try {
    for (const send of await redis.masters()) {
      const info = String(await send(['INFO', 'memory']))
      const limit = Number(/^maxmemory:(\d+)/m.exec(info)?.[1] ?? 0)
      const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1] ?? 'noeviction'
      if (limit > 0 && policy !== 'noeviction') {
        process.emitWarning(
          `Redis evicts keys under memory pressure (maxmemory-policy ${policy}): it could drop user indexes and ` +
          'revocations, so logout-everywhere could miss sessions and revoked access tokens could keep working. ' +
          'Set maxmemory-policy noeviction.',
          { code: 'FST_TOKEN_AUTH_REDIS_EVICTION' })
        return
      }
    }
  } catch {}
}
