import { createHash } from 'node:crypto'
import type { QueryConfig } from 'pg'
import { ROTATE_MANY } from './batch.js'
import { CREATE_LIMITED } from './create.js'
import { COLUMNS, FIELD_COUNT, FIELD_NUMBER, OVERWRITE_COLUMNS, RECORD_PARAMETERS } from './record.js'
import { CLOCK_MS } from './rotate.js'
import { type Names, render } from './schema.js'

/** The parameter after a whole record: `CREATE_SESSION`'s deadline. */
const DEADLINE = `$${FIELD_COUNT + 1}::bigint`

/** The parameter number of the record's expiresAt, the new session's sweep_at. */
const EXPIRES_AT = FIELD_NUMBER.expiresAt

/**
 * Inserts a session, or overwrites every field of the one with the same id (ids are random; the
 * contract lets a collision overwrite), unless the database's clock (rotate.ts) is past the
 * deadline: then nothing is written and no row counted. The clock is read after any table lock
 * wait (only a collision could make the statement wait for a row afterwards). The sweep looks at
 * the session first when it is due to expire (sweep_at, schema.ts). $1..$FIELD_COUNT: the record
 * (`toParameters`), then the deadline or null.
 */
const CREATE_SESSION = `INSERT INTO {sessions} (${COLUMNS}, sweep_at)
SELECT ${RECORD_PARAMETERS}, $${EXPIRES_AT}::bigint
WHERE ${DEADLINE} IS NULL OR ${CLOCK_MS} <= ${DEADLINE}
ON CONFLICT (id) DO UPDATE SET ${OVERWRITE_COLUMNS}, sweep_at = EXCLUDED.sweep_at`

/**
 * The rotation: one statement calling the migration's function (rotate.ts), which holds the state
 * machine and its reasoning. The result is one row: the outcome and the record, or NULLs
 * (missing). $1 session id, $2 presented hash, $3 next hash, $4 now, $5 idle TTL, $6 grace,
 * $7 grace limit, $8 user agent, $9 ip, $10 replacement claims or null, $11 keep revocation
 * until, $12 notification channel, $13 deadline or null, $14 re-authentication or null, $15 shorter
 * absolute end or null.
 */
const ROTATE = `SELECT outcome, ${COLUMNS} FROM {rotateFunction}($1::text, $2::text, $3::text, $4::bigint,
  $5::bigint, $6::bigint, $7::bigint, $8::text, $9::text, $10::jsonb, $11::bigint, $12::text, $13::bigint,
  $14::jsonb, $15::bigint)`

/**
 * Revokes one session: deletes it (only if it belongs to the given user, when one is given),
 * records the revocation and notifies listeners, all in one statement, hence one commit. Two
 * concurrent revocations of one session: the second finds no row and records nothing.
 * $1 session id, $2 user id or null, $3 now, $4 keep until, $5 channel.
 */
const REVOKE_SESSION = `WITH removed AS (
  DELETE FROM {sessions} WHERE id = $1::text AND ($2::text IS NULL OR user_id = $2::text)
  RETURNING ${COLUMNS}
), recorded AS (
  INSERT INTO {revocations} (session_id, revoked_at, keep_until)
  SELECT id, $3::bigint, $4::bigint FROM removed
  RETURNING pg_notify($5::text, json_build_object('sessionId', session_id, 'revokedAt', revoked_at)::text)
)
SELECT ${COLUMNS} FROM removed`

/**
 * Revokes every session of a user in one statement (one commit): deletes them, records each
 * revocation and notifies listeners of each. Returns the ids, oldest session first. The rows are
 * locked first sorted by id, the order a batch of rotations locks in (batch.ts), so the two never
 * deadlock. $1 user id, $2 now, $3 keep until, $4 channel.
 */
const REVOKE_USER_SESSIONS = `WITH locked AS (
  SELECT id FROM {sessions} WHERE user_id = $1::text ORDER BY id FOR UPDATE
), removed AS (
  DELETE FROM {sessions} s USING locked l WHERE s.id = l.id RETURNING s.id, s.created_at
), recorded AS (
  INSERT INTO {revocations} (session_id, revoked_at, keep_until)
  SELECT id, $2::bigint, $3::bigint FROM removed ORDER BY created_at, id
  RETURNING pg_notify($4::text, json_build_object('sessionId', session_id, 'revokedAt', revoked_at)::text)
)
SELECT id FROM removed ORDER BY created_at, id`

/**
 * Replaces the claims of the user's sessions alive at $3 and adds 1 to each one's claims_version,
 * feeding and announcing each new version, in one statement (one commit). The rows are locked
 * first in id order, as revokeUserSessions does, so a batch of rotations never deadlocks with it;
 * the update re-checks the expiry on the row it locked. claims and claims_version are not
 * indexed: HOT updates. $1 user id, $2 claims, $3 now, $4 keep until, $5 channel.
 */
const UPDATE_USER_CLAIMS = `WITH locked AS (
  SELECT id FROM {sessions} WHERE user_id = $1::text AND expires_at > $3::bigint ORDER BY id FOR UPDATE
), updated AS (
  UPDATE {sessions} s SET claims = $2::jsonb, claims_version = s.claims_version + 1
  FROM locked l WHERE s.id = l.id AND s.expires_at > $3::bigint
  RETURNING s.id, s.claims_version
), recorded AS (
  INSERT INTO {revocations} (session_id, revoked_at, keep_until, claims_version)
  SELECT id, $3::bigint, $4::bigint, claims_version FROM updated
  RETURNING pg_notify($5::text, json_build_object('sessionId', session_id, 'revokedAt', revoked_at, 'claimsVersion', claims_version)::text)
)
SELECT id, claims_version FROM updated ORDER BY id`

/** The session $1 if it is live at $2 (both expiries strictly later). */
const GET_SESSION = `SELECT ${COLUMNS} FROM {sessions}
WHERE id = $1::text AND expires_at > $2::bigint AND absolute_expires_at > $2::bigint`

/**
 * A user's sessions alive at $2 (idle expiry strictly later), oldest first, through the
 * (user_id, created_at) index. $1 user id, $2 now.
 */
const LIST_USER_SESSIONS = `SELECT ${COLUMNS} FROM {sessions}
WHERE user_id = $1::text AND expires_at > $2::bigint
ORDER BY created_at, id`

/**
 * The revocation feed from $1 on, oldest first (ties in the order they were recorded); a claims
 * change has its version, a revocation NULL.
 */
const REVOKED_SINCE = `SELECT session_id, revoked_at, claims_version FROM {revocations}
WHERE revoked_at >= $1::bigint
ORDER BY revoked_at, seq`

/**
 * One batch of the sweep: takes at most $2 sessions due at $1 (sweep_at, schema.ts), deletes those
 * expired and sets the others' sweep_at to their expires_at, when they are due next. Rows
 * another transaction holds (a rotation in progress) are skipped, not waited for. Both writes
 * re-check expires_at on the latest row version, so a session refreshed meanwhile (by a process
 * whose clock is behind) survives, and one changed between this statement's snapshot and its lock
 * is left for the next batch. Returns how many were due (a short batch ends the sweep) and how
 * many were deleted.
 */
const SWEEP_SESSIONS = `WITH due AS (
  SELECT id FROM {sessions} WHERE sweep_at <= $1::bigint LIMIT $2::integer FOR UPDATE SKIP LOCKED
), removed AS (
  DELETE FROM {sessions} s USING due d WHERE s.id = d.id AND s.expires_at <= $1::bigint RETURNING 1
), deferred AS (
  UPDATE {sessions} s SET sweep_at = s.expires_at FROM due d WHERE s.id = d.id AND s.expires_at > $1::bigint RETURNING 1
)
SELECT (SELECT count(*) FROM due)::integer AS due, (SELECT count(*) FROM removed)::integer AS removed`

/** Deletes at most $2 feed entries whose keep time is over at $1. */
const SWEEP_REVOCATIONS = `DELETE FROM {revocations}
WHERE seq IN (
  SELECT seq FROM {revocations} WHERE keep_until <= $1::bigint LIMIT $2::integer FOR UPDATE SKIP LOCKED
)`

/**
 * Records a DPoP proof id ($1) until $2, unless it is there and live at $3 (expired at
 * `expires_at <= now`, as sessions are): a row comes back only for a first use. Concurrent
 * inserts of one key wait for the first to commit, then see its row live and return nothing.
 * An expired row is taken over in place, so the sweep need not have run.
 */
const USE_ONCE = `INSERT INTO {proofIds} AS p (key, expires_at) VALUES ($1::text, $2::bigint)
ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE p.expires_at <= $3::bigint
RETURNING 1`

/**
 * Deletes at most $2 proof ids expired at $1. The delete re-checks the expiry on the row it
 * locked: a key used anew meanwhile stays.
 */
const SWEEP_PROOF_IDS = `DELETE FROM {proofIds}
WHERE key IN (
  SELECT key FROM {proofIds} WHERE expires_at <= $1::bigint LIMIT $2::integer FOR UPDATE SKIP LOCKED
) AND expires_at <= $1::bigint`

/** One statement as the store runs it: its text and, when prepared, its name. */
export type Statement = Pick<QueryConfig, 'text' | 'name'>

export type Statements = Record<'createSession' | 'createLimited' | 'getSession' | 'updateUserClaims' | 'rotate' | 'rotateMany' | 'revokeSession' | 'revokeUserSessions' |
'listUserSessions' | 'revokedSince' | 'sweepSessions' | 'sweepRevocations' | 'useOnce' | 'sweepProofIds', Statement>

/**
 * Every statement of a store, with its names filled in. Prepared statements are named after the
 * text, so stores of other schemas or versions never reuse the name.
 */
export function statements (names: Names, prepared: boolean): Statements {
  const statement = (template: string): Statement => {
    const text = render(template, names)
    return prepared ? { text, name: `fastify_token_auth_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}` } : { text }
  }
  return {
    createSession: statement(CREATE_SESSION),
    createLimited: statement(CREATE_LIMITED),
    getSession: statement(GET_SESSION),
    updateUserClaims: statement(UPDATE_USER_CLAIMS),
    rotate: statement(ROTATE),
    rotateMany: statement(ROTATE_MANY),
    revokeSession: statement(REVOKE_SESSION),
    revokeUserSessions: statement(REVOKE_USER_SESSIONS),
    listUserSessions: statement(LIST_USER_SESSIONS),
    revokedSince: statement(REVOKED_SINCE),
    sweepSessions: statement(SWEEP_SESSIONS),
    sweepRevocations: statement(SWEEP_REVOCATIONS),
    useOnce: statement(USE_ONCE),
    sweepProofIds: statement(SWEEP_PROOF_IDS)
  }
}
