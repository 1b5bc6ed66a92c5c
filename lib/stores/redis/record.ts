import type { SessionRecord } from '../types.js'

/*
 * A record is a JSON array of strings and nulls, numbers written as decimal strings: Lua's cjson
 * would print numbers with 14 significant digits, so numbers are never re-encoded as numbers,
 * and claims are stored as their JSON text, which Lua never parses.
 */

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
const json: Codec<Record<string, unknown>> = { encode: (value) => JSON.stringify(value), decode: (stored) => JSON.parse(stored as string) }

/**
 * The one definition of a stored record: every field of `SessionRecord` but `id` (the key holds
 * it), in array order, with the name the scripts know its position by. Both the array written
 * and read here and the scripts' position constants (`LUA_FIELD_POSITIONS`) follow this order,
 * so they cannot disagree; `satisfies` refuses a field left out or one `SessionRecord` lacks.
 * Reordering it changes the format of records already in Redis: add new fields at the end.
 */
const RECORD_FIELDS = {
  userId: { lua: 'USER', codec: text },
  claims: { lua: 'CLAIMS', codec: json },
  createdAt: { lua: 'CREATED', codec: number },
  lastUsedAt: { lua: 'LAST_USED', codec: number },
  expiresAt: { lua: 'EXPIRES', codec: number },
  absoluteExpiresAt: { lua: 'ABSOLUTE', codec: number },
  tokenHash: { lua: 'TOKEN', codec: text },
  previousTokenHash: { lua: 'PREVIOUS', codec: optionalText },
  rotatedAt: { lua: 'ROTATED', codec: optionalNumber },
  graceUses: { lua: 'GRACE_USES', codec: number },
  userAgent: { lua: 'AGENT', codec: optionalText },
  ip: { lua: 'IP', codec: optionalText }
} satisfies { [K in Field]: { lua: string, codec: Codec<SessionRecord[K]> } }

// Each codec fits its own field (checked above); the loops below see them all as one type.
const FIELDS = Object.entries(RECORD_FIELDS) as Array<[Field, { lua: string, codec: Codec<unknown> }]>

/** Lua: each field's position in the decoded array (1-based), e.g. `local USER, CLAIMS = 1, 2`. */
export const LUA_FIELD_POSITIONS =
  `local ${FIELDS.map(([, { lua }]) => lua).join(', ')} = ${FIELDS.map((_, index) => index + 1).join(', ')}`

export function encodeRecord (session: SessionRecord): string {
  return JSON.stringify(FIELDS.map(([field, { codec }]) => codec.encode(session[field])))
}

export function decodeRecord (id: string, raw: string): SessionRecord {
  const stored = JSON.parse(raw) as Array<string | null>
  const session: Record<string, unknown> = { id }
  for (const [index, [field, { codec }]] of FIELDS.entries()) session[field] = codec.decode(stored[index] as string | null)
  return session as unknown as SessionRecord
}
