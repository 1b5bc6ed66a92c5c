import type { CustomTypesConfig } from 'pg'
import type { SessionRecord } from '../types.js'

/**
 * The one definition of a session row: each `SessionRecord` field under the type of the column
 * of `{sessions}` it is stored in, named after it in snake case (the migration in schema.ts
 * creates the table). The column lists, the INSERT's parameters and the row mapping below all
 * derive from it, so a new field is one word here plus its column in the migration. The
 * compiler refuses a field of `SessionRecord` left out (`everyField`), or one it lacks.
 */
const FIELDS_BY_COLUMN_TYPE = everyField({
  text: ['id', 'userId', 'tokenHash', 'previousTokenHash', 'userAgent', 'ip', 'firstUserAgent', 'firstIp'],
  // jsonb keeps `authentication`'s optional members absent when they are, as the contract asks.
  jsonb: ['claims', 'authentication'],
  bigint: ['createdAt', 'lastUsedAt', 'expiresAt', 'absoluteExpiresAt', 'rotatedAt'],
  integer: ['graceUses', 'claimsVersion']
})
type ColumnType = keyof typeof FIELDS_BY_COLUMN_TYPE

/** Returns its argument; the compiler asks for a `missing` member naming any field it leaves out. */
function everyField<const Fields extends Record<string, ReadonlyArray<keyof SessionRecord>>> (
  fields: Fields & ([Exclude<keyof SessionRecord, Fields[keyof Fields][number]>] extends [never] ? unknown : { missing: Exclude<keyof SessionRecord, Fields[keyof Fields][number]> })
): Fields {
  return fields
}

/** A field's column: its name in snake case (`userId` is `user_id`). */
const columnOf = (field: string): string => field.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`)

const FIELDS = (Object.entries(FIELDS_BY_COLUMN_TYPE) as Array<[ColumnType, ReadonlyArray<keyof SessionRecord>]>)
  .flatMap(([type, fields]) => fields.map((field) => ({ field, column: columnOf(field), type })))

/** How many parameters a whole record takes: `$1` to `$<FIELD_COUNT>`, in `COLUMNS` order. */
export const FIELD_COUNT = FIELDS.length

/** Each field's parameter number in `RECORD_PARAMETERS` (`$<n>`). */
export const FIELD_NUMBER = Object.fromEntries(FIELDS.map(({ field }, index) => [field, index + 1])) as Record<keyof SessionRecord, number>

/** Every session column, in the order of `FIELDS_BY_COLUMN_TYPE`. */
export const COLUMNS = FIELDS.map(({ column }) => column).join(', ')

/**
 * A record's fields as the parameters `$1..$<FIELD_COUNT>`, each cast to its column's type: a
 * SELECT (the INSERT's source, for its deadline condition) does not take its types from the
 * target columns.
 */
export const RECORD_PARAMETERS = FIELDS.map(({ type }, index) => `$${index + 1}::${type}`).join(', ')

/** `column = EXCLUDED.column` for every column but the key: an upsert that overwrites the whole record. */
export const OVERWRITE_COLUMNS = FIELDS.filter(({ column }) => column !== 'id')
  .map(({ column }) => `${column} = EXCLUDED.${column}`).join(', ')

/** `COLUMNS` with their types (`id text, user_id text, ...`): the rotate function's OUT parameters. */
export const COLUMN_DEFINITIONS = FIELDS.map(({ column, type }) => `${column} ${type}`).join(', ')

/** `n_id text, n_user_id text, ...`: a function's parameters taking a whole record (create.ts). */
export const NEW_ROW_DEFINITIONS = FIELDS.map(({ column, type }) => `n_${column} ${type}`).join(', ')

/** `n_id, n_user_id, ...`: those parameters, in `COLUMNS` order. */
export const NEW_ROW_VALUES = FIELDS.map(({ column }) => `n_${column}`).join(', ')

/** `id := c.id; user_id := c.user_id; ...`: plpgsql assignments of every column from a row variable. */
export function assignColumns (from: string): string {
  return FIELDS.map(({ column }) => `${column} := ${from}.${column};`).join(' ')
}

/** The values of `RECORD_PARAMETERS`; jsonb as JSON text, stringified here rather than left to pg's conversion of objects. */
export function toParameters (session: SessionRecord): unknown[] {
  return FIELDS.map(({ field, type }) => type === 'jsonb' ? JSON.stringify(session[field]) : session[field])
}

/** A row of `COLUMNS` (as read through `TYPES`) as the record it stores. A plain loop: it runs on every rotation. */
export function toRecord (row: Record<string, any>): SessionRecord {
  const record: Record<string, unknown> = {}
  for (const { field, column } of FIELDS) record[field] = row[column]
  return record as unknown as SessionRecord
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
