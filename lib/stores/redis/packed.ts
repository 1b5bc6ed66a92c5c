import type { Authentication, SessionRecord } from '../types.js'
import {
  AUTH_TIME_OFFSET, AUTH_TIME_STORED, CLIENT_SHIFT, C_AGENT, EXPIRES_ABSOLUTE, EXPIRES_OFFSET, FIRST, F_ABSOLUTE_OFFSET, F_INT, F_NO_GRACE,
  F_TOKEN_RAW, IP_TEXT, RAW_HASH_BYTES, IP_V4, LAST_USED_CREATED, LAST_USED_OFFSET, LAST_USED_ROTATED, MAX_INT, MAX_LENGTH,
  MAX_OFFSET, MIXED_SHIFT, NONE, SECOND, X_ACR, X_AMR, X_FIRST, X_VERSION
} from './packed-layout.js'

/* The packed record in Node: the layout is packed-layout.ts's. */

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

/** The `RAW_HASH_BYTES` a hash is the canonical base64url of, or undefined if it is anything else. */
function rawHash (hash: string): Buffer | undefined {
  return hash.length === 22 ? canonicalBytes(hash, RAW_HASH_BYTES) : undefined
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

/**
 * The "auth extra" of the layout: its policy flags (X_ACR, X_AMR) as the first byte, then acr and
 * amr as the layout says. A rotation passes it whole to the scripts.
 */
export function encodeAuthExtra (authentication: Authentication): Buffer {
  const out = new Writer()
  const { acr, amr } = authentication
  out.byte((acr === undefined ? 0 : X_ACR) | (amr === undefined ? 0 : X_AMR))
  if (acr !== undefined) out.text(acr)
  if (amr !== undefined) out.text(JSON.stringify(amr))
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
  const count = (value: number): boolean => Number.isInteger(value) && value >= 0 && value <= MAX_LENGTH
  return count(session.graceUses) && count(session.claimsVersion) && claimsText(session.claims) !== undefined
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
  const { authentication, claimsVersion } = session
  let policy = 0
  if (!Object.is(authentication.time, createdAt)) {
    times.chunks.length = 0 // already copied to out: now collects the one time below
    policy = time(authentication.time) === 1 ? AUTH_TIME_OFFSET : AUTH_TIME_STORED
    out.chunks.push(...times.chunks)
  }
  const extra = encodeAuthExtra(authentication)
  policy |= extra[0] as number
  out.chunks.push(extra.subarray(1))
  if (claimsVersion !== 0) {
    policy |= X_VERSION
    out.count(claimsVersion)
  }
  const first = encodeClient(session.firstUserAgent, session.firstIp)
  if (!first.equals(client)) {
    policy |= X_FIRST
    out.count(first.length)
    out.chunks.push(first)
  }
  out.chunks.push(client.subarray(1))
  out.chunks.splice(1, 0, Buffer.of(policy))
  return out.done()
}

/**
 * A packed record read back; its id is the one it holds, if it holds one, else `id`. An id held
 * as its 16 bytes starts with `tag`, the bucket's: by default that of `id`, the id asked for.
 */
export function decodePacked (id: string, raw: Buffer, tag = id.slice(0, Math.max(0, id.length - 22))): SessionRecord {
  const input = new Reader(raw)
  const flags = input.uint(2)
  const policy = input.uint(1)
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
  const hash = (raw: boolean): string => raw ? input.bytes(RAW_HASH_BYTES).toString('base64url') : input.text()
  const tokenHash = hash(has(F_TOKEN_RAW))
  const previous = Math.floor(mixed / 3) % 3
  const previousTokenHash = previous === NONE ? null : hash(previous === FIRST)
  const idForm = Math.floor(mixed / 9)
  const storedId = idForm === NONE ? id : idForm === FIRST ? tag + input.bytes(16).toString('base64url') : input.text()
  const userId = input.text()
  const claims = JSON.parse(`{${input.text()}}`) as Record<string, unknown>
  const authTime = policy & 3
  const authentication: Authentication = { time: authTime === 0 ? createdAt : time(authTime === AUTH_TIME_OFFSET) }
  if ((policy & X_ACR) !== 0) authentication.acr = input.text()
  if ((policy & X_AMR) !== 0) authentication.amr = JSON.parse(input.text()) as string[]
  const claimsVersion = (policy & X_VERSION) === 0 ? 0 : input.count()
  const first = (policy & X_FIRST) === 0 ? undefined : decodeClient(new Reader(input.bytes(input.count())))
  const { userAgent, ip } = decodeClient(input, client)
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
    ip,
    firstUserAgent: first === undefined ? userAgent : first.userAgent,
    firstIp: first === undefined ? ip : first.ip,
    authentication,
    claimsVersion
  }
}

/** A client part read back; `flags`: its flags byte, when the flags word held it. */
function decodeClient (input: Reader, flags = input.uint(1)): { userAgent: string | null, ip: string | null } {
  const userAgent = (flags & C_AGENT) === 0 ? null : input.text()
  const ipForm = flags & 3
  const ip = ipForm === 0 ? null : ipForm === IP_TEXT ? input.text() : [...input.bytes(4)].join('.')
  return { userAgent, ip }
}
