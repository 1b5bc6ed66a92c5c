import { assignColumns, COLUMN_DEFINITIONS } from './record.js'

/**
 * The database's clock in ms, read when evaluated: `clock_timestamp()` is volatile, so it is read
 * at execution, after every lock waited for (`now()` would be the transaction's start). A write's
 * deadline is compared with it (types.ts): a statement that waited behind a lock past its
 * caller's deadline applies nothing, since the caller has answered 503. The deadline is on the
 * app's clock: a database clock behind it widens the window in which a change answered 503 still
 * applies; the client's retry then meets `grace` or `recovered`, never theft.
 */
export const CLOCK_MS = 'floor(extract(epoch FROM clock_timestamp()) * 1000)'

/**
 * The refresh state machine of `TokenStore.rotate` as a PL/pgSQL function, created by the
 * migration (schema.ts) and called by ONE statement (statements.ts): one round trip, atomic, one
 * commit, at the default READ COMMITTED isolation. A function rather than one statement of
 * writable CTEs: PostgreSQL then runs a row lock and one UPDATE, not a plan of nine nodes whose
 * DELETE, INSERT and second UPDATE are initialised on every call and almost never used. It costs
 * about a fifth less server CPU per rotation (pgbench on the same data, 80 against 100 µs).
 * - The row is locked first (`FOR UPDATE`). Concurrent rotations of the session queue on that
 *   lock; each, once it holds it, reads the latest committed version (or nothing, if the
 *   previous holder deleted it), so exactly one rotation can see `token_hash = presented`.
 * - The decision is the order of MemoryStore.rotate: late (the database's clock past the
 *   deadline, read once the lock is held, itself after any table lock wait: first, so a late
 *   call deletes nothing either), expired, rotated, then for the predecessor grace/superseded
 *   inside the window (inclusive, grace > 0 only), recovered after its rotation's ms,
 *   superseded in it (or before: a caller whose clock is behind); otherwise reused.
 * - Rotated and recovered rewrite the row alike, except that a recovery keeps
 *   previous_token_hash: the unused successor it replaces is dead from then on. A
 *   re-authentication (p_authentication) replaces `authentication`, a shorter end
 *   (p_absolute_expires_at) lowers absolute_expires_at before the idle expiry is taken; NULL
 *   keeps either (LEAST and COALESCE skip NULLs), and neither column is indexed: still HOT.
 *   claims_version is left alone, even when the claims are replaced («Claims that change»). `sweep_at` only
 *   ever goes down here (schema.ts): unchanged, as it nearly always is, and no indexed column
 *   written, the new row version is a HOT update (no index entry, less WAL).
 * - A reuse deletes the row, records the revocation in the feed and queues its NOTIFY: all take
 *   effect when the statement commits, or none does.
 * Returns the outcome and the record (after the change for rotated/recovered/grace, as it was
 * otherwise); a missing session: every field NULL. Named with the schema version that defines
 * its signature, so a later, different one can live beside it during a rolling deploy.
 */
export const ROTATE_FUNCTION = `CREATE OR REPLACE FUNCTION {rotateFunction}(
  p_id text, p_presented_hash text, p_next_hash text, p_now bigint, p_idle_ttl bigint, p_grace bigint,
  p_grace_limit bigint, p_user_agent text, p_ip text, p_claims jsonb, p_keep_until bigint, p_channel text,
  p_deadline bigint, p_authentication jsonb, p_absolute_expires_at bigint, OUT outcome text, ${COLUMN_DEFINITIONS.split(', ').map((column) => `OUT ${column}`).join(', ')}
) LANGUAGE plpgsql AS $rotate$
DECLARE
  c {sessions};
BEGIN
  SELECT s.* INTO c FROM {sessions} s WHERE s.id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  outcome := CASE
      WHEN ${CLOCK_MS} > p_deadline THEN 'late'
      WHEN p_now >= c.expires_at THEN 'expired'
      WHEN c.token_hash = p_presented_hash THEN 'rotated'
      WHEN c.previous_token_hash = p_presented_hash THEN CASE
          WHEN p_grace > 0 AND p_now - c.rotated_at <= p_grace
            THEN CASE WHEN c.grace_uses >= p_grace_limit THEN 'superseded' ELSE 'grace' END
          WHEN p_now > c.rotated_at THEN 'recovered'
          ELSE 'superseded'
        END
      ELSE 'reused'
    END;
  IF outcome IN ('rotated', 'recovered') THEN
    UPDATE {sessions} s SET
      previous_token_hash = CASE WHEN outcome = 'rotated' THEN s.token_hash ELSE s.previous_token_hash END,
      token_hash = p_next_hash, rotated_at = p_now, grace_uses = 0, last_used_at = p_now,
      absolute_expires_at = LEAST(s.absolute_expires_at, p_absolute_expires_at),
      expires_at = LEAST(p_now + p_idle_ttl, s.absolute_expires_at, p_absolute_expires_at),
      sweep_at = LEAST(s.sweep_at, p_now + p_idle_ttl, s.absolute_expires_at, p_absolute_expires_at),
      user_agent = p_user_agent, ip = p_ip, claims = COALESCE(p_claims, s.claims),
      authentication = COALESCE(p_authentication, s.authentication)
    WHERE s.id = p_id
    RETURNING s.* INTO c;
  ELSIF outcome = 'grace' THEN
    UPDATE {sessions} s SET grace_uses = s.grace_uses + 1 WHERE s.id = p_id RETURNING s.* INTO c;
  ELSIF outcome IN ('expired', 'reused') THEN
    DELETE FROM {sessions} s WHERE s.id = p_id;
    IF outcome = 'reused' THEN
      INSERT INTO {revocations} (session_id, revoked_at, keep_until) VALUES (c.id, p_now, p_keep_until);
      PERFORM pg_notify(p_channel, json_build_object('sessionId', c.id, 'revokedAt', p_now)::text);
    END IF;
  END IF;
  ${assignColumns('c')}
END
$rotate$;`
