import { createHash } from 'node:crypto'
import type { Arg, Connection } from './clients.js'
import { LUA_PRELUDE, LUA_TTL } from './prelude.js'
import { CREATE, UPDATE_CLAIMS } from './policy-scripts.js'

/*
 * The Lua scripts of the store (those of session policy in policy-scripts.ts). Each touches only the keys passed in KEYS, all in one hash slot
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

/**
 * The rotate state machine of types.ts (`RotateResult`), step for step as MemoryStore.rotate:
 * the deadline first (a late call changes nothing, not even an expired record), then expiry,
 * the current hash, the predecessor (grace, superseded or recovered), and anything else is
 * reuse. Returns {'late'}, false (missing) or {outcome, record}, where the record is the new one
 * for rotated/recovered/grace and the one as it was otherwise. The record is rewritten in the
 * format it was read in, so each hash and the client come in both formats.
 * KEYS: record, index, bucket. ARGV: session id, presented hash, next hash (as text, then each as
 * `taggedHash`), now, now + idleTtl, grace, graceLimit, JSON [userAgent, ip, claims JSON text or
 * null to keep the stored claims], the client part of a packed record (`encodeClient`),
 * deadline ('' for none), a shorter absoluteExpiresAt ('' for none), then for a re-authentication
 * ('' for none) its JSON text, its time, and its auth extra (`encodeAuthExtra`).
 */
const ROTATE = `${LUA_PRELUDE}
if late(ARGV[12]) then return {'late'} end
local raw, place = findSession(KEYS[1], KEYS[3], ARGV[1])
if not raw then return false end
local s = decodeRecord(raw)
local now = tonumber(ARGV[6])
if now >= s.expires then
  dropSession(place, KEYS[1], KEYS[2], ARGV[1], now)
  return {'expired', raw}
end
local presented, nextHash = ARGV[2], ARGV[3]
if s.packed then presented, nextHash = ARGV[4], ARGV[5] end

-- Stores the changed record where it was found.
local function save(keepTtl)
  raw = encodeRecord(s)
  if place then
    s.raw = raw
    place.entries[place.at] = s
    writeBucket(place.key, place.entries, now)
  elseif keepTtl then
    redis.call('SET', KEYS[1], raw, 'KEEPTTL')
  else
    redis.call('SET', KEYS[1], raw, 'PX', ttl(s.expires, now))
    redis.call('ZADD', KEYS[2], 'XX', s.expires, ARGV[1])
    expireIndex(KEYS[2], now)
  end
end

-- The next hash becomes current, as a rotation and a recovery both do (they differ in previous).
local function renew(outcome)
  local client = cjson.decode(ARGV[10])
  s.token = nextHash
  s.rotated = now
  s.grace = 0
  s.lastUsed = now
  if ARGV[13] ~= '' then s.absolute = math.min(s.absolute, tonumber(ARGV[13])) end
  s.expires = math.min(tonumber(ARGV[7]), s.absolute)
  if s.packed then
    -- The first client is stored only while it differs from the current one (packed-layout.ts).
    local first = s.first or (string.char(s.clientFlags) .. s.client)
    if first == ARGV[11] then s.first = nil else s.first = first end
    s.clientFlags = string.byte(ARGV[11], 1)
    s.client = string.sub(ARGV[11], 2)
  else
    s.agent, s.ip = client[1], client[2]
  end
  if ARGV[14] ~= '' and s.packed then
    s.authTime, s.authFlags, s.authExtra = tonumber(ARGV[15]), string.byte(ARGV[16], 1), string.sub(ARGV[16], 2)
  elseif ARGV[14] ~= '' then
    s.auth = ARGV[14]
  end
  if client[3] ~= cjson.null and not s.packed then
    s.claims = client[3]
  elseif client[3] ~= cjson.null then
    -- A packed record holds an object's JSON text without its braces.
    if string.sub(client[3], 1, 1) ~= '{' then error('RedisStore: claims must be a JSON object') end
    s.claims = string.sub(client[3], 2, -2)
  end
  save(false)
  return {outcome, raw}
end

if presented == s.token then
  s.previous = s.token
  return renew('rotated')
end
if presented == s.previous then
  -- Its successor was never used: a retry of a response that never arrived, not a theft.
  local grace = tonumber(ARGV[8])
  if grace > 0 and now - s.rotated <= grace then
    if s.grace >= tonumber(ARGV[9]) then return {'superseded', raw} end
    s.grace = s.grace + 1
    save(true)
    return {'grace', raw}
  end
  -- No successor but the current one can be minted at its rotation's ms (or a clock behind it).
  if now <= s.rotated then return {'superseded', raw} end
  return renew('recovered')
end
dropSession(place, KEYS[1], KEYS[2], ARGV[1], now)
return {'reused', raw}
`

/**
 * Deletes one session, only if it belongs to the given user when one is given. Returns the
 * record as it was, or false when nothing was deleted.
 * KEYS: record, index, bucket. ARGV: session id, '1' to check the owner or '0', owner, now.
 */
const REVOKE = `${LUA_PRELUDE}
local raw, place = findSession(KEYS[1], KEYS[3], ARGV[1])
if not raw then return false end
if ARGV[2] == '1' and decodeRecord(raw).user ~= ARGV[3] then return false end
dropSession(place, KEYS[1], KEYS[2], ARGV[1], ARGV[4])
return raw
`

/**
 * Deletes every session of a user: the bucket's entries that are the user's, and those listed
 * in the index. The caller read the index just before and passes those ids (and their keys, so
 * the script touches only declared keys); if the index changed meanwhile (a login, a logout),
 * nothing is done and false tells the caller to read again, so the whole change is one atomic
 * step over exactly the sessions there are. An id whose record already expired (TTL) is only
 * dropped from the index. Returns the ids deleted.
 * KEYS: index, bucket, then the records of ARGV[3..]. ARGV: user id, now, session ids...
 */
const REVOKE_ALL = `${LUA_PRELUDE}
if redis.call('ZCARD', KEYS[1]) ~= #ARGV - 2 then return false end
for i = 3, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then return false end
end
local revoked = {}
for i = 3, #ARGV do
  local raw = redis.call('GET', KEYS[i])
  if not raw then
    redis.call('ZREM', KEYS[1], ARGV[i])
  elseif decodeRecord(raw).user == ARGV[1] then
    redis.call('DEL', KEYS[i])
    redis.call('ZREM', KEYS[1], ARGV[i])
    revoked[#revoked + 1] = ARGV[i]
  end
end
expireIndex(KEYS[1], ARGV[2])
local entries, kept = readBucket(KEYS[2]), {}
for _, s in ipairs(entries) do
  if s.user == ARGV[1] then revoked[#revoked + 1] = s.id else kept[#kept + 1] = s end
end
if #kept < #entries then writeBucket(KEYS[2], kept, ARGV[2]) end
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
  local expiresAt = raw and decodeRecord(raw).expires
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
 * The sweep of one bucket: drops the entries expired at `now`; returns their ids.
 * KEYS: bucket. ARGV: now.
 */
const SWEEP_BUCKET = `${LUA_PRELUDE}
local now = tonumber(ARGV[1])
local entries, kept, removed = readBucket(KEYS[1]), {}, {}
for _, s in ipairs(entries) do
  if now < s.expires then kept[#kept + 1] = s else removed[#removed + 1] = s.id end
end
if #removed > 0 then writeBucket(KEYS[1], kept, now) end
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
  updateClaims: new LuaScript(UPDATE_CLAIMS),
  rotate: new LuaScript(ROTATE),
  revoke: new LuaScript(REVOKE),
  revokeAll: new LuaScript(REVOKE_ALL),
  sweepIndex: new LuaScript(SWEEP_INDEX),
  sweepBucket: new LuaScript(SWEEP_BUCKET),
  feedAdd: new LuaScript(FEED_ADD),
  feedRead: new LuaScript(FEED_READ),
  feedSweep: new LuaScript(FEED_SWEEP)
}

/**
 * Runs a script by its SHA-1, loading it (EVAL) only when that node does not know it yet; routed
 * by its first key, the slot every key of a script shares. `binary`: its strings come back as
 * Buffers (the scripts that return records).
 */
export async function runScript (redis: Connection, script: LuaScript, keys: string[], args: Arg[], binary = false): Promise<unknown> {
  const tail = [String(keys.length), ...keys, ...args]
  try {
    return await redis.send(keys[0], ['EVALSHA', script.sha, ...tail], binary)
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return await redis.send(keys[0], ['EVAL', script.source, ...tail], binary)
  }
}
