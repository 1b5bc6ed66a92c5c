import type { Pool, QueryResult } from 'pg'
import {
  type CreateOptions, type CreateResult, DEFAULT_SWEEP_BATCH,
  type RevocationContext, type RevocationRecord, type RotateRequest, type RotateResult, type SessionRecord, StoreDeadlineError,
  type TokenStore
} from '../types.js'
import { RotationCoalescer } from './batch.js'
import { RevocationSubscription, toRevocation } from './listen.js'
import { toParameters, toRecord, TYPES } from './record.js'
import { checkPool, type Names, type PostgresNamingOptions, resolveNames } from './schema.js'
import { type Statement, statements, type Statements } from './statements.js'

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

const DEFAULT_SWEEP_MAX_BATCHES = 100

/**
 * Rotation statements in flight at once (docs/stores.md, «PostgreSQL: coalesced rotations»).
 * Few: rotations arriving meanwhile go out together as one statement and one commit, which costs
 * the database and node-postgres far less per rotation than more statements at once (on two
 * cores, one or two lanes cut the CPU of a refresh by a quarter against five). Two, not one, so a
 * statement stuck on a row lock (an operator's open transaction) leaves the other lane moving.
 */
const ROTATION_LANES = 2

/**
 * A store in PostgreSQL, shared by every process using the same database, schema and prefix.
 * Each operation is one statement (one round trip, one commit); `rotate` is atomic at READ
 * COMMITTED, and concurrent rotations share a statement and its commit (batch.ts). Revocations are pushed to other processes with LISTEN/NOTIFY and kept in a feed
 * table for polling. Times are stored as bigint milliseconds and read back as numbers, through
 * per-query type parsers (the pool's global parsers are left alone).
 */
export class PostgresStore implements TokenStore {
  readonly #pool: Pool
  readonly #names: Names
  readonly #sweepBatchSize: number
  readonly #sweepMaxBatches: number
  readonly #sql: Statements
  readonly #rotations: RotationCoalescer

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
    this.#sql = statements(this.#names, prepared)
    // At most ROTATION_LANES of the pool's connections, and never all but one of them: logins,
    // revocations and the sweep always find one free.
    const poolSize = (options.pool as { options?: { max?: number } }).options?.max ?? ROTATION_LANES + 1
    this.#rotations = new RotationCoalescer({
      single: async (values) => await this.#query(this.#sql.rotate, values),
      many: async (values) => await this.#query(this.#sql.rotateMany, values)
    }, this.#names.channel, Math.max(1, Math.min(ROTATION_LANES, poolSize - 1)))
  }

  /** The NOTIFY channel revocations are announced on (derived from the schema and prefix). */
  get channel (): string {
    return this.#names.channel
  }

  /** One statement: a plain insert, or under a limit a call of create.ts's function. */
  async createSession (session: SessionRecord, options: CreateOptions = {}): Promise<CreateResult> {
    const limit = options.sessionLimit
    if (limit === undefined) {
      const { rowCount } = await this.#query(this.#sql.createSession, [...toParameters(session), options.deadline ?? null])
      if (rowCount === 0) throw new StoreDeadlineError('createSession')
      return { outcome: 'created', ended: [] }
    }
    const { rows } = await this.#query(this.#sql.createLimited, [
      ...toParameters(session), limit.max, limit.policy === 'refuse', session.createdAt + limit.keepRevocationFor,
      this.#names.channel, options.deadline ?? null
    ])
    // The function's last row says what it did; the rows before it are the sessions it ended.
    const outcome = (rows[rows.length - 1] as { outcome: string }).outcome
    if (outcome === 'late') throw new StoreDeadlineError('createSession')
    if (outcome === 'refused') return { outcome: 'refused' }
    return { outcome: 'created', ended: rows.slice(0, -1).map(toRecord) }
  }

  async getSession (sessionId: string, now: number): Promise<SessionRecord | null> {
    const { rows } = await this.#query(this.#sql.getSession, [sessionId, now])
    const row = rows[0]
    return row === undefined ? null : toRecord(row)
  }

  /** One statement, or a share of one when rotations are already in flight (batch.ts). */
  async rotate (request: RotateRequest): Promise<RotateResult> {
    return await this.#rotations.rotate(request)
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

  async updateUserClaims (userId: string, claims: Record<string, unknown>, context: RevocationContext): Promise<RevocationRecord[]> {
    const { rows } = await this.#query(this.#sql.updateUserClaims, [
      userId, JSON.stringify(claims), context.now, context.now + context.keepFor, this.#names.channel
    ])
    return rows.map((row) => ({ sessionId: row.id, revokedAt: context.now, claimsVersion: row.claims_version }))
  }

  async listUserSessions (userId: string, now: number): Promise<SessionRecord[]> {
    const { rows } = await this.#query(this.#sql.listUserSessions, [userId, now])
    return rows.map(toRecord)
  }

  async revokedSince (since: number): Promise<RevocationRecord[]> {
    const { rows } = await this.#query(this.#sql.revokedSince, [since])
    return rows.map((row) => toRevocation(row.session_id, row.revoked_at, row.claims_version))
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

  /** One statement, one commit: an INSERT that conflicts with a live row returns nothing (statements.ts). */
  async useOnce (key: string, expiresAt: number, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(this.#sql.useOnce, [key, expiresAt, now])
    return rowCount === 1
  }

  async sweep (now: number): Promise<number> {
    const removed = await this.#sweepBatches(this.#sql.sweepSessions, now)
    await this.#sweepBatches(this.#sql.sweepRevocations, now)
    await this.#sweepBatches(this.#sql.sweepProofIds, now)
    return removed
  }

  /** Ends the store's LISTEN connections. The pool is the application's: it stays open. */
  async close (): Promise<void> {
    const subscriptions = [...this.#subscriptions]
    this.#subscriptions.clear()
    await Promise.all(subscriptions.map(async (subscription) => await subscription.stop()))
  }

  /**
   * Runs batches until one comes back short or the round cap is reached; resolves with the rows
   * deleted. A sessions batch also reports how many rows were due (some only get a later sweep_at,
   * statements.ts); a feed or proof-id batch deletes every row it takes (but a proof id used anew
   * meanwhile, which at worst ends the call early: the next sweep goes on).
   */
  async #sweepBatches (statement: Statement, now: number): Promise<number> {
    let removed = 0
    for (let round = 0; round < this.#sweepMaxBatches; round++) {
      const result = await this.#query(statement, [now, this.#sweepBatchSize])
      const row = result.rows[0] as { due: number, removed: number } | undefined
      const deleted = row === undefined ? result.rowCount as number : row.removed // rowCount: always a number for DELETE
      removed += deleted
      if ((row === undefined ? deleted : row.due) < this.#sweepBatchSize) break
    }
    return removed
  }

  async #query (statement: Statement, values: unknown[]): Promise<QueryResult> {
    return await this.#pool.query({ ...statement, values, types: TYPES })
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
