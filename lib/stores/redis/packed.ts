import type { SessionRecord } from '../types.js'

/*
 * The packed record (recordFormat 'packed', the default): a binary string about 40% smaller
 * than the JSON array of record.ts, which Redis stores byte for byte (its strings are binary-safe).
 * Layout, integers big-endian:
 *   2 bytes  flags (the word below). Its first byte never is `[` (0x5B), the first byte of a JSON
 *            record: its two low bits (the ip's form) are never both set.
 *   6 bytes  createdAt as an unsigned integer if F_INT (an integer in [0, 2^48), as ms times
 *            are), else 8 bytes, an IEEE double (any number the contract allows round-trips)
 *   time     lastUsedAt, if LAST_USED is STORED or OFFSET (else it is rotatedAt or createdAt)
 *   time     expiresAt, if EXPIRES is STORED or OFFSET (else it is absoluteExpiresAt)
 *   time     absoluteExpiresAt (OFFSET if F_ABSOLUTE_OFFSET)
 *   time     rotatedAt, if ROTATED is not NONE
 *   count    graceUses, unless F_NO_GRACE (it is 0)
 *   hash     tokenHash: 32 raw bytes if F_TOKEN_RAW (the hash is canonical base64url of 32 bytes,
 *            as every SHA-256 the plugin makes is; kept whole, so it round-trips exactly), else text
 *   hash     previousTokenHash, unless PREVIOUS is NONE (RAW or TEXT, as tokenHash)
 *   id       session id, unless ID is NONE: in an entry of a user's bucket (bucket.ts); a record of
 *            its own has none, its key names it. RAW: the 16 bytes that an id from `sessionIdFor`
 *            holds after the bucket's tag, as canonical base64url (keys.ts); else TEXT
 *   text     userId
 *   text     claims: their JSON text (an object's: starting with `{`) without its outer braces;
 *            never parsed in Lua
 *   -- the client part, replaced whole by a rotation (Node encodes it: `encodeClient`) --
 *   text     userAgent, if C_AGENT
 *   ip       4 bytes if IP is V4 (canonical dotted quads only, so it round-trips), text if TEXT
 * A `time` is a 4-byte unsigned offset from createdAt if its mode says OFFSET (only with F_INT,
 * for an integer offset below 2^32 that gives the time back exactly), else an 8-byte double.
 * `count` and text lengths: one byte below 255, else 255 and 4 bytes. Text is UTF-8.
 * The flags word: bits 0-1 LAST_USED (0 STORED, 1 OFFSET, 2 ROTATED, 3 CREATED); bits 2-3
 * EXPIRES (0 STORED, 1 OFFSET, 2 ABSOLUTE); bit 4 F_ABSOLUTE_OFFSET; bit 5 F_INT; bit 6
 * F_TOKEN_RAW; bit 7 F_NO_GRACE; bits 8-10 the client flags (`encodeClient`: bits 0-1 IP, 0 NONE,
 * 1 TEXT, 2 V4; bit 2 C_AGENT); bits 11-15 ROTATED + 3 × PREVIOUS + 9 × ID (ROTATED: 0 NONE,
 * 1 OFFSET, 2 STORED; PREVIOUS and ID: 0 NONE, 1 RAW, 2 TEXT).
 * The Lua scripts read and write the same layout (`LUA_PACKED`), keeping what they do not change.
 */

const LAST_USED_OFFSET = 1
const LAST_USED_ROTATED = 2
const LAST_USED_CREATED = 3
const EXPIRES_OFFSET = 1
const EXPIRES_ABSOLUTE = 2
const F_ABSOLUTE_OFFSET = 16
const F_INT = 32
const F_TOKEN_RAW = 64
const F_NO_GRACE = 128
const CLIENT_SHIFT = 256
const MIXED_SHIFT = 2048
const IP_TEXT = 1
const IP_V4 = 2
const C_AGENT = 4
/** The three-state fields of bits 11-15: NONE, then OFFSET or RAW, then STORED or TEXT. */
const NONE = 0
const FIRST = 1
const SECOND = 2

/** Largest count or text length the 4-byte form holds. */
const MAX_LENGTH = 0xFFFFFFFF
/** createdAt below this is stored in 6 bytes; offsets below 2^32 in 4. */
const MAX_INT = 2 ** 48
const MAX_OFFSET = 2 ** 32

/** Appends to a list of chunks, concatenated once at the end. */
class Writer {
  readonly chunks: Buffer[] = []
  byte (value: number): void { this.chunks.push(Buffer.of(value)) }
  double (value: number): void {
    const chunk = Buffer.allocUnsafe(8)
    chunk.writeDoubleBE(value)
    this.chunks.push(chunk)
  }

  uint (value: number, size: number): void {
    const chunk = Buffer.allocUnsafe(size)
    chunk.writeUIntBE(value, 0, size)
    this.chunks.push(chunk)
  }

  count (value: number): void {
    if (value < 255) return this.byte(value)
    this.byte(255)
    this.uint(value, 4)
  }

  text (value: string): void {
    const bytes = Buffer.from(value, 'utf8')
    this.count(bytes.length)
    this.chunks.push(bytes)
  }

  done (): Buffer { return Buffer.concat(this.chunks) }
}

class Reader {
  position = 0
  constructor (readonly raw: Buffer) {}
  bytes (length: number): Buffer {
    const value = this.raw.subarray(this.position, this.position + length)
    if (value.length !== length) throw new Error('RedisStore: a packed record ends early')
    this.position += length
    return value
  }

  uint (size: number): number { return this.bytes(size).readUIntBE(0, size) }
  double (): number { return this.bytes(8).readDoubleBE(0) }
  count (): number {
    const first = this.uint(1)
    return first < 255 ? first : this.uint(4)
  }

  text (): string { return this.bytes(this.count()).toString('utf8') }
}

/** The bytes `text` is the canonical base64url of, if it is that and they are `length` long. */
function canonicalBytes (text: string, length: number): Buffer | undefined {
  const raw = Buffer.from(text, 'base64url')
  return raw.length === length && raw.toString('base64url') === text ? raw : undefined
}

/** The 32 bytes a hash is the canonical base64url of, or undefined if it is anything else. */
function rawHash (hash: string): Buffer | undefined {
  return hash.length === 43 ? canonicalBytes(hash, 32) : undefined
}

/** The 16 bytes of an id from `sessionIdFor` for the bucket's `tag` (keys.ts), else undefined. */
function rawId (id: string, tag: string): Buffer | undefined {
  return tag !== '' && id.length === tag.length + 22 && id.startsWith(tag) ? canonicalBytes(id.slice(tag.length), 16) : undefined
}

/**
 * A hash as the scripts compare it with a stored one: 1 and the raw bytes, or 2 and the text.
 * Every packed record holds its hashes in this one canonical form, so equal hashes give equal
 * strings.
 */
export function taggedHash (hash: string): Buffer {
  const raw = rawHash(hash)
  return raw === undefined ? Buffer.concat([Buffer.of(2), Buffer.from(hash, 'utf8')]) : Buffer.concat([Buffer.of(1), raw])
}

/** The 4 bytes of a canonical dotted-quad IPv4 address (no leading zeros), else undefined. */
function ipv4Bytes (ip: string): Buffer | undefined {
  const parts = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip)?.slice(1)
  if (parts === undefined || parts.some((part) => String(Number(part)) !== part || Number(part) > 255)) return undefined
  return Buffer.from(parts.map(Number))
}

/** The client part: its flags byte (bits 8-10 of the flags word), then userAgent and ip as the layout says. */
export function encodeClient (userAgent: string | null, ip: string | null): Buffer {
  const out = new Writer()
  const v4 = ip === null ? undefined : ipv4Bytes(ip)
  out.byte((userAgent === null ? 0 : C_AGENT) | (ip === null ? 0 : v4 === undefined ? IP_TEXT : IP_V4))
  if (userAgent !== null) out.text(userAgent)
  if (v4 !== undefined) out.chunks.push(v4)
  else if (ip !== null) out.text(ip)
  return out.done()
}

/** Whether `raw` is a packed record (else it is JSON, record.ts, which starts with `[`). */
export function isPacked (raw: Buffer): boolean {
  return raw[0] !== 0x5B
}

/** Claims as the layout holds them: their JSON text without its outer braces, if it is an object's. */
function claimsText (claims: Record<string, unknown>): string | undefined {
  const text = JSON.stringify(claims) as string | undefined
  return text?.startsWith('{') === true ? text.slice(1, -1) : undefined
}

/** Whether every value of `session` fits the layout; one that does not is stored as JSON. */
export function packable (session: SessionRecord): boolean {
  return Number.isInteger(session.graceUses) && session.graceUses >= 0 && session.graceUses <= MAX_LENGTH &&
    claimsText(session.claims) !== undefined
}

/** Whether `createdAt` is stored as a 6-byte integer, which lets the other times be offsets. */
function isInt (createdAt: number): boolean {
  return Number.isInteger(createdAt) && createdAt >= 0 && createdAt < MAX_INT && !Object.is(createdAt, -0)
}

/**
 * A packed record. `withId`: holding its session id, as an entry of a bucket (bucket.ts) does;
 * a string is the bucket's tag, which lets an id from `sessionIdFor` be stored as its 16 bytes.
 */
export function encodePacked (session: SessionRecord, withId: boolean | string = false): Buffer {
  const { createdAt, lastUsedAt, expiresAt, absoluteExpiresAt, rotatedAt, tokenHash, previousTokenHash } = session
  const token = rawHash(tokenHash)
  const previous = previousTokenHash === null ? undefined : rawHash(previousTokenHash)
  const id = typeof withId === 'string' ? rawId(session.id, withId) : undefined
  const int = isInt(createdAt)
  const client = encodeClient(session.userAgent, session.ip)
  const times = new Writer()
  // A time as an offset (mode 1) when it can be, else a double (mode 0).
  const time = (value: number): number => {
    const offset = value - createdAt
    if (int && Number.isInteger(offset) && offset >= 0 && offset < MAX_OFFSET && Object.is(createdAt + offset, value)) {
      times.uint(offset, 4)
      return 1
    }
    times.double(value)
    return 0
  }
  if (int) times.uint(createdAt, 6)
  else times.double(createdAt)
  const lastUsed = rotatedAt !== null && Object.is(lastUsedAt, rotatedAt)
    ? LAST_USED_ROTATED
    : Object.is(lastUsedAt, createdAt) ? LAST_USED_CREATED : time(lastUsedAt)
  const expires = Object.is(expiresAt, absoluteExpiresAt) ? EXPIRES_ABSOLUTE : time(expiresAt)
  const absolute = time(absoluteExpiresAt) === 1 ? F_ABSOLUTE_OFFSET : 0
  const rotated = rotatedAt === null ? NONE : time(rotatedAt) === 1 ? FIRST : SECOND
  const out = new Writer()
  const mixed = rotated + 3 * (previousTokenHash === null ? NONE : previous === undefined ? SECOND : FIRST) +
    9 * (withId === false ? NONE : id === undefined ? SECOND : FIRST)
  const low = lastUsed | (expires << 2) | absolute | (int ? F_INT : 0) | (token === undefined ? 0 : F_TOKEN_RAW) |
    (session.graceUses === 0 ? F_NO_GRACE : 0)
  out.uint(low + (client[0] as number) * CLIENT_SHIFT + mixed * MIXED_SHIFT, 2)
  out.chunks.push(...times.chunks)
  if (session.graceUses !== 0) out.count(session.graceUses)
  if (token === undefined) out.text(tokenHash)
  else out.chunks.push(token)
  if (previousTokenHash !== null) {
    if (previous === undefined) out.text(previousTokenHash)
    else out.chunks.push(previous)
  }
  if (withId !== false) {
    if (id === undefined) out.text(session.id)
    else out.chunks.push(id)
  }
  out.text(session.userId)
  out.text(claimsText(session.claims) as string)
  out.chunks.push(client.subarray(1))
  return out.done()
}

/**
 * A packed record read back; its id is the one it holds, if it holds one, else `id`. An id held
 * as its 16 bytes starts with `tag`, the bucket's: by default that of `id`, the id asked for.
 */
export function decodePacked (id: string, raw: Buffer, tag = id.slice(0, Math.max(0, id.length - 22))): SessionRecord {
  const input = new Reader(raw)
  const flags = input.uint(2)
  const has = (flag: number): boolean => (flags & flag) !== 0
  const mixed = Math.floor(flags / MIXED_SHIFT)
  const client = (flags / CLIENT_SHIFT) & 7
  const createdAt = has(F_INT) ? input.uint(6) : input.double()
  const time = (offset: boolean): number => offset ? createdAt + input.uint(4) : input.double()
  const lastUsedMode = flags & 3
  const expiresMode = (flags >> 2) & 3
  const storedLastUsed = lastUsedMode < LAST_USED_ROTATED ? time(lastUsedMode === LAST_USED_OFFSET) : undefined
  const storedExpires = expiresMode === EXPIRES_ABSOLUTE ? undefined : time(expiresMode === EXPIRES_OFFSET)
  const absoluteExpiresAt = time(has(F_ABSOLUTE_OFFSET))
  const rotatedAt = mixed % 3 === NONE ? null : time(mixed % 3 === FIRST)
  const graceUses = has(F_NO_GRACE) ? 0 : input.count()
  const hash = (raw: boolean): string => raw ? input.bytes(32).toString('base64url') : input.text()
  const tokenHash = hash(has(F_TOKEN_RAW))
  const previous = Math.floor(mixed / 3) % 3
  const previousTokenHash = previous === NONE ? null : hash(previous === FIRST)
  const idForm = Math.floor(mixed / 9)
  const storedId = idForm === NONE ? id : idForm === FIRST ? tag + input.bytes(16).toString('base64url') : input.text()
  const userId = input.text()
  const claims = JSON.parse(`{${input.text()}}`) as Record<string, unknown>
  const userAgent = (client & C_AGENT) === 0 ? null : input.text()
  const ipForm = client & 3
  const ip = ipForm === 0 ? null : ipForm === IP_TEXT ? input.text() : [...input.bytes(4)].join('.')
  return {
    id: storedId,
    userId,
    claims,
    createdAt,
    lastUsedAt: storedLastUsed ?? (lastUsedMode === LAST_USED_ROTATED ? rotatedAt as number : createdAt),
    expiresAt: storedExpires ?? absoluteExpiresAt,
    absoluteExpiresAt,
    tokenHash,
    previousTokenHash,
    rotatedAt,
    graceUses,
    userAgent,
    ip
  }
}

/**
 * Lua: the same layout, for the scripts. `decodePacked(raw, tag)` gives a table of the fields
 * the scripts use (times as numbers, hashes tagged as `taggedHash` makes them, the id as text,
 * `tag` put back before an id held as 16 bytes, the client part as its flags and bytes,
 * untouched); `encodePacked(s)` writes one back. Lua's `struct` and `bit` libraries are built
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
-- A hash as taggedHash makes it: 1 and 32 raw bytes, or 2 and the text.
local function packedHash(raw, pos, isRaw)
  if isRaw then return '\\1' .. string.sub(raw, pos, pos + 31), pos + 32 end
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
  local pos, created = 3, nil
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
  out[#out + 1] = s.client
  return struct.pack('>I2', flags + s.clientFlags * ${CLIENT_SHIFT} + mixed * ${MIXED_SHIFT}) .. table.concat(out)
end
`
