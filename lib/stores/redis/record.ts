import type { SessionRecord } from '../types.js'
import { decodePacked, encodePacked, isPacked, packable } from './packed.js'
import { LUA_PACKED } from './packed-lua.js'

/*
 * A record is stored in one of two formats, told apart by its first byte:
 * - packed (packed.ts), the default: binary, about 30% smaller;
 * - JSON (this file), what every earlier release wrote and reads: an array of strings and nulls,
 *   numbers written as decimal strings (Lua's cjson would print numbers with 14 significant
 *   digits, so numbers are never re-encoded as numbers), claims stored as their JSON text, which
 *   Lua never parses.
 * Both are read everywhere, in Node and in the scripts; a script rewrites a record in the format
 * it found it in, so records of the earlier release stay readable by it (the store option
 * `recordFormat` decides only the format of new records: docs/stores.md, «Upgrading»).
 */

/** The format new records are written in (`RedisStoreOptions.recordFormat`). */
export type RecordFormat = 'packed' | 'json'

type Field = Exclude<keyof SessionRecord, 'id'>

/** How one field is written in the array, and read back. */
interface Codec<T> {
  encode (value: T): string | null
  decode (stored: string | null): T
}

const text: Codec<string> = { encode: (value) => value, decode: (stored) => stored as string }
const optionalText: Codec<string | null> = { encode: (value) => value, decode: (stored) => stored }
const number: Codec<number> = { encode: String, decode: Number }
const optionalNumber: Codec<number | null> = {
  encode: (value) => value === null ? null : String(value),
  decode: (stored) => stored === null ? null : Number(stored)
}
function json<T> (): Codec<T> {
  return { encode: (value) => JSON.stringify(value), decode: (stored) => JSON.parse(stored as string) as T }
}

/**
 * The one definition of a stored record: every field of `SessionRecord` but `id` (the key holds
 * it), in array order, with the name the scripts know its position by. Both the array written
 * and read here and the scripts' position constants (`LUA_FIELD_POSITIONS`) follow this order,
 * so they cannot disagree; `satisfies` refuses a field left out or one `SessionRecord` lacks.
 * Reordering it changes the format of records already in Redis: add new fields at the end.
 */
const RECORD_FIELDS = {
  userId: { lua: 'USER', codec: text },
  claims: { lua: 'CLAIMS', codec: json<Record<string, unknown>>() },
  createdAt: { lua: 'CREATED', codec: number },
  lastUsedAt: { lua: 'LAST_USED', codec: number },
  expiresAt: { lua: 'EXPIRES', codec: number },
  absoluteExpiresAt: { lua: 'ABSOLUTE', codec: number },
  tokenHash: { lua: 'TOKEN', codec: text },
  previousTokenHash: { lua: 'PREVIOUS', codec: optionalText },
  rotatedAt: { lua: 'ROTATED', codec: optionalNumber },
  graceUses: { lua: 'GRACE_USES', codec: number },
  userAgent: { lua: 'AGENT', codec: optionalText },
  ip: { lua: 'IP', codec: optionalText },
  // Added by issue 13: a record of an earlier release ends before them (see `withPolicyDefaults`).
  firstUserAgent: { lua: 'FIRST_AGENT', codec: optionalText },
  firstIp: { lua: 'FIRST_IP', codec: optionalText },
  authentication: { lua: 'AUTH', codec: json<SessionRecord['authentication']>() },
  claimsVersion: { lua: 'CLAIMS_VERSION', codec: number }
} satisfies { [K in Field]: { lua: string, codec: Codec<SessionRecord[K]> } }

// Each codec fits its own field (checked above); the loops below see them all as one type.
const FIELDS = Object.entries(RECORD_FIELDS) as Array<[Field, { lua: string, codec: Codec<unknown> }]>

/** Lua: each field's position in a decoded JSON record (1-based), e.g. `local USER, CLAIMS = 1, 2`. */
const LUA_FIELD_POSITIONS =
  `local ${FIELDS.map(([, { lua }]) => lua).join(', ')} = ${FIELDS.map((_, index) => index + 1).join(', ')}`

/** A record as stored: packed when asked for and every value fits the layout, else JSON. */
export function encodeRecord (session: SessionRecord, format: RecordFormat): string | Buffer {
  if (format === 'packed' && packable(session)) return encodePacked(session)
  return JSON.stringify(FIELDS.map(([field, { codec }]) => codec.encode(session[field])))
}

/** A stored record, either format, read back with the id its key names. */
export function decodeRecord (id: string, raw: Buffer): SessionRecord {
  if (!Buffer.isBuffer(raw)) {
    // A client that ignored the request for binary replies would have mangled a packed record.
    throw new TypeError('RedisStore: a record was read as text, not bytes: the client must honour per-command binary replies')
  }
  if (isPacked(raw)) return decodePacked(id, raw)
  const stored = JSON.parse(raw.toString('utf8')) as Array<string | null>
  const session: Record<string, unknown> = { id }
  for (const [index, [field, { codec }]] of FIELDS.entries()) {
    if (index < stored.length) session[field] = codec.decode(stored[index] as string | null)
  }
  return stored.length < FIELDS.length ? withPolicyDefaults(session as unknown as SessionRecord) : session as unknown as SessionRecord
}

/**
 * A record written before issue 13 holds no policy fields: its first client is taken to be its
 * latest, its authentication its login, its claims version 0. The scripts fill in the same
 * (`decodeJson`), so a record they rewrite keeps these values. (The earlier release reads the
 * fields it knows and ignores the rest, but a rotation by it writes them without these: during a
 * rolling upgrade such a session falls back to the defaults, its claims version to 0 included.)
 */
function withPolicyDefaults (session: SessionRecord): SessionRecord {
  return { ...session, firstUserAgent: session.userAgent, firstIp: session.ip, authentication: { time: session.createdAt }, claimsVersion: 0 }
}

/**
 * Lua: `decodeRecord(raw)` reads a record of either format into one table (times and graceUses
 * as numbers; hashes as text for JSON records, tagged bytes for packed ones); `encodeRecord(s)`
 * writes it back in the format it was read in. A JSON record's numbers are written with 17
 * significant digits, which give back the very double Node wrote.
 */
export const LUA_RECORD = `
${LUA_FIELD_POSITIONS}
${LUA_PACKED}
local function decodeJson(raw)
  local a = cjson.decode(raw)
  local s = { packed = false, user = a[USER], claims = a[CLAIMS], token = a[TOKEN], agent = a[AGENT], ip = a[IP] }
  s.created, s.lastUsed = tonumber(a[CREATED]), tonumber(a[LAST_USED])
  s.expires, s.absolute = tonumber(a[EXPIRES]), tonumber(a[ABSOLUTE])
  s.grace = tonumber(a[GRACE_USES])
  if a[PREVIOUS] ~= cjson.null then s.previous = a[PREVIOUS] end
  if a[ROTATED] ~= cjson.null then s.rotated = tonumber(a[ROTATED]) end
  if a[CLAIMS_VERSION] == nil then
    -- Written before issue 13: the defaults of record.ts (withPolicyDefaults).
    s.firstAgent, s.firstIp, s.version = s.agent, s.ip, 0
    s.auth = '{"time":' .. string.format('%.17g', s.created) .. '}'
  else
    s.firstAgent, s.firstIp, s.auth, s.version = a[FIRST_AGENT], a[FIRST_IP], a[AUTH], tonumber(a[CLAIMS_VERSION])
  end
  return s
end

local function encodeJson(s)
  local function number(n) return string.format('%.17g', n) end
  local a = {}
  a[USER], a[CLAIMS], a[TOKEN], a[AGENT], a[IP] = s.user, s.claims, s.token, s.agent, s.ip
  a[CREATED], a[LAST_USED] = number(s.created), number(s.lastUsed)
  a[EXPIRES], a[ABSOLUTE] = number(s.expires), number(s.absolute)
  a[GRACE_USES] = number(s.grace)
  a[PREVIOUS] = s.previous or cjson.null
  a[ROTATED] = s.rotated and number(s.rotated) or cjson.null
  a[FIRST_AGENT], a[FIRST_IP], a[AUTH], a[CLAIMS_VERSION] = s.firstAgent, s.firstIp, s.auth, number(s.version)
  return cjson.encode(a)
end

local function decodeRecord(raw)
  if string.byte(raw, 1) == 91 then return decodeJson(raw) end
  return decodePacked(raw, '')
end

local function encodeRecord(s)
  if s.packed then return encodePacked(s) end
  return encodeJson(s)
end
`
