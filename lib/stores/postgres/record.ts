import type { CustomTypesConfig } from 'pg'
import type { SessionRecord } from '../types.js'

/**
 * The one definition of a session row: each `SessionRecord` field, the column of `{sessions}` it
 * is stored in and that column's type (the table itself is created by the migration in
 * schema.ts). The column lists, the INSERT's parameters and the row mapping below all derive
 * from it, in this order, so a new field is one line here plus its column in the migration.
 * `satisfies` makes the compiler refuse a field of `SessionRecord` left out, or one it lacks.
 */
const SESSION_COLUMNS = {
  id: { column: 'id', type: 'text' },
  userId: { column: 'user_id', type: 'text' },
  claims: { column: 'claims', type: 'jsonb' },
  createdAt: { column: 'created_at', type: 'bigint' },
  lastUsedAt: { column: 'last_used_at', type: 'bigint' },
  expiresAt: { column: 'expires_at', type: 'bigint' },
  absoluteExpiresAt: { column: 'absolute_expires_at', type: 'bigint' },
  tokenHash: { column: 'token_hash', type: 'text' },
  previousTokenHash: { column: 'previous_token_hash', type: 'text' },
  rotatedAt: { column: 'rotated_at', type: 'bigint' },
  graceUses: { column: 'grace_uses', type: 'integer' },
  userAgent: { column: 'user_agent', type: 'text' },
  ip: { column: 'ip', type: 'text' }
} satisfies Record<keyof SessionRecord, { column: string, type: 'text' | 'jsonb' | 'bigint' | 'integer' }>

const FIELDS = Object.entries(SESSION_COLUMNS).map(([field, { column, type }]) => ({ field: field as keyof SessionRecord, column, type }))

/** How many parameters a whole record takes: `$1` to `$<FIELD_COUNT>`, in `COLUMNS` order. */
export const FIELD_COUNT = FIELDS.length

/** Every session column, in the order of `SESSION_COLUMNS`. */
export const COLUMNS = columnsOf()

/**
 * A record's fields as the parameters `$1..$<FIELD_COUNT>`, each cast to its column's type: a
 * SELECT (the INSERT's source, for its deadline condition) does not take its types from the
 * target columns.
 */
export const RECORD_PARAMETERS = FIELDS.map(({ type }, index) => `$${index + 1}::${type}`).join(', ')

/** `column = EXCLUDED.column` for every column but the key: an upsert that overwrites the whole record. */
export const OVERWRITE_COLUMNS = FIELDS.filter(({ column }) => column !== 'id')
  .map(({ column }) => `${column} = EXCLUDED.${column}`).join(', ')

/** `COLUMNS`, each qualified by a table alias (`s.id, s.user_id, ...`) when one is given. */
export function columnsOf (alias?: string): string {
  return FIELDS.map(({ column }) => alias === undefined ? column : `${alias}.${column}`).join(', ')
}

/** The values of `RECORD_PARAMETERS`; jsonb as JSON text, stringified here rather than left to pg's conversion of objects. */
export function toParameters (session: SessionRecord): unknown[] {
  return FIELDS.map(({ field, type }) => type === 'jsonb' ? JSON.stringify(session[field]) : session[field])
}

/** A row of `COLUMNS` (as read through `TYPES`) as the record it stores. */
export function toRecord (row: Record<string, any>): SessionRecord {
  return Object.fromEntries(FIELDS.map(({ field, column }) => [field, row[column]])) as unknown as SessionRecord
}

/**
 * Per-query result parsers for the only types the store reads (int8 and int4 as numbers, jsonb
 * parsed, text as is), independent of whatever global parsers the application configured.
 */
export const TYPES = {
  getTypeParser: (oid: number) => PARSERS.get(oid) ?? identity
} as unknown as CustomTypesConfig

const PARSERS = new Map<number, (value: string) => unknown>([
  [20, Number], // int8: times in ms are far below 2^53
  [23, Number], // int4
  [3802, JSON.parse] // jsonb
])

function identity (value: string): string {
  return value
}
