import {
  AUTH_TIME_OFFSET, AUTH_TIME_STORED, X_ACR, X_AMR, X_FIRST, X_VERSION, CLIENT_SHIFT, EXPIRES_ABSOLUTE, EXPIRES_OFFSET, FIRST, F_ABSOLUTE_OFFSET, F_INT, F_NO_GRACE, F_TOKEN_RAW, RAW_HASH_BYTES,
  LAST_USED_CREATED, LAST_USED_OFFSET, LAST_USED_ROTATED, MAX_INT, MAX_OFFSET, MIXED_SHIFT, NONE, SECOND
} from './packed-layout.js'

/**
 * Lua: the same layout, for the scripts. `decodePacked(raw, tag)` gives a table of the fields
 * the scripts use (times as numbers, hashes tagged as `taggedHash` makes them, the id as text,
 * `tag` put back before an id held as 16 bytes, the client part as its flags and bytes,
 * untouched; `authTime`, the auth extra as its flags and bytes, `version`, and `first`, the
 * first client's part or nil); `encodePacked(s)` writes one back. Lua's `struct` and `bit` libraries are built
 * into Redis.
 */
export const LUA_PACKED = `
local function packedCount(raw, pos)
  local n = string.byte(raw, pos)
  if n < 255 then return n, pos + 1 end
  return struct.unpack('>I4', raw, pos + 1)
end
local function packCount(n)
  if n < 255 then return string.char(n) end
  return '\\255' .. struct.pack('>I4', n)
end
local function packedText(raw, pos)
  local n
  n, pos = packedCount(raw, pos)
  return string.sub(raw, pos, pos + n - 1), pos + n
end
local function packText(s)
  return packCount(#s) .. s
end
-- A hash as taggedHash makes it: 1 and ${RAW_HASH_BYTES} raw bytes, or 2 and the text.
local function packedHash(raw, pos, isRaw)
  if isRaw then return '\\1' .. string.sub(raw, pos, pos + ${RAW_HASH_BYTES - 1}), pos + ${RAW_HASH_BYTES} end
  local s
  s, pos = packedText(raw, pos)
  return '\\2' .. s, pos
end
local BASE64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
-- Unpadded base64url, as Node's Buffer writes it.
local function base64url(bytes)
  local out = {}
  for i = 1, #bytes, 3 do
    local a, b, c = string.byte(bytes, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local chars = 2
    if b then chars = 3 end
    if c then chars = 4 end
    for j = 1, chars do
      local k = math.floor(n / 2 ^ (24 - 6 * j)) % 64
      out[#out + 1] = string.sub(BASE64URL, k + 1, k + 1)
    end
  end
  return table.concat(out)
end
local function isNegativeZero(t) return t == 0 and 1 / t < 0 end

local function decodePacked(raw, tag)
  local high, low = string.byte(raw, 1, 2)
  local flags = high * 256 + low
  local mixed = math.floor(flags / ${MIXED_SHIFT})
  local function has(flag) return bit.band(flags, flag) ~= 0 end
  local s = { packed = true, clientFlags = bit.band(high, 7) }
  local policy = string.byte(raw, 3)
  local pos, created = 4, nil
  if has(${F_INT}) then
    local h, l
    h, l, pos = struct.unpack('>I2I4', raw, pos)
    created = h * ${MAX_OFFSET} + l
  else
    created, pos = struct.unpack('>d', raw, pos)
  end
  local function time(offset)
    local t
    if offset then
      t, pos = struct.unpack('>I4', raw, pos)
      return created + t
    end
    t, pos = struct.unpack('>d', raw, pos)
    return t
  end
  s.created = created
  local lastUsed, expires, rotated = bit.band(flags, 3), bit.band(flags, 12) / 4, mixed % 3
  if lastUsed < ${LAST_USED_ROTATED} then s.lastUsed = time(lastUsed == ${LAST_USED_OFFSET}) end
  if expires ~= ${EXPIRES_ABSOLUTE} then s.expires = time(expires == ${EXPIRES_OFFSET}) end
  s.absolute = time(has(${F_ABSOLUTE_OFFSET}))
  if rotated ~= ${NONE} then s.rotated = time(rotated == ${FIRST}) end
  if lastUsed == ${LAST_USED_ROTATED} then s.lastUsed = s.rotated elseif lastUsed == ${LAST_USED_CREATED} then s.lastUsed = created end
  s.expires = s.expires or s.absolute
  if has(${F_NO_GRACE}) then s.grace = 0 else s.grace, pos = packedCount(raw, pos) end
  s.token, pos = packedHash(raw, pos, has(${F_TOKEN_RAW}))
  local previous, id = math.floor(mixed / 3) % 3, math.floor(mixed / 9)
  if previous ~= ${NONE} then s.previous, pos = packedHash(raw, pos, previous == ${FIRST}) end
  if id == ${FIRST} then
    s.idBytes = string.sub(raw, pos, pos + 15)
    s.id = tag .. base64url(s.idBytes)
    pos = pos + 16
  elseif id == ${SECOND} then
    s.id, pos = packedText(raw, pos)
  end
  s.user, pos = packedText(raw, pos)
  s.claims, pos = packedText(raw, pos)
  local authTime = policy % 4
  if authTime == 0 then s.authTime = created else s.authTime = time(authTime == ${AUTH_TIME_OFFSET}) end
  local extraStart = pos
  s.authFlags = bit.band(policy, ${X_ACR + X_AMR})
  local _
  if bit.band(policy, ${X_ACR}) ~= 0 then _, pos = packedText(raw, pos) end
  if bit.band(policy, ${X_AMR}) ~= 0 then _, pos = packedText(raw, pos) end
  s.authExtra = string.sub(raw, extraStart, pos - 1)
  s.version = 0
  if bit.band(policy, ${X_VERSION}) ~= 0 then s.version, pos = packedCount(raw, pos) end
  if bit.band(policy, ${X_FIRST}) ~= 0 then s.first, pos = packedText(raw, pos) end
  s.client = string.sub(raw, pos)
  return s
end

local function encodePacked(s)
  local flags, mixed, out = 0, 0, {}
  local created = s.created
  local int = created == math.floor(created) and created >= 0 and created < ${MAX_INT} and not isNegativeZero(created)
  if int then
    local high = math.floor(created / ${MAX_OFFSET})
    out[1] = struct.pack('>I2I4', high, created - high * ${MAX_OFFSET})
    flags = ${F_INT}
  else
    out[1] = struct.pack('>d', created)
  end
  -- A time as an offset (1) when it can be, else a double (0).
  local function time(t)
    local offset = t - created
    if int and offset == math.floor(offset) and offset >= 0 and offset < ${MAX_OFFSET} and created + offset == t and not isNegativeZero(t) then
      out[#out + 1] = struct.pack('>I4', offset)
      return 1
    end
    out[#out + 1] = struct.pack('>d', t)
    return 0
  end
  local function hash(h)
    if string.sub(h, 1, 1) == '\\1' then
      out[#out + 1] = string.sub(h, 2)
      return true
    end
    out[#out + 1] = packText(string.sub(h, 2))
    return false
  end
  if s.rotated and s.lastUsed == s.rotated then
    flags = flags + ${LAST_USED_ROTATED}
  elseif s.lastUsed == created then
    flags = flags + ${LAST_USED_CREATED}
  else
    flags = flags + time(s.lastUsed)
  end
  if s.expires == s.absolute then flags = flags + ${EXPIRES_ABSOLUTE * 4} else flags = flags + 4 * time(s.expires) end
  flags = flags + ${F_ABSOLUTE_OFFSET} * time(s.absolute)
  if s.rotated then mixed = ${SECOND} - time(s.rotated) end
  if s.grace == 0 then flags = flags + ${F_NO_GRACE} else out[#out + 1] = packCount(s.grace) end
  if hash(s.token) then flags = flags + ${F_TOKEN_RAW} end
  if s.previous then
    if hash(s.previous) then mixed = mixed + ${3 * FIRST} else mixed = mixed + ${3 * SECOND} end
  end
  if s.idBytes then
    mixed = mixed + ${9 * FIRST}
    out[#out + 1] = s.idBytes
  elseif s.id then
    mixed = mixed + ${9 * SECOND}
    out[#out + 1] = packText(s.id)
  end
  out[#out + 1] = packText(s.user)
  out[#out + 1] = packText(s.claims)
  local policy = s.authFlags
  if s.authTime ~= created or isNegativeZero(s.authTime) ~= isNegativeZero(created) then policy = policy + ${AUTH_TIME_STORED} - time(s.authTime) end
  out[#out + 1] = s.authExtra
  if s.version ~= 0 then
    policy = policy + ${X_VERSION}
    out[#out + 1] = packCount(s.version)
  end
  if s.first then
    policy = policy + ${X_FIRST}
    out[#out + 1] = packText(s.first)
  end
  out[#out + 1] = s.client
  return struct.pack('>I2B', flags + s.clientFlags * ${CLIENT_SHIFT} + mixed * ${MIXED_SHIFT}, policy) .. table.concat(out)
end
`
