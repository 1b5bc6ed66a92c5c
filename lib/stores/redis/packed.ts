import type { SessionRecord } from '../types.js'

/*
 * The packed record (recordFormat 'packed', the default): a binary string about 30% smaller
 * than the JSON array of record.ts, which Redis stores byte for byte (its strings are binary-safe).
 * Layout, integers big-endian:
 *   1 byte   VERSION (1). A JSON record starts with `[` (0x5B): the first byte tells them apart.
 *   1 byte   header flags (F_* below)
 *   1 byte   client flags (C_* below)
 *   8 bytes  createdAt (IEEE double: any number the contract allows round-trips, up to
 *            Number.MAX_SAFE_INTEGER, at 2 bytes more than the 48-bit integers ms times need now)
 *   8 bytes  lastUsedAt, unless F_LAST_USED_IS_ROTATED or F_LAST_USED_IS_CREATED
 *   8 bytes  expiresAt, unless F_EXPIRES_IS_ABSOLUTE
 *   8 bytes  absoluteExpiresAt
 *   8 bytes  rotatedAt, if F_ROTATED
 *   count    graceUses
 *   hash     tokenHash: 32 raw bytes if F_TOKEN_RAW (the hash is canonical base64url of 32 bytes,
 *            as every SHA-256 the plugin makes is; kept whole, so it round-trips exactly), else text
 *   hash     previousTokenHash, if F_PREVIOUS (raw if F_PREVIOUS_RAW)
 *   text     session id, if F_ID: in an entry of a user's bucket (bucket.ts); a record of its
 *            own has none, its key names it
 *   text     userId
 *   text     claims (their JSON text; never parsed in Lua)
 *   -- the client part, replaced whole by a rotation (Node encodes it: `encodeClient`) --
 *   text     userAgent, if C_AGENT
 *   4 bytes  ip as IPv4 if C_IPV4 (canonical dotted quads only, so it round-trips), else text, if C_IP
 * `count` and text lengths: one byte below 255, else 255 and 4 bytes. Text is UTF-8.
 * The Lua scripts read and write the same layout (`LUA_PACKED`), keeping what they do not change.
 */

const VERSION = 1
const F_ROTATED = 1
const F_LAST_USED_IS_ROTATED = 2
const F_LAST_USED_IS_CREATED = 4
const F_EXPIRES_IS_ABSOLUTE = 8
const F_PREVIOUS = 16
const F_TOKEN_RAW = 32
const F_PREVIOUS_RAW = 64
const F_ID = 128
const C_AGENT = 1
const C_IP = 2
const C_IPV4 = 4

/** Largest count or text length the 4-byte form holds. */
const MAX_LENGTH = 0xFFFFFFFF

/** Appends to a list of chunks, concatenated once at the end. */
class Writer {
  readonly chunks: Buffer[] = []
  byte (value: number): void { this.chunks.push(Buffer.of(value)) }
  double (value: number): void {
    const chunk = Buffer.allocUnsafe(8)
    chunk.writeDoubleBE(value)
    this.chunks.push(chunk)
  }

  count (value: number): void {
    if (value < 255) return this.byte(value)
    const chunk = Buffer.allocUnsafe(5)
    chunk[0] = 255
    chunk.writeUInt32BE(value, 1)
    this.chunks.push(chunk)
  }

  text (value: string | Buffer): void {
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value
    this.count(bytes.length)
    this.chunks.push(bytes)
  }

  done (): Buffer { return Buffer.concat(this.chunks) }
}

class Reader {
  position = 0
  constructor (readonly raw: Buffer) {}
  byte (): number { return this.raw[this.position++] as number }
  double (): number {
    const value = this.raw.readDoubleBE(this.position)
    this.position += 8
    return value
  }

  count (): number {
    const first = this.byte()
    if (first < 255) return first
    const value = this.raw.readUInt32BE(this.position)
    this.position += 4
    return value
  }

  bytes (length: number): Buffer {
    const value = this.raw.subarray(this.position, this.position + length)
    if (value.length !== length) throw new Error('RedisStore: a packed record ends early')
    this.position += length
    return value
  }

  text (): string { return this.bytes(this.count()).toString('utf8') }
}

/** The 32 bytes a hash is the canonical base64url of, or undefined if it is anything else. */
function rawHash (hash: string): Buffer | undefined {
  if (hash.length !== 43) return undefined
  const raw = Buffer.from(hash, 'base64url')
  return raw.length === 32 && raw.toString('base64url') === hash ? raw : undefined
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

/** The client part: its flags byte, then userAgent and ip as the layout says. */
export function encodeClient (userAgent: string | null, ip: string | null): Buffer {
  const out = new Writer()
  const v4 = ip === null ? undefined : ipv4Bytes(ip)
  out.byte((userAgent === null ? 0 : C_AGENT) | (ip === null ? 0 : C_IP) | (v4 === undefined ? 0 : C_IPV4))
  if (userAgent !== null) out.text(userAgent)
  if (v4 !== undefined) out.chunks.push(v4)
  else if (ip !== null) out.text(ip)
  return out.done()
}

/** Whether `raw` is a packed record (else it is JSON, record.ts). */
export function isPacked (raw: Buffer): boolean {
  return raw[0] === VERSION
}

/** Whether every number of `session` fits the layout; one that does not is stored as JSON. */
export function packable (session: SessionRecord): boolean {
  return Number.isInteger(session.graceUses) && session.graceUses >= 0 && session.graceUses <= MAX_LENGTH
}

/** A packed record; `withId`: holding its session id, as an entry of a bucket (bucket.ts) does. */
export function encodePacked (session: SessionRecord, withId = false): Buffer {
  const { createdAt, lastUsedAt, expiresAt, absoluteExpiresAt, rotatedAt, tokenHash, previousTokenHash } = session
  const token = rawHash(tokenHash)
  const previous = previousTokenHash === null ? undefined : rawHash(previousTokenHash)
  const lastUsedIsRotated = rotatedAt !== null && Object.is(lastUsedAt, rotatedAt)
  const lastUsedIsCreated = !lastUsedIsRotated && Object.is(lastUsedAt, createdAt)
  const client = encodeClient(session.userAgent, session.ip)
  const out = new Writer()
  out.byte(VERSION)
  out.byte((rotatedAt === null ? 0 : F_ROTATED) | (lastUsedIsRotated ? F_LAST_USED_IS_ROTATED : 0) |
    (lastUsedIsCreated ? F_LAST_USED_IS_CREATED : 0) | (Object.is(expiresAt, absoluteExpiresAt) ? F_EXPIRES_IS_ABSOLUTE : 0) |
    (previousTokenHash === null ? 0 : F_PREVIOUS) | (token === undefined ? 0 : F_TOKEN_RAW) | (previous === undefined ? 0 : F_PREVIOUS_RAW) | (withId ? F_ID : 0))
  out.byte(client[0] as number)
  out.double(createdAt)
  if (!lastUsedIsRotated && !lastUsedIsCreated) out.double(lastUsedAt)
  if (!Object.is(expiresAt, absoluteExpiresAt)) out.double(expiresAt)
  out.double(absoluteExpiresAt)
  if (rotatedAt !== null) out.double(rotatedAt)
  out.count(session.graceUses)
  if (token === undefined) out.text(tokenHash)
  else out.chunks.push(token)
  if (previousTokenHash !== null) {
    if (previous === undefined) out.text(previousTokenHash)
    else out.chunks.push(previous)
  }
  if (withId) out.text(session.id)
  out.text(session.userId)
  out.text(JSON.stringify(session.claims))
  out.chunks.push(client.subarray(1))
  return out.done()
}

/** A packed record read back; its id is the one it holds, if it holds one, else `id`. */
export function decodePacked (id: string, raw: Buffer): SessionRecord {
  const input = new Reader(raw)
  input.byte()
  const flags = input.byte()
  const client = input.byte()
  const has = (flag: number): boolean => (flags & flag) !== 0
  const createdAt = input.double()
  const storedLastUsed = has(F_LAST_USED_IS_ROTATED) || has(F_LAST_USED_IS_CREATED) ? undefined : input.double()
  const storedExpires = has(F_EXPIRES_IS_ABSOLUTE) ? undefined : input.double()
  const absoluteExpiresAt = input.double()
  const rotatedAt = has(F_ROTATED) ? input.double() : null
  const graceUses = input.count()
  const hash = (raw: boolean): string => raw ? input.bytes(32).toString('base64url') : input.text()
  const tokenHash = hash(has(F_TOKEN_RAW))
  const previousTokenHash = has(F_PREVIOUS) ? hash(has(F_PREVIOUS_RAW)) : null
  const storedId = has(F_ID) ? input.text() : id
  const userId = input.text()
  const claims = JSON.parse(input.text()) as Record<string, unknown>
  const userAgent = (client & C_AGENT) === 0 ? null : input.text()
  const ip = (client & C_IP) === 0 ? null : (client & C_IPV4) === 0 ? input.text() : [...input.bytes(4)].join('.')
  return {
    id: storedId,
    userId,
    claims,
    createdAt,
    lastUsedAt: storedLastUsed ?? (has(F_LAST_USED_IS_ROTATED) ? rotatedAt as number : createdAt),
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
 * Lua: the same layout, for the scripts. `decodePacked(raw)` gives a table of the fields the
 * scripts use (times as numbers, hashes tagged as `taggedHash` makes them, the client part as
 * its flags and bytes, untouched); `encodePacked(s)` writes one back. Lua's `struct` and `bit`
 * libraries are built into Redis.
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

local function decodePacked(raw)
  local flags, client = string.byte(raw, 2, 3)
  local function has(flag) return bit.band(flags, flag) ~= 0 end
  local s = { packed = true, clientFlags = client }
  local pos = 4
  s.created, pos = struct.unpack('>d', raw, pos)
  if not (has(${F_LAST_USED_IS_ROTATED}) or has(${F_LAST_USED_IS_CREATED})) then s.lastUsed, pos = struct.unpack('>d', raw, pos) end
  if not has(${F_EXPIRES_IS_ABSOLUTE}) then s.expires, pos = struct.unpack('>d', raw, pos) end
  s.absolute, pos = struct.unpack('>d', raw, pos)
  if has(${F_ROTATED}) then s.rotated, pos = struct.unpack('>d', raw, pos) end
  if has(${F_LAST_USED_IS_ROTATED}) then s.lastUsed = s.rotated elseif has(${F_LAST_USED_IS_CREATED}) then s.lastUsed = s.created end
  s.expires = s.expires or s.absolute
  s.grace, pos = packedCount(raw, pos)
  s.token, pos = packedHash(raw, pos, has(${F_TOKEN_RAW}))
  if has(${F_PREVIOUS}) then s.previous, pos = packedHash(raw, pos, has(${F_PREVIOUS_RAW})) end
  if has(${F_ID}) then s.id, pos = packedText(raw, pos) end
  s.user, pos = packedText(raw, pos)
  s.claims, pos = packedText(raw, pos)
  s.client = string.sub(raw, pos)
  return s
end

local function encodePacked(s)
  local flags, out = 0, {}
  local function time(t) out[#out + 1] = struct.pack('>d', t) end
  local function hash(h, rawFlag)
    if string.sub(h, 1, 1) == '\\1' then
      flags = flags + rawFlag
      out[#out + 1] = string.sub(h, 2)
    else
      out[#out + 1] = packText(string.sub(h, 2))
    end
  end
  time(s.created)
  if s.rotated and s.lastUsed == s.rotated then
    flags = flags + ${F_LAST_USED_IS_ROTATED}
  elseif s.lastUsed == s.created then
    flags = flags + ${F_LAST_USED_IS_CREATED}
  else
    time(s.lastUsed)
  end
  if s.expires == s.absolute then flags = flags + ${F_EXPIRES_IS_ABSOLUTE} else time(s.expires) end
  time(s.absolute)
  if s.rotated then
    flags = flags + ${F_ROTATED}
    time(s.rotated)
  end
  out[#out + 1] = packCount(s.grace)
  hash(s.token, ${F_TOKEN_RAW})
  if s.previous then
    flags = flags + ${F_PREVIOUS}
    hash(s.previous, ${F_PREVIOUS_RAW})
  end
  if s.id then
    flags = flags + ${F_ID}
    out[#out + 1] = packText(s.id)
  end
  out[#out + 1] = packText(s.user)
  out[#out + 1] = packText(s.claims)
  out[#out + 1] = s.client
  return string.char(${VERSION}, flags, s.clientFlags) .. table.concat(out)
end
`
