import { createHash } from 'node:crypto'
import type { Connection } from './clients.js'
import { MIN_TTL } from './keys.js'
import { LUA_FIELD_POSITIONS } from './record.js'

/*
 * The Lua scripts of the store. Each touches only the keys passed in KEYS, all in one hash slot
 * (cluster-safe), so each is one atomic change. Their comments say what they get in KEYS and ARGV.
 *
 * The one place the store reads Redis's clock is a write's deadline (types.ts): CREATE and ROTATE
 * read `TIME` first thing, so the clock is read when the change would be applied, however long
 * the command waited in a socket, a queue or a frozen Redis, and a late script writes nothing.
 * (Redis ≥ 5 replicates a script's effects, not the script, so TIME before a write is allowed.)
 * The deadline is on the app's clock: a Redis clock ahead of it refuses in-time changes a little
 * early (a 503, nothing applied); one behind it widens the window in which a change the plugin
 * answered 503 still applies, and then the client's retry with the token it kept finds it the
 * predecessor of an unused successor: `grace` or `recovered`, never theft. Apart from deadlines
 * the scripts compare the caller's times, as every store does.
 */

/** The TTL rule of keys.ts (`ttl`), for every script that sets one. */
const LUA_TTL = `
-- Milliseconds from now until at, as the integer PEXPIRE wants, never below the minimum.
local function ttl(at, now)
  return math.max(math.ceil(tonumber(at) - tonumber(now)), ${MIN_TTL})
end
`

/** Shared by every session script: the record's field positions, the deadline and TTL helpers. */
const LUA_PRELUDE = `
${LUA_FIELD_POSITIONS}
${LUA_TTL}
-- True once Redis's clock (ms) has passed the caller's deadline ('' for none): the caller has
-- answered 503, so the change must not be applied.
local function late(deadline)
  if deadline == '' then return false end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) > tonumber(deadline)
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
const FEED_ADD = `${LUA_TTL}
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
end
local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = ttl(last[2], ARGV[1])
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

export const SCRIPTS = {
  create: new LuaScript(CREATE),
  rotate: new LuaScript(ROTATE),
  revoke: new LuaScript(REVOKE),
  revokeAll: new LuaScript(REVOKE_ALL),
  sweepIndex: new LuaScript(SWEEP_INDEX),
  feedAdd: new LuaScript(FEED_ADD),
  feedRead: new LuaScript(FEED_READ),
  feedSweep: new LuaScript(FEED_SWEEP)
}

/**
 * Runs a script by its SHA-1, loading it (EVAL) only when that node does not know it yet; routed
 * by its first key, the slot every key of a script shares.
 */
export async function runScript (redis: Connection, script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
  const tail = [String(keys.length), ...keys, ...args]
  try {
    return await redis.send(keys[0], ['EVALSHA', script.sha, ...tail])
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return await redis.send(keys[0], ['EVAL', script.source, ...tail])
  }
}
