import { LUA_PRELUDE } from './prelude.js'

/*
 * The scripts that read all of a user's sessions at once: a login under a session cap and a
 * claims update (docs/design.md, «Session caps», «Claims that change»). A user's keys share one
 * slot, so each is one atomic script on a cluster too.
 *
 * Unlike REVOKE_ALL (scripts.ts), they read the user's index themselves and the record keys it
 * lists, named from the declared record key's prefix, so not declared in KEYS. Those keys are in
 * the declared keys' slot by the hash tag, which is all Redis Cluster checks of a script without
 * flags; and it must be so here: a script given the ids the caller read would have to start over
 * whenever the index changed meanwhile, and a burst of logins of one user (each adding to the
 * index, and under a cap removing from it) lets one of them through per round, so the others
 * would fail after any fixed number of attempts.
 */

/**
 * `userSessions(index, bucket, recordPrefix, user, at)`: the user's sessions live at `at`
 * (`at < expires`), each the table `decodeRecord` makes with `sid`, its id, and `key`, its
 * record key (nil for an entry of the bucket); then the bucket's entries.
 */
const LUA_USER_SESSIONS = `
local function userSessions(index, bucket, recordPrefix, user, at)
  local live = {}
  for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
    local key = recordPrefix .. id
    local raw = redis.call('GET', key)
    local s = raw and decodeRecord(raw)
    if s and s.user == user and at < s.expires then
      s.sid, s.key, s.raw = id, key, raw
      live[#live + 1] = s
    end
  end
  local entries = readBucket(bucket)
  for _, s in ipairs(entries) do
    if s.user == user and at < s.expires then
      s.sid = s.id
      live[#live + 1] = s
    end
  end
  return live, entries
end
`

/**
 * Stores a new session: as an entry of its user's bucket while it has room (packed records
 * only), else as a record of its own (the packed record without its id, its key names it) added
 * to the user's index. With a cap (`max` not ''), first counts the user's sessions live at
 * createdAt: at the cap, `refuse` stores nothing, else the least recently used go (ties: older
 * createdAt, then id). Returns {'created', id, record, ...} (the sessions ended, as they were,
 * least recently used first), {'refused'} or {'late'} (nothing stored).
 * KEYS: record, index, bucket. ARGV: session id, record (packed with its id, or JSON), expiresAt,
 * now (the record's lastUsedAt), deadline ('' for none), '1' if the record is packed, max ('' for
 * no cap), policy, createdAt, user id.
 */
export const CREATE = `${LUA_PRELUDE}
${LUA_USER_SESSIONS}
if late(ARGV[5]) then return {'late'} end
local reply, entries, bucketChanged, indexChanged = {'created'}, nil, false, false
if ARGV[7] ~= '' then
  local live
  live, entries = userSessions(KEYS[2], KEYS[3], string.sub(KEYS[1], 1, #KEYS[1] - #ARGV[1]), ARGV[10], tonumber(ARGV[9]))
  local over = #live + 1 - tonumber(ARGV[7])
  if over > 0 and ARGV[8] == 'refuse' then return {'refused'} end
  table.sort(live, function(a, b)
    if a.lastUsed ~= b.lastUsed then return a.lastUsed < b.lastUsed end
    if a.created ~= b.created then return a.created < b.created end
    return a.sid < b.sid
  end)
  for i = 1, over do
    local s = live[i]
    if s.key then
      redis.call('DEL', s.key)
      redis.call('ZREM', KEYS[2], s.sid)
      indexChanged = true
    else
      s.ended, bucketChanged = true, true
    end
    reply[#reply + 1] = s.sid
    reply[#reply + 1] = s.raw
  end
  local kept = {}
  for _, s in ipairs(entries) do
    if not s.ended then kept[#kept + 1] = s end
  end
  entries = kept
end
local record = ARGV[2]
if ARGV[6] == '1' then
  entries = entries or readBucket(KEYS[3])
  local s = decodePacked(record, string.match(KEYS[3], '{([^{}]*)}:b$'))
  if #entries < BUCKET_SIZE then
    s.raw = record
    entries[#entries + 1] = s
    writeBucket(KEYS[3], entries, ARGV[4])
    if indexChanged then expireIndex(KEYS[2], ARGV[4]) end
    return reply
  end
  s.id, s.idBytes = nil, nil
  record = encodePacked(s)
end
if bucketChanged then writeBucket(KEYS[3], entries, ARGV[4]) end
redis.call('SET', KEYS[1], record, 'PX', ttl(ARGV[3], ARGV[4]))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
expireIndex(KEYS[2], ARGV[4])
return reply
`

/**
 * Replaces the claims of the user's sessions live at `now` and adds 1 to their claims version,
 * keeping each where it is (and its TTL). Returns {id, version, ...}.
 * KEYS: index, bucket. ARGV: user id, now, claims JSON text, the start of the user's record keys
 * (`P{T}:s:`).
 */
export const UPDATE_CLAIMS = `${LUA_PRELUDE}
${LUA_USER_SESSIONS}
local now = tonumber(ARGV[2])
local live, entries = userSessions(KEYS[1], KEYS[2], ARGV[4], ARGV[1], now)
-- A packed record holds an object's JSON text without its braces: anything else is refused whole.
if string.sub(ARGV[3], 1, 1) ~= '{' then
  for _, s in ipairs(live) do
    if s.packed then error('RedisStore: claims must be a JSON object') end
  end
end
local updated, bucketChanged = {}, false
for _, s in ipairs(live) do
  if s.packed then s.claims = string.sub(ARGV[3], 2, -2) else s.claims = ARGV[3] end
  s.version = s.version + 1
  local raw = encodeRecord(s)
  if s.key then
    redis.call('SET', s.key, raw, 'KEEPTTL')
  else
    s.raw, bucketChanged = raw, true
  end
  updated[#updated + 1] = s.sid
  updated[#updated + 1] = s.version
end
if bucketChanged then writeBucket(KEYS[2], entries, now) end
return updated
`
