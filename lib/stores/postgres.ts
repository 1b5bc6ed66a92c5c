import { createHash } from 'node:crypto'
import type { CustomTypesConfig, Pool, PoolClient, QueryConfig, QueryResult } from 'pg'
import {
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, StoreDeadlineError,
  type TokenStore, type WriteOptions
} from './types.js'

/** Where the store's tables live. Both default so one database can hold one store without options. */
export interface PostgresNamingOptions {
  /**
   * Schema holding the tables. It must exist (`public` always does); the migration never
   * creates schemas, so it needs no database-level privilege.
   * @default 'public'
   */
  schema?: string
  /**
   * Prefix of every table and index name: `<prefix>sessions`, `<prefix>revocations`. Letters,
   * digits and underscores; may be empty.
   * @default 'token_auth_'
   */
  tablePrefix?: string
}

export interface PostgresStoreOptions extends PostgresNamingOptions {
  /**
   * A `pg` Pool the application owns: the store borrows connections and never ends it. Run
   * `migrate(pool, options)` (or the SQL of `postgresMigrationSql(options)`) once beforehand;
   * the store itself never runs DDL. Give it an 'error' listener before creating the store: pg
   * emits 'error' on the Pool when the server drops an idle connection, and without a listener
   * that ends the process (the store warns, `FST_TOKEN_AUTH_PG_POOL_NO_ERROR_LISTENER`).
   */
  pool: Pool
  /**
   * Rows deleted per statement by `sweep`, so a sweep never holds many row locks or a long
   * transaction.
   * @default 1000
   */
  sweepBatchSize?: number
  /**
   * Most batches per table one `sweep` call runs; whatever is left waits for the next sweep,
   * so one call stays short even after a long pause.
   * @default 100
   */
  sweepMaxBatches?: number
  /**
   * Run the store's statements as named prepared statements, so each connection plans them once
   * (rotation is about 3x faster). Turn off behind a pooler that cannot keep prepared
   * statements (PgBouncer in transaction mode before 1.21).
   * @default true
   */
  preparedStatements?: boolean
}

const DEFAULT_SCHEMA = 'public'
const DEFAULT_TABLE_PREFIX = 'token_auth_'
const DEFAULT_SWEEP_BATCH = 1000
const DEFAULT_SWEEP_MAX_BATCHES = 100
/** PostgreSQL truncates identifiers (and refuses channel names) beyond NAMEDATALEN - 1 bytes. */
const MAX_IDENTIFIER_BYTES = 63
/** Plain ASCII identifiers only: nothing that needs escaping beyond the double quotes we add. */
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/
/** The longest suffix appended to `tablePrefix` (an index name). */
const LONGEST_NAME_SUFFIX = 'sessions_user_created_idx'
/** First and longest pause before reopening a lost LISTEN connection (doubling in between). */
const RECONNECT_MIN_DELAY = 100
const RECONNECT_MAX_DELAY = 5000

/*
 * The schema (version 1). Every statement is idempotent (`IF NOT EXISTS`), so it is safe to run
 * on every deploy. `{name}` placeholders are replaced by quoted, validated identifiers.
 *
 * {sessions} — one row per session (refresh-token family); never a token, only SHA-256 hashes:
 *   id                   text     primary key: the session id (`sid` claim)
 *   user_id              text     owner; with created_at, indexed for listing and revoke-all
 *   claims               jsonb    extra access-token claims (jsonb reorders keys; values are kept)
 *   created_at           bigint   ms since the epoch, like every time column, so values round-trip exactly
 *   last_used_at         bigint
 *   expires_at           bigint   idle expiry (never after absolute_expires_at); indexed for the sweep
 *   absolute_expires_at  bigint
 *   token_hash           text     hash of the refresh-token id accepted now
 *   previous_token_hash  text     hash of its immediate predecessor (grace window, recovery, theft detection)
 *   rotated_at           bigint   when token_hash replaced previous_token_hash (by rotation or recovery):
 *                                 start of the grace window, and what token_hash was derived from
 *   grace_uses           integer  grace answers given in the current window
 *   user_agent, ip       text     last client seen
 *
 * {revocations} — the revocation feed read by every process (`revokedSince`):
 *   seq                  bigint   identity: a stable order for revocations made in the same ms
 *   session_id           text     the revoked session
 *   revoked_at           bigint   indexed: the feed is read by time
 *   keep_until           bigint   indexed: the sweep drops entries from this time on
 */
const MIGRATION = `-- fastify-token-auth PostgresStore schema, version 1 (idempotent).
-- Serialises concurrent runs against the same tables (two instances deploying at once), which
-- IF NOT EXISTS alone does not; held until the end of the transaction running this script.
SELECT pg_advisory_xact_lock(hashtext('fastify-token-auth {sessions} {revocations}'));
CREATE TABLE IF NOT EXISTS {sessions} (
  id text PRIMARY KEY,
  user_id text NOT NULL,
  claims jsonb NOT NULL,
  created_at bigint NOT NULL,
  last_used_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  absolute_expires_at bigint NOT NULL,
  token_hash text NOT NULL,
  previous_token_hash text,
  rotated_at bigint,
  grace_uses integer NOT NULL DEFAULT 0,
  user_agent text,
  ip text
);
-- Listing a user's sessions oldest first, and revoking them all.
CREATE INDEX IF NOT EXISTS {sessionsByUser} ON {sessions} (user_id, created_at);
-- The sweep finds expired sessions without a full scan.
CREATE INDEX IF NOT EXISTS {sessionsByExpiry} ON {sessions} (expires_at);
CREATE TABLE IF NOT EXISTS {revocations} (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  session_id text NOT NULL,
  revoked_at bigint NOT NULL,
  keep_until bigint NOT NULL
);
-- The revocation feed is read from a point in time on.
CREATE INDEX IF NOT EXISTS {revocationsByTime} ON {revocations} (revoked_at);
-- The sweep finds feed entries past their keep time.
CREATE INDEX IF NOT EXISTS {revocationsByKeep} ON {revocations} (keep_until);
`

/** Every session column, in the order of the parameters of `CREATE_SESSION`. */
const COLUMNS = 'id, user_id, claims, created_at, last_used_at, expires_at, absolute_expires_at, ' +
  'token_hash, previous_token_hash, rotated_at, grace_uses, user_agent, ip'

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

/**
 * Inserts a session, or overwrites every field of the one with the same id (ids are random; the
 * contract lets a collision overwrite), unless the database's clock is past the deadline: then
 * nothing is written and no row counted. The clock is read after any table lock wait (only a
 * collision could make the statement wait for a row afterwards). $1..$13: the record's fields in `COLUMNS` order (cast,
 * as a SELECT does not take its types from the target columns), $14 deadline or null.
 */
const CREATE_SESSION = `INSERT INTO {sessions} (${COLUMNS})
SELECT $1::text, $2::text, $3::jsonb, $4::bigint, $5::bigint, $6::bigint, $7::bigint, $8::text, $9::text,
  $10::bigint, $11::integer, $12::text, $13::text
WHERE $14::bigint IS NULL OR ${CLOCK_MS} <= $14::bigint
ON CONFLICT (id) DO UPDATE SET
  user_id = EXCLUDED.user_id, claims = EXCLUDED.claims, created_at = EXCLUDED.created_at,
  last_used_at = EXCLUDED.last_used_at, expires_at = EXCLUDED.expires_at,
  absolute_expires_at = EXCLUDED.absolute_expires_at, token_hash = EXCLUDED.token_hash,
  previous_token_hash = EXCLUDED.previous_token_hash, rotated_at = EXCLUDED.rotated_at,
  grace_uses = EXCLUDED.grace_uses, user_agent = EXCLUDED.user_agent, ip = EXCLUDED.ip`

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
  RETURNING d.outcome, ${prefixed('s', COLUMNS)}
), graced AS (
  UPDATE {sessions} s SET grace_uses = s.grace_uses + 1
  FROM decision d
  WHERE s.id = d.id AND d.outcome = 'grace'
  RETURNING ${prefixed('s', COLUMNS)}
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
type Statement = Pick<QueryConfig, 'text' | 'name'>

/** Validated names, each already quoted for SQL, plus the raw notification channel. */
interface Names {
  sessions: string
  revocations: string
  sessionsByUser: string
  sessionsByExpiry: string
  revocationsByTime: string
  revocationsByKeep: string
  /** The channel as `pg_notify` takes it (a string value). */
  channel: string
  /** The same channel as `LISTEN` takes it (a quoted identifier). */
  channelIdentifier: string
}

/**
 * The SQL that creates the store's tables and indexes (see the comment block above `MIGRATION`
 * in the source for every column). Idempotent; run it with any migration tool, preferably in a
 * transaction, or call `migrate`, which runs exactly this text. The schema must already exist.
 */
export function postgresMigrationSql (options: PostgresNamingOptions = {}): string {
  return render(MIGRATION, resolveNames(options, 'postgresMigrationSql'))
}

/**
 * Creates the store's tables and indexes if they do not exist yet, by running
 * `postgresMigrationSql(options)` as one query: PostgreSQL runs a multi-statement query as one
 * implicit transaction, so it applies entirely or not at all. Safe to run on every start, from
 * several processes at once.
 */
export async function migrate (pool: Pool, options: PostgresNamingOptions = {}): Promise<void> {
  checkPool(pool, 'migrate')
  const sql = render(MIGRATION, resolveNames(options, 'migrate'))
  await pool.query(sql)
}

/**
 * A store in PostgreSQL, shared by every process using the same database, schema and prefix.
 * Each operation is one statement (one round trip, one commit); `rotate` is atomic at READ
 * COMMITTED. Revocations are pushed to other processes with LISTEN/NOTIFY and kept in a feed
 * table for polling. Times are stored as bigint milliseconds and read back as numbers, through
 * per-query type parsers (the pool's global parsers are left alone).
 */
export class PostgresStore implements TokenStore {
  readonly #pool: Pool
  readonly #names: Names
  readonly #sweepBatchSize: number
  readonly #sweepMaxBatches: number
  readonly #sql: Record<'createSession' | 'rotate' | 'revokeSession' | 'revokeUserSessions' |
  'listUserSessions' | 'revokedSince' | 'sweepSessions' | 'sweepRevocations', Statement>

  readonly #subscriptions = new Set<RevocationSubscription>()

  constructor (options: PostgresStoreOptions) {
    checkPool(options?.pool, 'PostgresStore')
    this.#pool = options.pool
    warnIfUnguarded(options.pool)
    this.#names = resolveNames(options, 'PostgresStore')
    this.#sweepBatchSize = positiveInteger(options.sweepBatchSize ?? DEFAULT_SWEEP_BATCH, 'sweepBatchSize')
    this.#sweepMaxBatches = positiveInteger(options.sweepMaxBatches ?? DEFAULT_SWEEP_MAX_BATCHES, 'sweepMaxBatches')
    const prepared = options.preparedStatements ?? true
    if (typeof prepared !== 'boolean') {
      throw new TypeError(`PostgresStore option "preparedStatements" must be a boolean, got ${String(prepared)}`)
    }
    const statement = (template: string): Statement => {
      const text = render(template, this.#names)
      // Named after the text, so stores of other schemas or versions never reuse the name.
      return prepared ? { text, name: `fastify_token_auth_${createHash('sha256').update(text).digest('base64url').slice(0, 22)}` } : { text }
    }
    this.#sql = {
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

  /** The NOTIFY channel revocations are announced on (derived from the schema and prefix). */
  get channel (): string {
    return this.#names.channel
  }

  async createSession (session: SessionRecord, options: WriteOptions = {}): Promise<void> {
    const { rowCount } = await this.#query(this.#sql.createSession, [
      session.id, session.userId, JSON.stringify(session.claims), session.createdAt, session.lastUsedAt,
      session.expiresAt, session.absoluteExpiresAt, session.tokenHash, session.previousTokenHash,
      session.rotatedAt, session.graceUses, session.userAgent, session.ip, options.deadline ?? null
    ])
    if (rowCount === 0) throw new StoreDeadlineError('createSession')
  }

  async rotate (request: RotateRequest): Promise<RotateResult> {
    const { rows } = await this.#query(this.#sql.rotate, [
      request.sessionId, request.presentedHash, request.nextHash, request.now, request.idleTtl,
      request.grace, request.graceLimit, request.userAgent, request.ip,
      request.claims === undefined ? null : JSON.stringify(request.claims),
      request.now + request.keepRevocationFor, this.#names.channel, request.deadline ?? null
    ])
    const row = rows[0]
    if (row === undefined) return { outcome: 'missing' }
    if (row.outcome === 'late') throw new StoreDeadlineError('rotate')
    return { outcome: row.outcome, session: toRecord(row) }
  }

  async revokeSession (sessionId: string, userId: string | undefined, context: RevocationContext): Promise<SessionRecord | null> {
    const { rows } = await this.#query(this.#sql.revokeSession, [
      sessionId, userId ?? null, context.now, context.now + context.keepFor, this.#names.channel
    ])
    const row = rows[0]
    return row === undefined ? null : toRecord(row)
  }

  async revokeUserSessions (userId: string, context: RevocationContext): Promise<string[]> {
    const { rows } = await this.#query(this.#sql.revokeUserSessions, [
      userId, context.now, context.now + context.keepFor, this.#names.channel
    ])
    return rows.map((row) => row.id as string)
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    const { rows } = await this.#query(this.#sql.listUserSessions, [userId, now])
    return rows.map(toRecord)
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    const { rows } = await this.#query(this.#sql.revokedSince, [since])
    return rows.map((row) => ({ sessionId: row.session_id, revokedAt: row.revoked_at }))
  }

  /**
   * Listens for revocations on a connection of its own, taken from the pool and held until
   * unsubscribed (so it counts against the pool's size). If that connection breaks (its 'error'
   * is handled here, never left to end the process), it is reopened with a doubling delay
   * (100 ms up to 5 s); revocations announced meanwhile reach this process through
   * `revokedSince` polling. Rejects if the first connection fails.
   */
  async subscribeRevocations (listener: (record: RevocationRecord) => void): Promise<() => Promise<void>> {
    const subscription = new RevocationSubscription(this.#pool, this.#names.channelIdentifier, listener)
    this.#subscriptions.add(subscription) // from now on, so `close` reaches it even while it starts
    try {
      await subscription.start()
    } catch (error) {
      this.#subscriptions.delete(subscription)
      throw error
    }
    return async () => {
      this.#subscriptions.delete(subscription)
      await subscription.stop()
    }
  }

  async sweep (now: number): Promise<number> {
    const removed = await this.#sweepTable(this.#sql.sweepSessions, now)
    await this.#sweepTable(this.#sql.sweepRevocations, now)
    return removed
  }

  /** Ends the store's LISTEN connections. The pool is the application's: it stays open. */
  async close (): Promise<void> {
    const subscriptions = [...this.#subscriptions]
    this.#subscriptions.clear()
    await Promise.all(subscriptions.map(async (subscription) => await subscription.stop()))
  }

  /** Deletes in batches until a batch comes back short or the round cap is reached. */
  async #sweepTable (statement: Statement, now: number): Promise<number> {
    let removed = 0
    for (let round = 0; round < this.#sweepMaxBatches; round++) {
      const result = await this.#query(statement, [now, this.#sweepBatchSize])
      const count = result.rowCount as number // always a number for DELETE
      removed += count
      if (count < this.#sweepBatchSize) break
    }
    return removed
  }

  async #query (statement: Statement, values: unknown[]): Promise<QueryResult> {
    return await this.#pool.query({ ...statement, values, types: TYPES })
  }
}

/**
 * One LISTEN connection for one listener. The first open must succeed (`start` rejects
 * otherwise); after that a lost connection is reopened in the background until `stop`.
 * `stop` never waits for a reopen in flight: that attempt sees `#stopped` and gives up.
 */
class RevocationSubscription {
  readonly #pool: Pool
  readonly #listen: string
  readonly #unlisten: string
  readonly #listener: (record: RevocationRecord) => void
  /** The connection listening (or about to), if any. */
  #client: PoolClient | undefined
  #timer: NodeJS.Timeout | undefined
  #failures = 0
  #stopped = false

  constructor (pool: Pool, channelIdentifier: string, listener: (record: RevocationRecord) => void) {
    this.#pool = pool
    this.#listen = `LISTEN ${channelIdentifier}`
    this.#unlisten = `UNLISTEN ${channelIdentifier}`
    this.#listener = listener
  }

  async start (): Promise<void> {
    try {
      await this.#connect()
    } catch (error) {
      await this.stop() // cancels a reopen the failed attempt may have scheduled
      throw error
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    const client = this.#client
    if (client === undefined) return
    this.#detach(client)
    try {
      // Queued behind a LISTEN still in flight on this connection, if any.
      await client.query(this.#unlisten)
      client.release()
    } catch (error) {
      client.release(error as Error)
    }
  }

  async #connect (): Promise<void> {
    const client = await this.#pool.connect()
    if (this.#stopped) {
      client.release()
      return
    }
    client.on('notification', this.#onNotification)
    client.on('error', this.#onError)
    this.#client = client
    try {
      await client.query(this.#listen)
    } catch (error) {
      // The connection may already be released, by its 'error' event or by `stop`.
      if (this.#client === client) this.#drop(client, error as Error)
      throw error
    }
  }

  readonly #onNotification = (message: { payload?: string }): void => {
    const record = parseRevocation(message.payload)
    if (record !== undefined) this.#listener(record)
  }

  /**
   * The connection broke: drop it and reopen later. Only the current connection has this
   * listener (`#detach` removes it), so `#client` is the connection that failed.
   */
  readonly #onError = (error: Error): void => {
    this.#drop(this.#client as PoolClient, error)
    this.#reconnectLater()
  }

  #drop (client: PoolClient, error: Error): void {
    this.#detach(client)
    client.release(error)
  }

  #detach (client: PoolClient): void {
    client.off('notification', this.#onNotification)
    client.off('error', this.#onError)
    this.#client = undefined
  }

  #reconnectLater (): void {
    if (this.#stopped) return
    clearTimeout(this.#timer)
    const delay = Math.min(RECONNECT_MIN_DELAY * 2 ** this.#failures, RECONNECT_MAX_DELAY)
    this.#timer = setTimeout(() => {
      this.#connect().then(() => { this.#failures = 0 }, () => {
        this.#failures++
        this.#reconnectLater()
      })
    }, delay)
    this.#timer.unref()
  }
}

/** A NOTIFY payload of our channel, or `undefined` for anything else sent on it. */
function parseRevocation (payload: string | undefined): RevocationRecord | undefined {
  try {
    const value = JSON.parse(payload as string) as Partial<RevocationRecord>
    if (typeof value.sessionId === 'string' && typeof value.revokedAt === 'number') {
      return { sessionId: value.sessionId, revokedAt: value.revokedAt }
    }
  } catch {}
  return undefined
}

/**
 * Per-query result parsers for the only types the store reads (int8 and int4 as numbers, jsonb
 * parsed, text as is), independent of whatever global parsers the application configured.
 */
const TYPES = {
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

function toRecord (row: Record<string, any>): SessionRecord {
  return {
    id: row.id,
    userId: row.user_id,
    claims: row.claims,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    expiresAt: row.expires_at,
    absoluteExpiresAt: row.absolute_expires_at,
    tokenHash: row.token_hash,
    previousTokenHash: row.previous_token_hash,
    rotatedAt: row.rotated_at,
    graceUses: row.grace_uses,
    userAgent: row.user_agent,
    ip: row.ip
  }
}

function prefixed (alias: string, columns: string): string {
  return columns.split(', ').map((column) => `${alias}.${column}`).join(', ')
}

function render (template: string, names: Names): string {
  return template.replace(/\{(\w+)\}/g, (_, key: keyof Names) => names[key])
}

function quote (identifier: string): string {
  // Safe: identifiers are validated against IDENTIFIER, so they contain no double quote.
  return `"${identifier}"`
}

function resolveNames (options: PostgresNamingOptions, owner: string): Names {
  const schema = identifier(options.schema ?? DEFAULT_SCHEMA, 'schema', owner, false)
  const prefix = identifier(options.tablePrefix ?? DEFAULT_TABLE_PREFIX, 'tablePrefix', owner, true)
  if (prefix.length + LONGEST_NAME_SUFFIX.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} option "tablePrefix" must be at most ${MAX_IDENTIFIER_BYTES - LONGEST_NAME_SUFFIX.length} characters, got ${prefix.length}`)
  }
  // The channel includes the schema, so stores in two schemas of one database never hear each other.
  const channel = `${schema}.${prefix}revocations`
  if (channel.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} options "schema" and "tablePrefix" are too long together: the notification channel "${channel}" exceeds ${MAX_IDENTIFIER_BYTES} characters`)
  }
  const table = (name: string): string => `${quote(schema)}.${quote(prefix + name)}`
  return {
    sessions: table('sessions'),
    revocations: table('revocations'),
    // Index names live in the table's schema and are never schema-qualified.
    sessionsByUser: quote(`${prefix}sessions_user_created_idx`),
    sessionsByExpiry: quote(`${prefix}sessions_expires_idx`),
    revocationsByTime: quote(`${prefix}revocations_revoked_idx`),
    revocationsByKeep: quote(`${prefix}revocations_keep_idx`),
    channel,
    channelIdentifier: quote(channel)
  }
}

function identifier (value: unknown, name: string, owner: string, mayBeEmpty: boolean): string {
  if (typeof value !== 'string' || !(IDENTIFIER.test(value) || (mayBeEmpty && value === '')) || value.length > MAX_IDENTIFIER_BYTES) {
    throw new TypeError(`${owner} option "${name}" must be ${mayBeEmpty ? 'empty or ' : ''}an identifier (ASCII letters, digits and underscores, not starting with a digit, at most ${MAX_IDENTIFIER_BYTES} characters), got ${JSON.stringify(value)}`)
  }
  return value
}

function checkPool (pool: unknown, owner: string): void {
  if (typeof (pool as Pool | undefined)?.query !== 'function' || typeof (pool as Pool).connect !== 'function') {
    throw new TypeError(`${owner} option "pool" must be a pg Pool`)
  }
}

/** Pools already warned about: one warning per pool, however many stores share it. */
const warnedPools = new WeakSet<Pool>()

/**
 * The pool's errors are the application's, so the store never listens to them (that would hide
 * them); but pg emits 'error' on the Pool when the server drops an idle connection (a failover,
 * a restart, `pg_terminate_backend`), and an 'error' without a listener ends the process. So a
 * Pool without one is pointed out, once. Pool-like objects that are no EventEmitter never emit.
 */
function warnIfUnguarded (pool: Pool): void {
  if (typeof pool.listenerCount !== 'function' || pool.listenerCount('error') > 0 || warnedPools.has(pool)) return
  warnedPools.add(pool)
  process.emitWarning(
    'The pg Pool given to PostgresStore has no \'error\' listener. When the server drops an idle connection ' +
    '(a failover, a restart, pg_terminate_backend), pg emits \'error\' on the Pool, and an unhandled \'error\' ' +
    'ends the process. Add pool.on(\'error\', ...) (log it; the pool replaces the connection).',
    { code: 'FST_TOKEN_AUTH_PG_POOL_NO_ERROR_LISTENER' })
}

function positiveInteger (value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`PostgresStore option "${name}" must be a positive integer, got ${String(value)}`)
  }
  return value
}
