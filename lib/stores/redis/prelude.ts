import { MIN_TTL } from './keys.js'
import { LUA_BUCKET } from './bucket.js'
import { LUA_RECORD } from './record.js'

/* The Lua every script of the store starts with (scripts.ts, policy-scripts.ts). */

/** The TTL rule of keys.ts (`ttl`), for every script that sets one. */
export const LUA_TTL = `
-- Milliseconds from now until at, as the integer PEXPIRE wants, never below the minimum.
local function ttl(at, now)
  return math.max(math.ceil(tonumber(at) - tonumber(now)), ${MIN_TTL})
end
`

/** Shared by every session script: the record codecs, the deadline and TTL helpers. */
export const LUA_PRELUDE = `
${LUA_RECORD}
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
${LUA_BUCKET}
-- Deletes a session found by findSession: its own key and index entry, or its bucket entry.
local function dropSession(place, key, index, id, now)
  if place then
    table.remove(place.entries, place.at)
    writeBucket(place.key, place.entries, now)
  else
    deleteSession(key, index, id, now)
  end
end
`
