import { randomBytes } from 'node:crypto'
import pg from 'pg'
import t, { type Test } from 'tap'
import { MAX_BATCH, retriable, toResult } from '../lib/stores/postgres/batch.js'
import { migrate, PostgresStore } from '../lib/stores/postgres/index.js'
import type { RotateRequest, RotateResult, SessionRecord } from '../lib/stores/types.js'
import { sessionRecord } from '../lib/testing.js'
import { count, MINUTE } from '../lib/testing/fixtures.js'
import { rotation, T0 } from './postgres-fixtures.js'
import { waitFor } from './helpers.js'
import { DATABASE_URL, postgresAvailable } from './services.js'

// Coalesced rotations (lib/stores/postgres/batch.ts), forced: a store on a pool of 2 sends one
// rotation statement at a time, so rotations made while one is held up wait and go out together.
const PREFIX = 'ftabatch_'

const skip = await postgresAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  await suite()
}

async function suite (): Promise<void> {
  const pool = newPool({ max: 20 })
  t.teardown(() => pool.end())

  function newPool (config: pg.PoolConfig = {}): pg.Pool {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, ...config })
    pool.on('error', () => {})
    return pool
  }

  async function freshSchema (t: Test): Promise<string> {
    const schema = `fta_batch_${randomBytes(6).toString('hex')}`
    await pool.query(`CREATE SCHEMA ${schema}`)
    await migrate(pool, { schema, tablePrefix: PREFIX })
    t.teardown(async () => { await pool.query(`DROP SCHEMA ${schema} CASCADE`) })
    return schema
  }

  /**
   * A store on its own pool, of 2 unless said (one rotation statement in flight), recording the
   * rotation statements it sends.
   */
  function batchingStore (t: Test, schema: string, preparedStatements = true, poolSize = 2): { store: PostgresStore, sent: number[], pool: pg.Pool } {
    const own = newPool({ max: poolSize })
    t.teardown(() => own.end())
    const sent: number[] = [] // members per rotation statement: 1 alone, n in a batch
    const spy = {
      options: own.options,
      connect: own.connect.bind(own),
      query: async (config: pg.QueryConfig) => {
        if (config.text.includes('rotate_many_v2')) sent.push((config.values?.[0] as unknown[]).length)
        else if (config.text.includes('rotate_v2')) sent.push(1)
        return await own.query(config)
      }
    } as unknown as pg.Pool
    return { store: new PostgresStore({ pool: spy, schema, tablePrefix: PREFIX, preparedStatements }), sent, pool: own }
  }

  /** Holds the row lock of each session on a connection of its own, until the returned function is called. */
  async function lockRows (schema: string, ids: string[]): Promise<() => Promise<void>> {
    const locker = await pool.connect()
    await locker.query('BEGIN')
    await locker.query(`SELECT id FROM "${schema}".${PREFIX}sessions WHERE id = ANY ($1) FOR UPDATE`, [ids])
    return async () => { await locker.query('ROLLBACK'); locker.release() }
  }

  /** The pid of a statement on `schema`'s tables waiting for a lock, once there are `count` of them. */
  async function blocked (schema: string, count = 1): Promise<number> {
    return await waitFor(async () => {
      const { rows } = await pool.query("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1 ORDER BY pid",
        [`%"${schema}".%`])
      return rows.length >= count ? rows[rows.length - 1].pid as number : undefined
    }, { timeout: 5000, message: `no statement on ${schema} waits for a lock` })
  }

  async function dump (schema: string): Promise<unknown[]> {
    const { rows } = await pool.query(`SELECT row_to_json(s)::jsonb - 'seq' AS row FROM (
      SELECT * FROM "${schema}".${PREFIX}sessions ORDER BY id) s
      UNION ALL SELECT row_to_json(r)::jsonb - 'seq' FROM (SELECT * FROM "${schema}".${PREFIX}revocations ORDER BY seq) r`)
    return rows.map((row) => row.row)
  }

  /**
   * Sends `requests` as one batch: a first rotation of `blocker` is held up by a row lock, the
   * others are made meanwhile (so they wait), then the lock goes. Settles each.
   */
  async function asOneBatch (t: Test, schema: string, store: PostgresStore, sent: number[], requests: RotateRequest[]): Promise<Array<PromiseSettledResult<RotateResult>>> {
    const blocker = record({ userId: 'blocker' })
    await store.createSession(blocker)
    const release = await lockRows(schema, [blocker.id])
    const first = store.rotate(rotation(blocker))
    await blocked(schema)
    const results = Promise.allSettled(requests.map(async (request) => await store.rotate(request)))
    await release()
    t.equal((await first).outcome, 'rotated', 'the rotation that held the others up')
    return await results
  }

  t.test('a batch of mixed outcomes gives exactly what the same rotations one by one give', async (t) => {
    const batched = await freshSchema(t)
    const alone = await freshSchema(t)
    const rotatedAt = T0 + 1000
    const sessions = {
      rotated: record(),
      reauthenticated: record(),
      grace: record({ previousTokenHash: 'pred-g', rotatedAt }),
      superseded: record({ previousTokenHash: 'pred-s', rotatedAt, graceUses: 2 }),
      recovered: record({ previousTokenHash: 'pred-r', rotatedAt }),
      reused: record(),
      expired: record({ expiresAt: T0 + 1500 }),
      late: record(),
      twice: record()
    }
    const now = T0 + 2000
    const stepUp = { time: now, acr: 'mfa', amr: ['pwd', 'otp'] }
    const requests: RotateRequest[] = [
      rotation(sessions.rotated, { now, claims: { role: 'admin' } }),
      rotation(sessions.reauthenticated, { now, authentication: stepUp, absoluteExpiresAt: now + MINUTE }),
      rotation(sessions.grace, { presentedHash: 'pred-g', now, authentication: stepUp, absoluteExpiresAt: now + MINUTE }),
      rotation(sessions.superseded, { presentedHash: 'pred-s', now }),
      rotation(sessions.recovered, { presentedHash: 'pred-r', now, grace: 0, nextHash: 'recovery' }),
      rotation(sessions.reused, { presentedHash: 'stolen', now }),
      rotation(sessions.expired, { now }),
      rotation(record(), { now }), // never stored: missing
      rotation(sessions.late, { now, deadline: Date.now() - 1000 }),
      rotation(sessions.twice, { now, nextHash: 'twice-1' }),
      rotation(sessions.twice, { presentedHash: 'twice-1', now: now + 1, nextHash: 'twice-2', userAgent: 'agent/3' }),
      rotation(sessions.twice, { presentedHash: sessions.twice.tokenHash, now: now + 2, nextHash: 'twice-3' })
    ]
    const stores: PostgresStore[] = []
    for (const schema of [batched, alone]) {
      const store = new PostgresStore({ pool, schema, tablePrefix: PREFIX })
      for (const session of Object.values(sessions)) await store.createSession(session)
      stores.push(store)
    }
    const { store, sent } = batchingStore(t, batched)
    const results = await asOneBatch(t, batched, store, sent, requests)
    t.same(sent, [1, requests.length], 'the blocker alone, then every rotation in one statement')

    const expected: Array<PromiseSettledResult<RotateResult>> = []
    for (const request of requests) expected.push((await Promise.allSettled([(stores[1] as PostgresStore).rotate(request)]))[0] as PromiseSettledResult<RotateResult>)
    t.same(results, expected, 'every result as one by one, in arrival order')
    const blockerless = (rows: unknown[]) => rows.filter((row) => !((row as { user_id?: string }).user_id === 'blocker'))
    t.same(blockerless(await dump(batched)), await dump(alone), 'and the same tables')

    t.same(results.map((result) => result.status === 'fulfilled' ? result.value.outcome : (result.reason as Error).name), [
      'rotated', 'rotated', 'grace', 'superseded', 'recovered', 'reused', 'expired', 'missing', 'StoreDeadlineError', 'rotated', 'rotated', 'reused'
    ], 'each outcome as the state machine decides it')
    const value = (i: number) => (results[i] as PromiseFulfilledResult<RotateResult & { session: SessionRecord }>).value.session
    t.match(value(0), { tokenHash: sessions.rotated.tokenHash + '-next', previousTokenHash: sessions.rotated.tokenHash, claims: { role: 'admin' }, rotatedAt: now })
    t.same(value(0).authentication, sessions.rotated.authentication, 'no re-authentication: kept')
    t.equal(value(0).absoluteExpiresAt, sessions.rotated.absoluteExpiresAt, 'no shorter end: kept')
    t.strictSame(value(1).authentication, stepUp, 're-authenticated in the batch')
    t.match(value(1), { absoluteExpiresAt: now + MINUTE, expiresAt: now + MINUTE }, 'shortened in the batch, the idle expiry with it')
    t.match(value(2), { graceUses: 1, tokenHash: sessions.grace.tokenHash, authentication: sessions.grace.authentication, absoluteExpiresAt: sessions.grace.absoluteExpiresAt },
      'a grace answer in the batch neither re-authenticates nor shortens')
    t.match(value(4), { tokenHash: 'recovery', previousTokenHash: 'pred-r', rotatedAt: now })
    t.match(value(10), { tokenHash: 'twice-2', previousTokenHash: 'twice-1', userAgent: 'agent/3' }, 'the second rotation of a session saw the first')
    t.same((await stores[0]?.revokedSince(0))?.map((entry) => entry.sessionId), [sessions.reused.id, sessions.twice.id])
    t.same(await stores[0]?.listUserSessions(sessions.late.userId, T0), [sessions.late], 'the late member changed nothing')
  })

  t.test(`at most ${MAX_BATCH} a statement; a lone waiting rotation goes alone`, async (t) => {
    const schema = await freshSchema(t)
    const { store, sent } = batchingStore(t, schema)
    const sessions = Array.from({ length: MAX_BATCH + 1 }, () => record())
    for (const session of sessions) await store.createSession(session)
    const results = await asOneBatch(t, schema, store, sent, sessions.map((session) => rotation(session)))
    t.ok(results.every((result) => result.status === 'fulfilled' && result.value.outcome === 'rotated'))
    t.same(sent, [1, MAX_BATCH, 1])
    sent.length = 0
    const [failed] = await asOneBatch(t, schema, store, sent, [rotation(record(), { now: 1e19 })])
    t.match(failed, { status: 'rejected', reason: { code: '22003' } }, 'alone, its error is its own')
    t.same(sent, [1, 1])
  })

  t.test('two rotation statements in flight on a pool of 10, whatever its size; the rest wait and go together', async (t) => {
    const schema = await freshSchema(t)
    const { store, sent } = batchingStore(t, schema, true, 10)
    const [held1, held2, ...waiting] = Array.from({ length: 5 }, () => record())
    for (const session of [held1, held2, ...waiting]) await store.createSession(session as SessionRecord)
    const release = await lockRows(schema, [held1?.id as string, held2?.id as string])
    const lanes = [held1, held2].map(async (session) => await store.rotate(rotation(session as SessionRecord)))
    await blocked(schema, 2)
    const later = waiting.map(async (session) => await store.rotate(rotation(session)))
    // Had a third statement gone out, it would have completed: its rows are not locked.
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.same(sent, [1, 1], 'both lanes held by the locked rows; the three others wait')
    await release()
    t.match(await Promise.all([...lanes, ...later]), Array(5).fill({ outcome: 'rotated' }))
    t.same(sent, [1, 1, 3], 'the three went out as one batch')
  })

  t.test('without prepared statements, batches too', async (t) => {
    const schema = await freshSchema(t)
    const { store, sent, pool: own } = batchingStore(t, schema, false)
    const sessions = [record(), record()]
    for (const session of sessions) await store.createSession(session)
    const results = await asOneBatch(t, schema, store, sent, sessions.map((session) => rotation(session)))
    t.match(results, [{ value: { outcome: 'rotated' } }, { value: { outcome: 'rotated' } }])
    t.same(sent, [1, 2])
    t.same((await own.query('SELECT name FROM pg_prepared_statements')).rows, [])
  })

  t.test('a batch the database refuses is run again one by one: only the bad member fails', async (t) => {
    const schema = await freshSchema(t)
    const { store, sent } = batchingStore(t, schema)
    const good = [record(), record()]
    for (const session of good) await store.createSession(session)
    const results = await asOneBatch(t, schema, store, sent, [
      rotation(good[0] as SessionRecord), rotation(record(), { now: 1e19 }), rotation(good[1] as SessionRecord)
    ])
    t.match(results, [
      { status: 'fulfilled', value: { outcome: 'rotated' } },
      { status: 'rejected', reason: { code: '22003', message: /out of range for type bigint/ } },
      { status: 'fulfilled', value: { outcome: 'rotated' } }
    ])
    t.same(sent, [1, 3, 1, 1, 1], 'the batch, then each member alone')
  })

  t.test('a batch whose connection is terminated mid-flight rejects every member, changes nothing; the process lives on', async (t) => {
    const schema = await freshSchema(t)
    const { store, sent, pool: own } = batchingStore(t, schema)
    const errors: Error[] = []
    own.on('error', (error) => errors.push(error))
    const [a, b, held, blocker] = [record(), record(), record(), record()]
    for (const session of [a, b, held, blocker]) await store.createSession(session)
    const releaseHeld = await lockRows(schema, [held.id])
    const releaseBlocker = await lockRows(schema, [blocker.id])
    const first = store.rotate(rotation(blocker))
    await blocked(schema)
    const results = Promise.allSettled([a, held, b].map(async (session) => await store.rotate(rotation(session))))
    await releaseBlocker()
    t.equal((await first).outcome, 'rotated')
    const pid = await blocked(schema) // the batch, waiting for the held row
    await pool.query('SELECT pg_terminate_backend($1)', [pid])
    t.match(await results, Array(3).fill({ status: 'rejected', reason: { code: '57P01' } }), 'every member rejects: 503s')
    t.same(sent, [1, 3], 'not run again one by one')
    await releaseHeld()
    const check = new PostgresStore({ pool, schema, tablePrefix: PREFIX })
    for (const session of [a, b, held]) t.same(await check.listUserSessions(session.userId, T0), [session], 'unchanged')
    t.equal((await store.rotate(rotation(a))).outcome, 'rotated', 'the store works on')
    t.same(errors, [])
  })

  t.test('two batches over the same sessions in opposite orders, and a revoke-all, complete without deadlock', async (t) => {
    const schema = await freshSchema(t)
    const sessions = Array.from({ length: 12 }, () => record({ userId: 'shared' }))
    const one = batchingStore(t, schema)
    const two = batchingStore(t, schema)
    for (const session of sessions) await one.store.createSession(session)
    const middle = sessions[6] as SessionRecord
    const releaseMiddle = await lockRows(schema, [middle.id])
    const [blockerOne, blockerTwo] = [record(), record()]
    await one.store.createSession(blockerOne)
    await one.store.createSession(blockerTwo)
    const releaseBlockers = await lockRows(schema, [blockerOne.id, blockerTwo.id])
    const firsts = [one.store.rotate(rotation(blockerOne)), two.store.rotate(rotation(blockerTwo))]
    await blocked(schema, 2)
    const results = Promise.all([
      Promise.all(sessions.map(async (session) => await one.store.rotate(rotation(session)))),
      Promise.all([...sessions].reverse().map(async (session) => await two.store.rotate(rotation(session))))
    ])
    await releaseBlockers()
    await Promise.all(firsts)
    await blocked(schema, 2) // both batches wait for the middle row, each holding some others
    await releaseMiddle()
    const [first, second] = await results
    const outcomes = sessions.map((_, i) => [first[i]?.outcome, second[sessions.length - 1 - i]?.outcome].sort())
    t.same(outcomes, sessions.map(() => ['grace', 'rotated']), 'each session rotated once, its twin answered grace')
    t.same(one.sent, [1, 12])
    t.same(two.sent, [1, 12])

    // Revoke-all locks in the batches' order too.
    const releaseAgain = await lockRows(schema, [middle.id])
    const blocker = record()
    await one.store.createSession(blocker)
    const releaseBlocker = await lockRows(schema, [blocker.id])
    const held = one.store.rotate(rotation(blocker))
    await blocked(schema)
    const later = Promise.all(sessions.map(async (session) => await one.store.rotate(rotation(session, { presentedHash: 'stale' }))))
    await releaseBlocker()
    await held
    await blocked(schema)
    const revoked = one.store.revokeUserSessions('shared', { now: T0, keepFor: MINUTE })
    await blocked(schema, 2)
    await releaseAgain()
    const [rotations, ids] = await Promise.all([later, revoked])
    t.same(count(rotations.map((result) => result.outcome)), { reused: 12 }, 'the batch came first: every session ended as theft')
    t.same(ids, [], 'revoke-all found nothing left, and neither deadlocked')
  })

  t.test('a session limit holds while rotations of the user\'s sessions go out in a batch; a claims update meanwhile never deadlocks', async (t) => {
    const schema = await freshSchema(t)
    const { store, sent } = batchingStore(t, schema)
    const logins = new PostgresStore({ pool, schema, tablePrefix: PREFIX }) // the file's pool of 20: logins run side by side
    const userId = 'capped'
    const existing = Array.from({ length: 6 }, (_, i) => record({ userId, createdAt: T0 + i, lastUsedAt: T0 + i }))
    for (const session of existing) await store.createSession(session)
    const fresh = Array.from({ length: 12 }, (_, i) => record({ userId, createdAt: T0 + 100 + i, lastUsedAt: T0 + 100 + i }))
    const limit = { max: 3, policy: 'end-least-recent', keepRevocationFor: MINUTE } as const

    const blocker = record({ userId: 'blocker' })
    await store.createSession(blocker)
    const release = await lockRows(schema, [blocker.id, ...existing.map((session) => session.id)])
    const first = store.rotate(rotation(blocker))
    await blocked(schema)
    const rotations = Promise.all(existing.map(async (session) => await store.rotate(rotation(session, { now: T0 + 50 }))))
    const creates = Promise.all(fresh.map(async (session) => await logins.createSession(session, { sessionLimit: limit })))
    const claims = logins.updateUserClaims(userId, { role: 'user' }, { now: T0 + 60, keepFor: MINUTE })
    // The blocked rotation, the first login waiting for rows the batch will want (the others for
    // its advisory lock), the claims update for those rows too.
    await blocked(schema, 2 + fresh.length)
    await release()
    t.equal((await first).outcome, 'rotated')
    const [rotated, created, updated] = await Promise.all([rotations, creates, claims])
    t.same(sent, [1, existing.length], 'the user\'s rotations went out as one batch')
    t.ok(created.every((result) => result.outcome === 'created'), 'every login stored')
    const live = await store.listUserSessions(userId, T0 + 200)
    t.equal(live.length, 3, 'the user is left with exactly three live sessions')
    const ended = created.flatMap((result) => result.outcome === 'created' ? result.ended.map((session) => session.id) : [])
    t.equal(new Set(ended).size, ended.length, 'each ended once')
    t.same([...ended, ...live.map((session) => session.id)].sort(), [...existing, ...fresh].map((session) => session.id).sort(), 'every session either lives or ended')
    t.ok(rotated.every((result) => ['rotated', 'missing'].includes(result.outcome)), 'a rotation either came first or found its session ended')
    t.ok(updated.every((entry) => entry.claimsVersion === 1), 'the claims update reached each session it found once')
    t.equal((await store.revokedSince(0)).filter((entry) => entry.claimsVersion === undefined).length, ended.length, 'each ended session fed as revoked')
  })

  t.test('helpers: a missing row is missing; only server errors other than lost connections are retried', async (t) => {
    t.same(toResult(undefined), { outcome: 'missing' })
    t.notOk(retriable(null))
    t.notOk(retriable(new Error('Connection terminated unexpectedly')))
    t.notOk(retriable({ severity: 'FATAL', code: '57P01' }))
    t.notOk(retriable({ severity: 'FATAL', code: '08006' }))
    t.notOk(retriable({ severity: 'ERROR' }))
    t.ok(retriable({ severity: 'ERROR', code: '40P01' }))
  })
}

function record (overrides: Partial<SessionRecord> = {}): SessionRecord {
  return sessionRecord({ userId: `user-${randomBytes(6).toString('hex')}`, expiresAt: T0 + 10 * MINUTE, absoluteExpiresAt: T0 + 60 * MINUTE, ...overrides })
}
