import { createHash } from 'node:crypto'
import type { QueryConfig } from 'pg'
import { columnsOf, COLUMNS, FIELD_COUNT, OVERWRITE_COLUMNS, RECORD_PARAMETERS } from './record.js'
import { type Names, render } from './schema.js'

/**
 * The database's clock in ms, read when evaluated: `clock_timestamp()` is volatile, so inside a
 * statement it is read at execution, after every lock the statement waited for (`now()` would be
 * the transaction's start). A write's deadline is compared with it (types.ts): a statement that
 * waited behind a lock past its caller's deadline applies nothing, since the caller has answered
 * 503. The deadline is on the app's clock: a database clock behind it widens the window in which a
 * change answered 503 still applies; the client's retry then meets `grace` or `recovered`, never
 * theft.
 */
const CLOCK_MS = 'floor(extract(epoch FROM clock_timestamp()) * 1000)'

/** The parameter after a whole record: `CREATE_SESSION`'s deadline. */
const DEADLINE = `$${FIELD_COUNT + 1}::bigint`

/**
 * Inserts a session, or overwrites every field of the one with the same id (ids are random; the
 * contract lets a collision overwrite), unless the database's clock is past the deadline: then
 * nothing is written and no row counted. The clock is read after any table lock wait (only a
 * collision could make the statement wait for a row afterwards). $1..$FIELD_COUNT: the record
 * (`toParameters`), then the deadline or null.
 */
const CREATE_SESSION = `INSERT INTO {sessions} (${COLUMNS})
SELECT ${RECORD_PARAMETERS}
WHERE ${DEADLINE} IS NULL OR ${CLOCK_MS} <= ${DEADLINE}
ON CONFLICT (id) DO UPDATE SET ${OVERWRITE_COLUMNS}`

/**
 * The refresh state machine of `TokenStore.rotate` in ONE statement, atomic at the default READ
 * COMMITTED isolation:
 * - `current` locks the session row (`FOR UPDATE`). Concurrent rotations of the session queue
 *   on that lock; each, once it holds the lock, reads the latest committed version of the row
 *   (or nothing, if the previous holder deleted it). So the decision below is always taken on
 *   fresh data, and exactly one rotation can see `token_hash = presented` for a given hash.
 * - `decision` is the state machine, in the order of MemoryStore.rotate: late (the database's
 *   clock past the deadline: first, so a late call deletes nothing either), expired, rotated,
 *   then for the predecessor grace/superseded inside the window (inclusive, grace > 0 only),
 *   recovered after its rotation's ms, superseded in it (or before: a caller whose clock is
 *   behind); otherwise reused. No row: missing, late or not. The decision reads the clock after
 *   `current` holds the row lock, itself taken after any table lock wait (the plan's locks are
 *   acquired before execution), so a statement stuck behind a lock drops what its caller gave up.
 *   It is evaluated once (a CTE referenced several times is materialised), so all the parts
 *   below see the same outcome.
 * - `renewed`, `graced` and `removed` apply it; at most one of them matches. They target the
 *   row this statement already locks, so nothing can change it in between (PostgreSQL re-reads
 *   the locked version for them). `renewed` is rotated and recovered alike, except that a
 *   recovery keeps previous_token_hash: the unused successor it replaces is dead from then on.
 * - `recorded` writes the revocation of a reused session to the feed and queues its NOTIFY;
 *   both take effect when the statement commits, together with the delete, or not at all.
 * The result is one row (outcome + the record, after the change for rotated/recovered/grace and
 * as it was otherwise) or no row (missing).
 * $1 session id, $2 presented hash, $3 next hash, $4 now, $5 idle TTL, $6 grace, $7 grace
 * limit, $8 user agent, $9 ip, $10 replacement claims or null, $11 keep revocation until,
 * $12 notification channel, $13 deadline or null.
 */
const ROTATE = `WITH request AS (
  SELECT $2::text AS presented_hash, $3::text AS next_hash, $4::bigint AS now,
    $5::bigint AS idle_ttl, $6::bigint AS grace, $7::bigint AS grace_limit,
    $8::text AS user_agent, $9::text AS ip, $10::jsonb AS claims, $11::bigint AS keep_until,
    $13::bigint AS deadline
), current AS (
  SELECT ${COLUMNS} FROM {sessions} WHERE id = $1::text FOR UPDATE
), decision AS (
  SELECT c.*, CASE
      WHEN ${CLOCK_MS} > r.deadline THEN 'late'
      WHEN r.now >= c.expires_at THEN 'expired'
      WHEN c.token_hash = r.presented_hash THEN 'rotated'
      WHEN c.previous_token_hash = r.presented_hash THEN CASE
          WHEN r.grace > 0 AND r.now - c.rotated_at <= r.grace
            THEN CASE WHEN c.grace_uses >= r.grace_limit THEN 'superseded' ELSE 'grace' END
          WHEN r.now > c.rotated_at THEN 'recovered'
          ELSE 'superseded'
        END
      ELSE 'reused'
    END AS outcome
  FROM current c CROSS JOIN request r
), renewed AS (
  UPDATE {sessions} s SET
    previous_token_hash = CASE WHEN d.outcome = 'rotated' THEN s.token_hash ELSE s.previous_token_hash END,
    token_hash = r.next_hash, rotated_at = r.now, grace_uses = 0, last_used_at = r.now,
    expires_at = LEAST(r.now + r.idle_ttl, s.absolute_expires_at),
    user_agent = r.user_agent, ip = r.ip, claims = COALESCE(r.claims, s.claims)
  FROM decision d CROSS JOIN request r
  WHERE s.id = d.id AND d.outcome IN ('rotated', 'recovered')
  RETURNING d.outcome, ${columnsOf('s')}
), graced AS (
  UPDATE {sessions} s SET grace_uses = s.grace_uses + 1
  FROM decision d
  WHERE s.id = d.id AND d.outcome = 'grace'
  RETURNING ${columnsOf('s')}
), removed AS (
  DELETE FROM {sessions} s USING decision d
  WHERE s.id = d.id AND d.outcome IN ('expired', 'reused')
  RETURNING s.id, d.outcome
), recorded AS (
  INSERT INTO {revocations} (session_id, revoked_at, keep_until)
  SELECT m.id, r.now, r.keep_until FROM removed m CROSS JOIN request r WHERE m.outcome = 'reused'
  RETURNING pg_notify($12::text, json_build_object('sessionId', session_id, 'revokedAt', revoked_at)::text)
)
SELECT outcome, ${COLUMNS} FROM renewed
UNION ALL SELECT 'grace', ${COLUMNS} FROM graced
UNION ALL SELECT outcome, ${COLUMNS} FROM decision WHERE outcome IN ('superseded', 'reused', 'expired', 'late')`

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
 * revocation and notifies listeners of each. Returns the ids, oldest session first.
 * $1 user id, $2 now, $3 keep until, $4 channel.
 */
const REVOKE_USER_SESSIONS = `WITH removed AS (
  DELETE FROM {sessions} WHERE user_id = $1::text RETURNING id, created_at
), recorded AS (
  INSERT INTO {revocations} (session_id, revoked_at, keep_until)
  SELECT id, $2::bigint, $3::bigint FROM removed ORDER BY created_at, id
  RETURNING pg_notify($4::text, json_build_object('sessionId', session_id, 'revokedAt', revoked_at)::text)
)
SELECT id FROM removed ORDER BY created_at, id`

/**
 * A user's sessions alive at $2 (idle expiry strictly later), oldest first, through the
 * (user_id, created_at) index. $1 user id, $2 now.
 */
const LIST_USER_SESSIONS = `SELECT ${COLUMNS} FROM {sessions}
WHERE user_id = $1::text AND expires_at > $2::bigint
ORDER BY created_at, id`

/** The revocation feed from $1 on, oldest first (ties in the order they were recorded). */
const REVOKED_SINCE = `SELECT session_id, revoked_at FROM {revocations}
WHERE revoked_at >= $1::bigint
ORDER BY revoked_at, seq`

/**
 * Deletes at most $2 sessions expired at $1. Rows another transaction holds (a rotation in
 * progress) are skipped, not waited for; the outer condition is re-checked on the latest row
 * version, so a session refreshed meanwhile (by a process whose clock is behind) survives.
 */
const SWEEP_SESSIONS = `DELETE FROM {sessions}
WHERE id IN (
  SELECT id FROM {sessions} WHERE expires_at <= $1::bigint LIMIT $2::integer FOR UPDATE SKIP LOCKED
) AND expires_at <= $1::bigint`

/** Deletes at most $2 feed entries whose keep time is over at $1. */
const SWEEP_REVOCATIONS = `DELETE FROM {revocations}
WHERE seq IN (
  SELECT seq FROM {revocations} WHERE keep_until <= $1::bigint LIMIT $2::integer FOR UPDATE SKIP LOCKED
)`

/** One statement as the store runs it: its text and, when prepared, its name. */
export type Statement = Pick<QueryConfig, 'text' | 'name'>

export type Statements = Record<'createSession' | 'rotate' | 'revokeSession' | 'revokeUserSessions' |
'listUserSessions' | 'revokedSince' | 'sweepSessions' | 'sweepRevocations', Statement>

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
    rotate: statement(ROTATE),
    revokeSession: statement(REVOKE_SESSION),
    revokeUserSessions: statement(REVOKE_USER_SESSIONS),
    listUserSessions: statement(LIST_USER_SESSIONS),
    revokedSince: statement(REVOKED_SINCE),
    sweepSessions: statement(SWEEP_SESSIONS),
    sweepRevocations: statement(SWEEP_REVOCATIONS)
  }
}
