import type { SessionRecord } from '../types.js'
import { decodePacked } from './packed.js'

/*
 * A user's bucket (`P{T}:b`, keys.ts): the first BUCKET_SIZE sessions of the user(s) with tag T
 * as packed records with their ids (packed-layout.ts, the ID field), each prefixed with its length (a packed
 * count), in one string that lives as long as its longest-lived session. Sessions beyond it get
 * a record key of their own and an index entry, as in the JSON layout.
 *
 * Why: most users have one to a few sessions, and every Redis key costs about 90 bytes before
 * its value (its dictionary entry, name and object header, and its expiry entry), and the user
 * index about 130 more for a single entry. In one bucket a user's sessions share one key and
 * need no index: about 390 bytes for a user with one session instead of about 500, 320 a session
 * with three instead of 440 (bench/memory.ts). The cost is reading every entry of the bucket
 * in each change to one of them, so the bucket is kept small.
 *
 * Only packed records go in a bucket: with `recordFormat: 'json'` the store writes none, so the
 * earlier release, which knows no bucket, sees every session. Every script reads buckets either
 * way, so a store switched back to 'json' still finds its sessions.
 */

/** Sessions a bucket holds: each change to one reads them all, so they are few. */
export const BUCKET_SIZE = 4

/**
 * The entries of a bucket, read back (every entry holds its id); `tag`: the bucket's (keys.ts),
 * which an id held as its 16 bytes starts with.
 */
export function decodeBucket (raw: Buffer, tag = ''): SessionRecord[] {
  const sessions: SessionRecord[] = []
  let position = 0
  while (position < raw.length) {
    let length = raw[position] as number
    position += 1
    if (length === 255) {
      length = raw.readUInt32BE(position)
      position += 4
    }
    const entry = raw.subarray(position, position + length)
    if (entry.length !== length) throw new Error('RedisStore: a bucket ends early')
    sessions.push(decodePacked('', entry, tag))
    position += length
  }
  return sessions
}

/**
 * Lua: `readBucket(key)` gives the bucket's entries (each the table `decodePacked` makes, with
 * `raw`, its bytes), or an empty list; `writeBucket(key, entries, now)` stores them back (or
 * deletes the key once empty), its TTL that of the longest-lived entry; `findSession` finds a
 * session in its own key or in the bucket.
 */
export const LUA_BUCKET = `
local BUCKET_SIZE = ${BUCKET_SIZE}

local function readBucket(key)
  local raw = redis.call('GET', key)
  local tag = string.match(key, '{([^{}]*)}:b$')
  local entries = {}
  if not raw then return entries end
  local pos, entry = 1, nil
  while pos <= #raw do
    entry, pos = packedText(raw, pos)
    local s = decodePacked(entry, tag)
    s.raw = entry
    entries[#entries + 1] = s
  end
  return entries
end

local function writeBucket(key, entries, now)
  if #entries == 0 then
    redis.call('DEL', key)
    return
  end
  local parts, last = {}, 0
  for i, s in ipairs(entries) do
    parts[i] = packText(s.raw)
    last = math.max(last, s.expires)
  end
  redis.call('SET', key, table.concat(parts), 'PX', ttl(last, now))
end

-- The session's record and, if it is an entry of the bucket, where: {key, entries, at}.
local function findSession(recordKey, bucketKey, id)
  local raw = redis.call('GET', recordKey)
  if raw then return raw, nil end
  local entries = readBucket(bucketKey)
  for i, s in ipairs(entries) do
    if s.id == id then return s.raw, { key = bucketKey, entries = entries, at = i } end
  end
  return nil, nil
end
`
