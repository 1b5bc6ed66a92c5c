import { COLUMN_DEFINITIONS, COLUMNS, FIELD_COUNT, NEW_ROW_DEFINITIONS, NEW_ROW_VALUES, OVERWRITE_COLUMNS, RECORD_PARAMETERS } from './record.js'
import { CLOCK_MS } from './rotate.js'

/**
 * `createSession` under a session limit (docs/design.md, «Session caps») as a PL/pgSQL function,
 * created by the migration (schema.ts) and called by ONE statement (`CREATE_LIMITED`): count the
 * user's live sessions, end the least recently used or refuse, insert, in one transaction.
 * - Concurrent logins of one user queue on a transaction-scoped advisory lock keyed by the table
 *   and the user id, taken first. A function, not one statement, because at READ COMMITTED each
 *   of its queries takes a new snapshot: the count, made once the lock is held, sees the sessions
 *   every earlier holder inserted and committed. One statement would count on the snapshot taken
 *   before its wait. Row locks alone cannot do it either: they do not stop an insert.
 * - Then the deadline, as every write (rotate.ts): read after the lock wait, so a late call
 *   changes nothing.
 * - The sessions to end are chosen (least recently used first: lastUsedAt, then createdAt, then
 *   id), then locked in id order, the order of a batch of rotations (batch.ts), so the two never
 *   deadlock, then deleted, fed as revoked at the new session's createdAt and announced. A chosen
 *   session revoked meanwhile is not deleted again, and counts as gone all the same: the user
 *   is still left with at most `max` live sessions.
 * Returns the sessions ended (outcome `ended`, least recently used first), then one row whose
 * outcome is `created`, `refused` or `late` (its other columns NULL). Other writes to the user's
 * sessions (rotations, revocations, the sweep) take no advisory lock: none of them adds a live
 * session.
 */
export const CREATE_LIMITED_FUNCTION = `CREATE OR REPLACE FUNCTION {createLimitedFunction}(
  ${NEW_ROW_DEFINITIONS}, p_max integer, p_refuse boolean, p_keep_until bigint, p_channel text, p_deadline bigint
) RETURNS TABLE (outcome text, ${COLUMN_DEFINITIONS}) LANGUAGE plpgsql AS $create$
#variable_conflict use_column
DECLARE
  live integer;
  chosen text[];
BEGIN
  PERFORM pg_advisory_xact_lock(hashtext('{sessions}'), hashtext(n_user_id));
  IF ${CLOCK_MS} > p_deadline THEN
    outcome := 'late';
    RETURN NEXT;
    RETURN;
  END IF;
  SELECT count(*) INTO live FROM {sessions} s WHERE s.user_id = n_user_id AND s.expires_at > n_created_at;
  IF live >= p_max AND p_refuse THEN
    outcome := 'refused';
    RETURN NEXT;
    RETURN;
  END IF;
  IF live >= p_max THEN
    SELECT array_agg(v.id) INTO chosen FROM (
      SELECT s.id FROM {sessions} s WHERE s.user_id = n_user_id AND s.expires_at > n_created_at
      ORDER BY s.last_used_at, s.created_at, s.id LIMIT live + 1 - p_max
    ) v;
    PERFORM FROM (SELECT s.id FROM {sessions} s WHERE s.id = ANY (chosen) ORDER BY s.id FOR UPDATE) l;
    RETURN QUERY WITH removed AS (
      DELETE FROM {sessions} s WHERE s.id = ANY (chosen) RETURNING s.*
    ), recorded AS (
      INSERT INTO {revocations} (session_id, revoked_at, keep_until)
      SELECT r.id, n_created_at, p_keep_until FROM removed r
      RETURNING pg_notify(p_channel, json_build_object('sessionId', session_id, 'revokedAt', revoked_at)::text)
    )
    SELECT 'ended'::text, ${COLUMNS.split(', ').map((column) => `r.${column}`).join(', ')} FROM removed r
    ORDER BY r.last_used_at, r.created_at, r.id;
  END IF;
  INSERT INTO {sessions} (${COLUMNS}, sweep_at) VALUES (${NEW_ROW_VALUES}, n_expires_at)
  ON CONFLICT (id) DO UPDATE SET ${OVERWRITE_COLUMNS}, sweep_at = EXCLUDED.sweep_at;
  outcome := 'created';
  RETURN NEXT;
END
$create$;`

/**
 * The call: $1..$FIELD_COUNT the record (`toParameters`), then the limit (max, refuse or not),
 * keep the ended sessions' revocations until, the notification channel, the deadline or null.
 */
export const CREATE_LIMITED = `SELECT outcome, ${COLUMNS} FROM {createLimitedFunction}(${RECORD_PARAMETERS},
  $${FIELD_COUNT + 1}::integer, $${FIELD_COUNT + 2}::boolean, $${FIELD_COUNT + 3}::bigint, $${FIELD_COUNT + 4}::text, $${FIELD_COUNT + 5}::bigint)`
