import { randomBytes } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import pg from 'pg'
import t, { type Test } from 'tap'
import { migrate, PostgresStore, postgresMigrationSql, type PostgresStoreOptions } from '../lib/stores/postgres/index.js'
import { type RevocationRecord, type SessionRecord, StoreDeadlineError, type TokenStore } from '../lib/stores/types.js'
import { defineStoreConformance, sessionRecord } from '../lib/testing.js'
import { build, login, refresh, storedHashOf, tokenSecrets, waitFor } from './helpers.js'
import { freePort } from './private-servers/process.js'
import { DATABASE_URL, postgresAvailable } from './services.js'
import { TcpProxy } from './tcp-proxy.js'
// The conformance kit's lifetimes, which its `sessionRecord` and `rotationRequest` use.
import { count, KEEP, MINUTE } from '../lib/testing/fixtures.js'
import { rotation, T0 } from './postgres-fixtures.js'

const skip = await postgresAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  await suite()
}

async function suite (): Promise<void> {
  /** The file's pool: 20 connections, so concurrent statements really run in parallel. */
  const pool = newPool()
  t.teardown(() => pool.end())

  /** A pool as an application should have it: with an 'error' listener (the store warns otherwise). */
  function newPool (config: pg.PoolConfig = {}): pg.Pool {
    const pool = new pg.Pool({ connectionString: DATABASE_URL, max: 20, ...config })
    pool.on('error', () => {}) // an idle connection the server dropped; the pool replaces it
    return pool
  }

  /** A schema of its own for one test (so runs never collide), dropped at teardown. */
  async function freshSchema (t: Test): Promise<string> {
    const schema = `fta_test_${randomBytes(6).toString('hex')}`
    await pool.query(`CREATE SCHEMA ${schema}`)
    t.teardown(async () => { await pool.query(`DROP SCHEMA ${schema} CASCADE`) })
    return schema
  }

  /** A migrated store in a fresh schema, closed at teardown. */
  async function freshStore (t: Test, options: Partial<PostgresStoreOptions> = {}): Promise<PostgresStore> {
    const schema = await freshSchema(t)
    await migrate(pool, { schema, tablePrefix: options.tablePrefix })
    const store = new PostgresStore({ pool, schema, ...options })
    t.teardown(() => store.close())
    return store
  }

  // The conformance kit, each of its tests on its own schema.
  const schemas = new WeakMap<TokenStore, string>()
  t.test('conformance kit', async (t) => {
    defineStoreConformance({
      test: (name, fn) => t.test(name, fn),
      createStore: async () => {
        const schema = `fta_test_${randomBytes(6).toString('hex')}`
        await pool.query(`CREATE SCHEMA ${schema}`)
        await migrate(pool, { schema })
        const store = new PostgresStore({ pool, schema })
        schemas.set(store, schema)
        return store
      },
      destroyStore: async (store) => {
        await store.close()
        await pool.query(`DROP SCHEMA ${schemas.get(store) as string} CASCADE`)
      }
    })
  })

  t.test('options: invalid identifiers and numbers throw a TypeError naming the option', async (t) => {
    const bad: Array<[Record<string, unknown>, RegExp]> = [
      [{ schema: 'public"; DROP TABLE users; --' }, /option "schema" must be an identifier/],
      [{ schema: 'has-dash' }, /option "schema"/],
      [{ schema: '1starts_with_digit' }, /option "schema"/],
      [{ schema: '' }, /option "schema"/],
      [{ schema: 'x'.repeat(64) }, /option "schema"/],
      [{ schema: 42 }, /option "schema" .* got 42/],
      [{ schema: 'ünïcode' }, /option "schema"/],
      [{ tablePrefix: 'p";--' }, /option "tablePrefix" must be empty or an identifier/],
      [{ tablePrefix: 'a b' }, /option "tablePrefix"/],
      [{ tablePrefix: 'x'.repeat(39) }, /option "tablePrefix" must be at most 38 characters, got 39/],
      [{ schema: 's'.repeat(40), tablePrefix: 'p'.repeat(12) }, /options "schema" and "tablePrefix" are too long together/],
      [{ sweepBatchSize: 0 }, /option "sweepBatchSize" must be a positive integer, got 0/],
      [{ sweepBatchSize: 1.5 }, /option "sweepBatchSize"/],
      [{ sweepMaxBatches: -1 }, /option "sweepMaxBatches" must be a positive integer, got -1/],
      [{ preparedStatements: 'yes' }, /option "preparedStatements" must be a boolean, got yes/]
    ]
    for (const [options, message] of bad) {
      t.throws(() => new PostgresStore({ pool, ...options } as unknown as PostgresStoreOptions), new TypeError(), JSON.stringify(options))
      t.throws(() => new PostgresStore({ pool, ...options } as unknown as PostgresStoreOptions), { message }, JSON.stringify(options))
    }
    t.throws(() => new PostgresStore(undefined as unknown as PostgresStoreOptions), { name: 'TypeError', message: 'PostgresStore option "pool" must be a pg Pool' })
    t.throws(() => new PostgresStore({} as PostgresStoreOptions), { name: 'TypeError', message: /option "pool"/ })
    t.throws(() => new PostgresStore({ pool: { query () {} } } as unknown as PostgresStoreOptions), { name: 'TypeError', message: /option "pool"/ })
    t.throws(() => postgresMigrationSql({ schema: 'no way' }), { name: 'TypeError', message: /^postgresMigrationSql option "schema"/ })
    await t.rejects(migrate(pool, { tablePrefix: 'x;' }), { name: 'TypeError', message: /^migrate option "tablePrefix"/ })
    await t.rejects(migrate(undefined as unknown as pg.Pool), { name: 'TypeError', message: 'migrate option "pool" must be a pg Pool' })

    const longest = new PostgresStore({ pool, schema: 's'.repeat(40), tablePrefix: 'p'.repeat(11) })
    t.equal(longest.channel, `${'s'.repeat(40)}.${'p'.repeat(11)}revocations`, 'a 63-character channel is accepted')
    t.equal(new PostgresStore({ pool }).channel, 'public.token_auth_revocations', 'defaults')
    t.equal(new PostgresStore({ pool, schema: 'Mixed_Case', tablePrefix: '' }).channel, 'Mixed_Case.revocations')
  })

  t.test('migration: the exported SQL, idempotent, atomic, and exactly what migrate runs', async (t) => {
    const schema = await freshSchema(t)
    const sql = postgresMigrationSql({ schema })
    t.match(sql, `CREATE TABLE IF NOT EXISTS "${schema}"."token_auth_sessions" (`)
    t.match(sql, `CREATE TABLE IF NOT EXISTS "${schema}"."token_auth_revocations" (`)
    t.match(sql, `CREATE INDEX IF NOT EXISTS "token_auth_sessions_user_created_idx" ON "${schema}"."token_auth_sessions" (user_id, created_at);`)
    t.notMatch(sql, /\{\w+\}/, 'every placeholder is filled')
    t.equal(postgresMigrationSql(), postgresMigrationSql({ schema: 'public', tablePrefix: 'token_auth_' }), 'defaults')

    const ran: unknown[] = []
    const spy = { query: async (text: unknown, ...rest: unknown[]) => { ran.push(text); return await pool.query(text as string, ...rest as []) }, connect: () => pool.connect() }
    await migrate(spy as unknown as pg.Pool, { schema })
    t.same(ran, [sql], 'migrate runs the exported text, as one query')

    await migrate(pool, { schema })
    await Promise.all([migrate(pool, { schema }), migrate(pool, { schema }), migrate(pool, { schema })])
    t.pass('running it again, and concurrently, succeeds')

    const columns = await pool.query(`SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
      WHERE table_schema = $1 ORDER BY table_name, ordinal_position`, [schema])
    const shape = (table: string) => Object.fromEntries(columns.rows.filter((row) => row.table_name === table)
      .map((row) => [row.column_name, `${row.data_type}${row.is_nullable === 'YES' ? ' null' : ''}`]))
    t.same(shape('token_auth_sessions'), {
      id: 'text',
      user_id: 'text',
      claims: 'jsonb',
      created_at: 'bigint',
      last_used_at: 'bigint',
      expires_at: 'bigint',
      absolute_expires_at: 'bigint',
      token_hash: 'text',
      previous_token_hash: 'text null',
      rotated_at: 'bigint null',
      grace_uses: 'integer',
      user_agent: 'text null',
      ip: 'text null',
      sweep_at: 'bigint',
      first_user_agent: 'text null',
      first_ip: 'text null',
      authentication: 'jsonb',
      claims_version: 'integer'
    })
    t.same(shape('token_auth_revocations'), { seq: 'bigint', session_id: 'text', revoked_at: 'bigint', keep_until: 'bigint', claims_version: 'integer null' })
    t.same(shape('token_auth_proof_ids'), { key: 'text', expires_at: 'bigint' })
    const indexes = await pool.query('SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname', [schema])
    t.same(indexes.rows.map((row) => row.indexdef.replace(/^.* USING /, '')), [
      'btree (expires_at)',
      'btree (key)',
      'btree (keep_until)',
      'btree (seq)',
      'btree (revoked_at)',
      'btree (id)',
      'btree (sweep_at)',
      'btree (user_id, created_at)'
    ], 'primary keys, per-user, sweep, feed and proof-id indexes; the sessions\' expires_at, which every rotation writes, is not indexed')
    t.same(await fillfactor(schema), ['fillfactor=80'], 'room on each page for a rotation\'s HOT update')
    t.same(await functions(schema), ['token_auth_create_session_v2/22', 'token_auth_rotate_many_v2/15', 'token_auth_rotate_v2/15'])

    // A database migrated with an unreleased draft of version 2 (rotations without re-authentication
    // or a shorter end): its functions are replaced, not left beside the new ones.
    const draft = await freshSchema(t)
    await migrate(pool, { schema: draft })
    const stub = (args: string) => `CREATE FUNCTION "${draft}".token_auth_${args} RETURNS void LANGUAGE sql AS 'SELECT'`
    await pool.query(stub('rotate_v2(text, text, text, bigint, bigint, bigint, bigint, text, text, jsonb, bigint, text, bigint)'))
    await pool.query(stub('rotate_many_v2(text[], text[], text[], bigint[], bigint[], bigint[], bigint[], text[], text[], jsonb[], bigint[], text, bigint[])'))
    t.equal((await functions(draft)).length, 5)
    await migrate(pool, { schema: draft })
    t.same(await functions(draft), await functions(schema), 'the draft\'s functions are gone')

    const other = await freshSchema(t)
    await pool.query(postgresMigrationSql({ schema: other, tablePrefix: 'other_' }))
    const tables = await pool.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name', [other])
    t.same(tables.rows.map((row) => row.table_name), ['other_proof_ids', 'other_revocations', 'other_sessions'], 'the SQL runs as is in a plain query')
  })

  t.test('migration: all or nothing; the schema must exist', async (t) => {
    const schema = await freshSchema(t)
    // A view where the feed table belongs: its CREATE TABLE IF NOT EXISTS passes, its CREATE INDEX fails.
    await pool.query(`CREATE VIEW ${schema}.token_auth_revocations AS SELECT 1 AS x`)
    await t.rejects(migrate(pool, { schema }), { message: /token_auth_revocations/ })
    const tables = await pool.query('SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = $2', [schema, 'BASE TABLE'])
    t.same(tables.rows, [], 'the sessions table created before the failure was rolled back')
    await t.rejects(migrate(pool, { schema: `${schema}_missing` }), { message: /schema .* does not exist/ })
  })

  t.test('migration: a version 1 schema is upgraded in place; its sessions are kept, swept and rotated (HOT)', async (t) => {
    const schema = await freshSchema(t)
    await pool.query(VERSION_1_SQL.replaceAll('{schema}', schema))
    const sessions = `"${schema}".token_auth_sessions`
    const expired = record({ expiresAt: T0 + MINUTE })
    const live = record({ expiresAt: T0 + 10 * MINUTE })
    // Inserted as a version 1 process did: no sweep_at column yet, nor the session policy's.
    const insertAsVersion1 = async (session: SessionRecord): Promise<void> => {
      await pool.query(`INSERT INTO ${sessions} (id, user_id, claims, created_at, last_used_at, expires_at, absolute_expires_at, token_hash, grace_uses, user_agent, ip)
        VALUES ($1, $2, $3, $4, $4, $5, $6, $7, 0, $8, $9)`, [session.id, session.userId, session.claims, session.createdAt, session.expiresAt, session.absoluteExpiresAt, session.tokenHash, session.userAgent, session.ip])
    }
    for (const session of [expired, live]) await insertAsVersion1(session)
    await pool.query(`INSERT INTO "${schema}".token_auth_revocations (session_id, revoked_at, keep_until) VALUES ('gone', $1, $2)`, [T0, T0 + KEEP])
    await migrate(pool, { schema })
    await migrate(pool, { schema })
    const upgraded = new PostgresStore({ pool, schema })
    t.same(await upgraded.getSession(live.id, T0), { ...live, firstUserAgent: live.userAgent, firstIp: live.ip, authentication: { time: live.createdAt }, claimsVersion: 0 },
      'the first client is the current one, authenticated at creation, claims version 0')
    t.strictSame(await upgraded.revokedSince(T0), [{ sessionId: 'gone', revokedAt: T0 }], 'the feed\'s revocations have no claims version')
    const duringUpgrade = record({ expiresAt: T0 + 10 * MINUTE, userId: 'rolling' })
    await insertAsVersion1(duringUpgrade)
    t.same((await upgraded.getSession(duringUpgrade.id, T0))?.authentication, { time: 0 }, 'a version 1 process inserting meanwhile: authenticated long ago')
    await pool.query(`DELETE FROM ${sessions} WHERE id = $1`, [duringUpgrade.id])
    const indexes = await pool.query('SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 ORDER BY indexname', [schema, 'token_auth_sessions'])
    t.same(indexes.rows.map((row) => row.indexdef.replace(/^.* USING /, '')), ['btree (id)', 'btree (sweep_at)', 'btree (user_id, created_at)'], 'the expiry index is replaced')
    t.same(await fillfactor(schema), ['fillfactor=80'])
    t.same((await pool.query(`SELECT sweep_at FROM ${sessions}`)).rows, [{ sweep_at: '0' }, { sweep_at: '0' }], 'old rows are due at once')

    const store = new PostgresStore({ pool, schema })
    t.equal(await store.sweep(T0 + MINUTE), 1, 'the expired session goes')
    t.same((await pool.query(`SELECT id, sweep_at FROM ${sessions}`)).rows, [{ id: live.id, sweep_at: String(live.expiresAt) }], 'the live one is due at its expiry')
    t.equal(await store.sweep(T0 + MINUTE), 0, 'and not looked at again before')
    const before = await hotUpdates(sessions)
    const rotated = await store.rotate(rotation(live, { now: T0 + 2 * MINUTE }))
    t.equal(rotated.outcome, 'rotated')
    t.same(await hotUpdates(sessions), { updates: before.updates + 1, hot: before.hot + 1 }, 'the rotation was a HOT update')
    t.same((await pool.query(`SELECT sweep_at FROM ${sessions}`)).rows, [{ sweep_at: String(live.expiresAt) }], 'sweep_at is left alone')
    t.equal(await store.sweep(T0 + 10 * MINUTE), 0, 'due, but alive: its idle expiry moved on')
    t.same((await pool.query(`SELECT sweep_at FROM ${sessions}`)).rows, [{ sweep_at: String(T0 + 2 * MINUTE + rotation(live).idleTtl) }])
  })

  t.test('sweep_at never trails expires_at: a rotation that shortens the idle expiry lowers it', async (t) => {
    const store = await freshStore(t)
    const schema = store.channel.split('.')[0] as string
    const session = record({ expiresAt: T0 + 10 * MINUTE })
    await store.createSession(session)
    t.equal((await store.rotate(rotation(session, { now: T0 + MINUTE, idleTtl: MINUTE }))).outcome, 'rotated')
    t.same((await pool.query(`SELECT sweep_at, expires_at FROM "${schema}".token_auth_sessions`)).rows, [{ sweep_at: String(T0 + 2 * MINUTE), expires_at: String(T0 + 2 * MINUTE) }])
    t.equal(await store.sweep(T0 + 2 * MINUTE), 1, 'swept at its new expiry')
  })

  t.test('records round-trip exactly; the pool\'s global type parsers are neither used nor changed', async (t) => {
    const store = await freshStore(t)
    const session = record({
      claims: { z: 1, a: [1, 2.5, -3e-7, 'x'], big: 2 ** 53 - 1, nested: { ok: true, none: null, s: '"quoted" \\ ✓' } },
      previousTokenHash: 'previous',
      rotatedAt: T0 + 1,
      graceUses: 3,
      userAgent: null,
      ip: null,
      expiresAt: 8_640_000_000_000_000 // the largest Date; bigint holds it exactly
    })
    const int8 = pg.types.getTypeParser(20)
    const jsonb = pg.types.getTypeParser(3802)
    pg.types.setTypeParser(20, (value: string) => `global int8 ${value}`)
    pg.types.setTypeParser(3802, (value: string) => `global jsonb ${value}`)
    t.teardown(() => { pg.types.setTypeParser(20, int8); pg.types.setTypeParser(3802, jsonb) })
    await store.createSession(session)
    t.strictSame(await store.listUserSessions(session.userId, T0), [session])
    t.equal((await pool.query('SELECT 1::int8 AS n')).rows[0].n, 'global int8 1', 'the application\'s parsers still apply to its own queries')
  })

  t.test('the tables hold hashes, never a token or its jti (through the plugin)', async (t) => {
    const store = await freshStore(t)
    const schema = store.channel.split('.')[0] as string
    const app = await build(t, { store })
    const first = await login(app)
    const second = await refresh(app, first.refreshToken)
    t.equal(second.statusCode, 200)
    const refreshToken = second.cookies.find((cookie) => cookie.name === 'refresh_token')?.value as string
    const accessToken = second.json().accessToken as string
    await app.inject({ method: 'POST', url: '/auth/logout', cookies: { refresh_token: refreshToken } })
    const other = await login(app)

    const dump = await pool.query(`SELECT row_to_json(s)::text AS row FROM "${schema}".token_auth_sessions s
      UNION ALL SELECT row_to_json(r)::text FROM "${schema}".token_auth_revocations r`)
    const text = dump.rows.map((row) => row.row).join('\n')
    t.equal(dump.rows.length, 2, 'one live session, one revocation')
    const secrets = [first.refreshToken, first.accessToken, refreshToken, accessToken, other.refreshToken, other.accessToken]
    for (const { token, jti, signature } of secrets.map(tokenSecrets)) {
      t.notOk(text.includes(token), 'no token')
      t.notOk(text.includes(jti), 'no jti')
      t.notOk(text.includes(signature), 'no signature or tag')
    }
    const [live] = await store.listUserSessions('user-1', Date.now())
    t.equal(live?.tokenHash, storedHashOf(other.refreshToken), 'the token hash is the last 128 bits of its tag\'s HMAC')
  })

  t.test('rotate: 100 concurrent rotations of one hash through 20 connections: exactly one winner, its successor stored', async (t) => {
    const store = await freshStore(t)
    for (const grace of [0, 5000]) {
      const session = record()
      await store.createSession(session)
      const now = T0 + MINUTE
      const results = await Promise.all(Array.from({ length: 100 }, (_, i) =>
        store.rotate(rotation(session, { nextHash: `next-${i}`, now, grace, graceLimit: 3 }))))
      const winners = results.flatMap((result, i) => result.outcome === 'rotated' ? [i] : [])
      t.equal(winners.length, 1, `grace ${grace}: one rotated`)
      const [stored] = (await store.listUserSessions(session.userId, now)).filter((alive) => alive.id === session.id)
      t.equal(stored?.tokenHash, `next-${winners[0] as number}`, 'the winner\'s successor is the current hash')
      if (grace === 0) {
        t.same(count(results.map((result) => result.outcome)), { rotated: 1, superseded: 99 }, 'the losers hold the predecessor in the rotation\'s ms: they mint nothing')
        t.equal(stored?.graceUses, 0)
      } else {
        t.same(count(results.map((result) => result.outcome)), { rotated: 1, grace: 3, superseded: 96 })
        t.equal(stored?.graceUses, 3)
      }
    }
    t.same(await store.revokedSince(0), [], 'a predecessor whose successor is unused is no theft')
    t.ok(pool.totalCount >= 10, `the pool opened ${pool.totalCount} connections`)
  })

  t.test('rotate: concurrent generations: each hash wins once, the chain has no fork', async (t) => {
    const store = await freshStore(t)
    const session = record()
    await store.createSession(session)
    let current = session.tokenHash
    for (let generation = 1; generation <= 5; generation++) {
      const now = T0 + generation * 1000
      const results = await Promise.all(Array.from({ length: 30 }, (_, i) =>
        store.rotate(rotation(session, { presentedHash: current, nextHash: `g${generation}-${i}`, now, grace: 100_000, graceLimit: 1000 }))))
      const rotated = results.filter((result) => result.outcome === 'rotated')
      t.equal(rotated.length, 1, `generation ${generation}`)
      t.same(count(results.map((result) => result.outcome)), { rotated: 1, grace: 29 })
      current = (rotated[0] as { session: SessionRecord }).session.tokenHash
    }
    const [stored] = await store.listUserSessions(session.userId, T0)
    t.equal(stored?.tokenHash, current)
  })

  t.test('rotate: a reuse racing a rotation and a revocation revokes once', async (t) => {
    const store = await freshStore(t)
    const session = record()
    await store.createSession(session)
    const now = T0 + MINUTE
    const [rotated, reused, revoked] = await Promise.all([
      store.rotate(rotation(session, { now, grace: 0 })),
      store.rotate(rotation(session, { presentedHash: 'stolen-older', now, grace: 0 })),
      store.revokeSession(session.id, undefined, { now, keepFor: KEEP })
    ])
    t.equal((await store.revokedSince(0)).length, 1, 'one revocation whatever the order')
    t.equal(Number(reused.outcome === 'reused') + Number(revoked !== null), 1, 'ended by exactly one of them')
    t.ok(['rotated', 'missing'].includes(rotated.outcome))
    t.ok(['reused', 'missing'].includes(reused.outcome))
    t.same(await store.listUserSessions(session.userId, now), [])
  })

  t.test('rotate: a recovery rewrites the row as a rotation does but keeps previous_token_hash; an older generation is still reuse', async (t) => {
    const store = await freshStore(t)
    const session = record()
    await store.createSession(session)
    t.equal((await store.rotate(rotation(session, { nextHash: 'lost', grace: 0 }))).outcome, 'rotated', 'a response the client never got')
    const retry = rotation(session, { nextHash: 'recovered', now: T0 + 2000, grace: 0, claims: { username: 'alice', role: 'admin' } })
    const expected: SessionRecord = {
      ...session,
      claims: { username: 'alice', role: 'admin' },
      tokenHash: 'recovered',
      previousTokenHash: session.tokenHash,
      rotatedAt: T0 + 2000,
      graceUses: 0,
      lastUsedAt: T0 + 2000,
      expiresAt: T0 + 2000 + retry.idleTtl,
      userAgent: 'agent/2',
      ip: '198.51.100.2'
    }
    t.same(await store.rotate(retry), { outcome: 'recovered', session: expected })
    t.same(await store.listUserSessions(session.userId, T0), [expected], 'stored so')
    const used = await store.rotate(rotation(expected, { nextHash: 'third', now: T0 + 3000, grace: 0 }))
    t.equal(used.outcome, 'rotated', 'the recovered successor is used')
    const older = await store.rotate(rotation(session, { nextHash: 'again', now: T0 + 4000, grace: 0 }))
    t.equal(older.outcome, 'reused', 'its predecessor is an older generation now: theft')
    t.same(await store.listUserSessions(session.userId, T0), [])
    t.same((await store.revokedSince(0)).map((entry) => entry.sessionId), [session.id])
  })

  t.test('deadline: a write that waited behind a lock past its deadline changes nothing and rejects; in time it applies', async (t) => {
    const schema = await freshSchema(t)
    await migrate(pool, { schema })
    const sessions = `"${schema}".token_auth_sessions`
    const stored = async (id: string): Promise<string | undefined> =>
      (await pool.query(`SELECT row_to_json(s)::text AS row FROM ${sessions} s WHERE id = $1`, [id])).rows[0]?.row
    /** Runs `write` while another connection holds a lock it needs, released `hold` ms after the write started. */
    async function behind (lock: [string, unknown[]], hold: number, write: () => Promise<unknown>): Promise<PromiseSettledResult<unknown>> {
      const locker = await pool.connect()
      try {
        await locker.query('BEGIN')
        await locker.query(...lock)
        const started = Date.now()
        const result = Promise.allSettled([write()])
        await blockedOn(schema)
        await sleep(Math.max(started + hold - Date.now(), 0))
        await locker.query('COMMIT')
        return (await result)[0]
      } finally {
        locker.release()
      }
    }
    const late = { status: 'rejected', reason: { name: 'StoreDeadlineError', message: /after its deadline: nothing was changed/ } }

    for (const preparedStatements of [true, false]) {
      const single = newPool({ max: 1 }) // one connection, on which the first calls below prepare the statements
      t.teardown(() => single.end())
      const store = new PostgresStore({ pool: single, schema, preparedStatements })
      const session = record()
      await store.createSession(session, { deadline: Date.now() + MINUTE })
      const first = await store.rotate(rotation(session))
      t.equal(first.outcome, 'rotated')
      const current = (first as { session: SessionRecord }).session
      const before = await stored(session.id)
      const table: [string, unknown[]] = [`LOCK TABLE ${sessions} IN ACCESS EXCLUSIVE MODE`, []]
      const row: [string, unknown[]] = [`SELECT id FROM ${sessions} WHERE id = $1 FOR UPDATE`, [session.id]]
      const next = rotation(current, { nextHash: 'next', now: T0 + 2000 })

      for (const [what, lock] of [['a table lock', table], ['the row lock', row]] as const) {
        const result = await behind(lock, 800, async () => await store.rotate({ ...next, deadline: Date.now() + 300 }))
        t.match(result, late, `rotate behind ${what}, prepared: ${preparedStatements}`)
        t.ok(result.status === 'rejected' && result.reason instanceof StoreDeadlineError)
        t.equal(await stored(session.id), before, 'the row is unchanged')
      }
      const fresh = record()
      t.match(await behind(table, 800, async () => await store.createSession(fresh, { deadline: Date.now() + 300 })), late, 'createSession behind a table lock')
      t.equal(await stored(fresh.id), undefined, 'nothing stored')

      // Under a session limit, behind a login of the same user (its advisory lock, create.ts).
      const limited = record()
      const sessionLimit = { max: 1, policy: 'end-least-recent', keepRevocationFor: KEEP } as const
      const login: [string, unknown[]] = ['SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [`"${schema}"."token_auth_sessions"`, limited.userId]]
      const limitedLate = await behind(login, 800, async () => await store.createSession(limited, { deadline: Date.now() + 300, sessionLimit }))
      t.match(limitedLate, late, 'a limited createSession waits for the login of the same user, then is late')
      t.equal(await stored(limited.id), undefined, 'nothing stored')
      t.same(await store.listUserSessions(limited.userId, T0), await store.listUserSessions(limited.userId, T0 - 1), 'nothing ended')

      t.match(await behind(table, 800, async () => await store.rotate({ ...next, deadline: undefined })),
        { status: 'fulfilled', value: { outcome: 'rotated', session: { tokenHash: 'next' } } }, 'no deadline, no check: rotated after the wait')
      t.match(await behind(table, 0, async () => await store.createSession(fresh, { deadline: Date.now() + MINUTE })), { status: 'fulfilled' },
        'in time: stored after the wait')
      t.same(await store.listUserSessions(fresh.userId, T0).then((list) => list.find((alive) => alive.id === fresh.id)), fresh)
      t.same(await store.revokedSince(0), [])
    }
  })

  t.test('a rotation whose connection is terminated mid-statement rejects and changes nothing; the retry rotates', async (t) => {
    const schema = (await freshStore(t)).channel.split('.')[0] as string
    const errors: Error[] = []
    const guarded = newPool({ max: 2 })
    guarded.on('error', (error) => errors.push(error))
    t.teardown(() => guarded.end())
    const store = new PostgresStore({ pool: guarded, schema })
    const session = record()
    await store.createSession(session)
    const locker = await pool.connect()
    t.teardown(() => locker.release())
    await locker.query('BEGIN')
    await locker.query(`SELECT id FROM "${schema}".token_auth_sessions WHERE id = $1 FOR UPDATE`, [session.id])
    const pending = store.rotate(rotation(session))
    await pool.query('SELECT pg_terminate_backend($1)', [await blockedOn(schema)])
    await t.rejects(pending, { code: '57P01' }, 'rejects: the plugin answers 503')
    await locker.query('ROLLBACK')
    t.same(await store.listUserSessions(session.userId, T0), [session], 'nothing changed')
    t.equal((await store.rotate(rotation(session))).outcome, 'rotated', 'the retry, on a new connection')
    t.same(errors, [], 'nothing reached the pool\'s error listener')
  })

  t.test('a Pool without an \'error\' listener is warned about, once per pool; one with a listener, or a pool-like object, is not', async (t) => {
    const warnings: unknown[][] = []
    const emitWarning = process.emitWarning
    process.emitWarning = ((...args: unknown[]) => { warnings.push(args) }) as typeof process.emitWarning
    t.teardown(() => { process.emitWarning = emitWarning })
    const bare = new pg.Pool({ connectionString: DATABASE_URL, max: 1 })
    t.teardown(() => bare.end())
    t.equal(bare.listenerCount('error'), 0)
    t.ok(new PostgresStore({ pool: bare }))
    t.ok(new PostgresStore({ pool: bare, tablePrefix: 'other_' }))
    t.match(warnings, [[/has no 'error' listener.*ends the process.*pool\.on\('error'/, { code: 'FST_TOKEN_AUTH_PG_POOL_NO_ERROR_LISTENER' }]])
    t.equal(warnings.length, 1, 'once for two stores on one pool')
    t.equal(bare.listenerCount('error'), 0, 'the store added no listener: the pool\'s errors are the application\'s')

    const guarded = newPool({ max: 1 })
    t.teardown(() => guarded.end())
    t.ok(new PostgresStore({ pool: guarded }))
    t.ok(new PostgresStore({ pool: { query: pool.query.bind(pool), connect: pool.connect.bind(pool) } as unknown as pg.Pool }))
    t.equal(warnings.length, 1, 'no further warning')
  })

  t.test('LISTEN/NOTIFY: a revocation made through another store on another pool arrives within a second', async (t) => {
    const store = await freshStore(t)
    const otherPool = newPool({ max: 2 })
    t.teardown(() => otherPool.end())
    const writer = new PostgresStore({ pool: otherPool, schema: store.channel.split('.')[0] })
    const heard: RevocationRecord[] = []
    const unsubscribe = await store.subscribeRevocations((record) => heard.push(record))

    // A store of another schema, same prefix, shares nothing, not even the channel.
    const stranger = await freshStore(t)
    const strangerHeard: RevocationRecord[] = []
    await stranger.subscribeRevocations((record) => strangerHeard.push(record))

    const [one, two, three, four] = [record(), record({ userId: 'user-b' }), record({ userId: 'user-b' }), record()]
    for (const session of [one, two, three, four]) await writer.createSession(session)
    await writer.revokeSession(one.id, undefined, { now: T0 + 1, keepFor: KEEP })
    await waitFor(() => heard.length === 1, { timeout: 1000 })
    t.same(heard, [{ sessionId: one.id, revokedAt: T0 + 1 }], 'revokeSession')

    t.same(await writer.revokeUserSessions('user-b', { now: T0 + 2, keepFor: KEEP }), [two.id, three.id], 'oldest first')
    await waitFor(() => heard.length === 3, { timeout: 1000 })
    t.same(heard.slice(1).sort((a, b) => a.sessionId < b.sessionId ? -1 : 1),
      [{ sessionId: two.id, revokedAt: T0 + 2 }, { sessionId: three.id, revokedAt: T0 + 2 }].sort((a, b) => a.sessionId < b.sessionId ? -1 : 1), 'revokeUserSessions')

    t.equal((await writer.rotate(rotation(four, { presentedHash: 'not-the-current-one', now: T0 + 3 }))).outcome, 'reused')
    await waitFor(() => heard.length === 4, { timeout: 1000 })
    t.same(heard[3], { sessionId: four.id, revokedAt: T0 + 3 }, 'theft detected by rotate')

    // Foreign payloads on the channel are ignored.
    await otherPool.query('SELECT pg_notify($1, $2), pg_notify($1, $3), pg_notify($1, $4)', [store.channel, 'not json', '{"sessionId":1}', JSON.stringify({ sessionId: 'marker', revokedAt: 5 })])
    await waitFor(() => heard.length === 5, { timeout: 1000 })
    t.same(heard[4], { sessionId: 'marker', revokedAt: 5 }, 'only the well-formed payload was delivered')
    t.same(strangerHeard, [], 'another schema heard nothing')

    await unsubscribe()
    await unsubscribe()
    const five = record()
    await writer.createSession(five)
    await writer.revokeSession(five.id, undefined, { now: T0 + 4, keepFor: KEEP })
    await otherPool.query('SELECT pg_notify($1, $2)', [store.channel, JSON.stringify({ sessionId: 'after', revokedAt: 6 })])
    t.equal(await listeners(store.channel), 0)
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.equal(heard.length, 5, 'nothing after unsubscribe')
  })

  t.test('close() ends the store\'s LISTEN connections but never the pool', async (t) => {
    const store = await freshStore(t)
    await store.subscribeRevocations(() => {})
    await store.subscribeRevocations(() => {})
    t.equal(await listeners(store.channel), 2)
    await store.close()
    t.equal(await listeners(store.channel), 0)
    t.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1, 'the pool still works')
    await store.close()
  })

  t.test('LISTEN: a terminated connection is reopened; its error reaches neither the pool nor the process', async (t) => {
    const schema = (await freshStore(t)).channel.split('.')[0] as string
    const emitWarning = process.emitWarning
    process.emitWarning = () => {} // the warning about `bare`
    t.teardown(() => { process.emitWarning = emitWarning })
    // No 'error' listener: an error the store let through would end this process (and fail the file).
    const bare = new pg.Pool({ connectionString: DATABASE_URL, max: 2 })
    t.teardown(() => bare.end())
    const store = new PostgresStore({ pool: bare, schema })
    const heard: RevocationRecord[] = []
    await store.subscribeRevocations((record) => heard.push(record))
    const killed = await pool.query("SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query LIKE 'LISTEN%' AND query LIKE $1",
      [`%"${store.channel}"`])
    t.same(killed.rows, [{ ok: true }])
    await waitUntilHeard(t, store, heard)
    await store.close()
    t.pass('the process lived through it')
  })

  t.test('LISTEN: while the server is unreachable, reopening backs off; afterwards it listens again', async (t) => {
    const schema = (await freshStore(t)).channel.split('.')[0] as string
    const proxy = await TcpProxy.start(Number(new URL(DATABASE_URL).port || 5432), new URL(DATABASE_URL).hostname)
    t.teardown(() => proxy.close())
    const url = new URL(DATABASE_URL)
    url.host = proxy.url
    const proxiedPool = newPool({ connectionString: url.href, max: 2 }) // its idle connections die with the proxy
    t.teardown(() => proxiedPool.end())
    const attempts: number[] = []
    const counting = {
      query: proxiedPool.query.bind(proxiedPool),
      connect: () => { attempts.push(Date.now()); return proxiedPool.connect() }
    } as unknown as pg.Pool
    const store = new PostgresStore({ pool: counting, schema })
    const writer = new PostgresStore({ pool, schema })
    const heard: RevocationRecord[] = []
    const unsubscribe = await store.subscribeRevocations((record) => heard.push(record))

    proxy.refuse()
    await waitFor(() => attempts.length >= 5, { timeout: 5000 }) // the first, then reopenings 100, 200, 400 and 800 ms apart
    const gaps = attempts.slice(2).map((at, i) => at - (attempts[i + 1] as number))
    t.ok(gaps.every((gap, i) => gap >= 200 * 2 ** i * 0.9), `each pause doubles: ${gaps.join(', ')} ms`)
    const missed = record()
    await writer.createSession(missed)
    await writer.revokeSession(missed.id, undefined, { now: T0 + 1, keepFor: KEEP })
    await t.rejects(store.revokedSince(T0), 'the store is down for this instance')
    proxy.forward()
    await waitUntilHeard(t, writer, heard)
    t.notOk(heard.some((entry) => entry.sessionId === missed.id), 'what was announced during the outage was not heard')
    t.same((await store.revokedSince(T0)).map((entry) => entry.sessionId).slice(0, 1), [missed.id], 'but the feed has it')
    await unsubscribe()
  })

  t.test('LISTEN failures: the first connection rejects; a failing UNLISTEN still releases', async (t) => {
    const schema = (await freshStore(t)).channel.split('.')[0] as string
    const deadPool = newPool({ connectionString: `postgres://postgres@127.0.0.1:${await freePort()}/test`, max: 1 })
    t.teardown(() => deadPool.end())
    await t.rejects(new PostgresStore({ pool: deadPool, schema }).subscribeRevocations(() => {}), { code: 'ECONNREFUSED' })

    const released: Array<Error | boolean | undefined> = []
    /** The real pool, with one statement made to fail on the connections it lends. */
    const faulty = (statement: string, dropConnection: boolean) => ({
      query: pool.query.bind(pool),
      connect: async () => {
        const client = await pool.connect()
        const { query, release } = client
        client.query = ((text: string, ...rest: unknown[]) => {
          if (text !== statement) return (query as (...args: unknown[]) => unknown).call(client, text, ...rest)
          const error = new Error(`injected failure of ${statement}`)
          if (dropConnection) client.emit('error', error) // pg reports a lost connection both ways
          return Promise.reject(error)
        }) as typeof client.query
        client.release = (error?: Error | boolean) => { released.push(error); client.query = query; release.call(client, error) }
        return client
      }
    }) as unknown as pg.Pool

    const listen = `LISTEN "${schema}.token_auth_revocations"`
    for (const dropConnection of [false, true]) {
      released.length = 0
      const store = new PostgresStore({ pool: faulty(listen, dropConnection), schema })
      await t.rejects(store.subscribeRevocations(() => {}), { message: `injected failure of ${listen}` })
      t.equal(released.length, 1, 'the connection was released once')
      t.match(released[0], { message: /injected failure/ }, 'as broken, so the pool discards it')
      await new Promise((resolve) => setTimeout(resolve, 300))
      t.equal(released.length, 1, 'and no reconnection was attempted')
      t.equal(await listeners(store.channel), 0)
    }

    released.length = 0
    const store = new PostgresStore({ pool: faulty(`UNLISTEN "${schema}.token_auth_revocations"`, false), schema })
    const unsubscribe = await store.subscribeRevocations(() => {})
    t.equal(await listeners(store.channel), 1)
    await unsubscribe()
    t.match(released, [{ message: /injected failure of UNLISTEN/ }], 'released as broken')
    await waitFor(async () => (await listeners(store.channel)) === 0, { timeout: 1000 })
  })

  t.test('LISTEN: stopping while a reopen is in flight: the attempt gives up, whether it then succeeds or fails', async (t) => {
    const schema = (await freshStore(t)).channel.split('.')[0] as string
    for (const outcome of ['succeeds', 'fails'] as const) {
      let connects = 0
      const gates: Array<{ open: () => void, fail: () => void }> = []
      /** The real pool, whose connect() after the first waits for the test to open or fail it. */
      const gated = {
        query: pool.query.bind(pool),
        connect: async () => {
          if (++connects > 1) {
            await new Promise<void>((resolve, reject) => gates.push({ open: resolve, fail: () => reject(new Error('gate failed')) }))
          }
          return await pool.connect()
        }
      } as unknown as pg.Pool
      const store = new PostgresStore({ pool: gated, schema })
      const unsubscribe = await store.subscribeRevocations(() => {})
      await pool.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1', [`LISTEN "${store.channel}"`])
      await waitFor(() => gates.length === 1, { timeout: 2000 })
      await unsubscribe()
      if (outcome === 'succeeds') gates[0]?.open()
      else gates[0]?.fail()
      await waitFor(() => pool.totalCount === pool.idleCount, { timeout: 1000 })
      t.pass(`the reopen ${outcome}; no connection is held`)
      await new Promise((resolve) => setTimeout(resolve, 400))
      t.equal(connects, 2, 'and no further attempt is made')
      t.equal(await listeners(store.channel), 0)
    }

    const store = new PostgresStore({ pool, schema })
    const pending = store.subscribeRevocations(() => {})
    await store.close()
    await pending
    t.equal(await listeners(store.channel), 0, 'close() during subscribe: the connection is returned unused')
    t.equal(pool.totalCount, pool.idleCount)
  })

  t.test('sweep: bounded batches, at most sweepMaxBatches per call; locked rows are skipped, not waited for', async (t) => {
    const store = await freshStore(t, { sweepBatchSize: 10, sweepMaxBatches: 2 })
    const expired = Array.from({ length: 35 }, () => record({ expiresAt: T0 + MINUTE }))
    const live = Array.from({ length: 5 }, () => record({ expiresAt: T0 + 10 * MINUTE }))
    const revoked = Array.from({ length: 25 }, () => record())
    for (const session of [...expired, ...live, ...revoked]) await store.createSession(session)
    for (const session of revoked) await store.revokeSession(session.id, undefined, { now: T0, keepFor: MINUTE })

    const schema = store.channel.split('.')[0] as string
    const count = async (table: string) => Number((await pool.query(`SELECT count(*) AS n FROM "${schema}".token_auth_${table}`)).rows[0].n)
    t.equal(await store.sweep(T0 + MINUTE - 1), 0, 'nothing has expired yet')
    t.equal(await count('revocations'), 25)
    t.equal(await store.sweep(T0 + MINUTE), 20, 'two batches of 10, then the call stops')
    t.equal(await count('sessions'), 20)
    t.equal(await count('revocations'), 5, 'the feed too: two batches of 10')
    t.equal(await store.sweep(T0 + MINUTE), 15, 'a full batch, then a short one ends the call')
    t.equal(await count('revocations'), 0)

    const locker = await pool.connect()
    t.teardown(() => locker.release())
    const held = record({ expiresAt: T0 })
    await store.createSession(held)
    await store.createSession(record({ expiresAt: T0 }))
    await locker.query('BEGIN')
    await locker.query(`SELECT id FROM "${schema}".token_auth_sessions WHERE id = $1 FOR UPDATE`, [held.id])
    t.equal(await store.sweep(T0 + MINUTE), 1, 'the row in use is left for the next sweep')
    await locker.query('ROLLBACK')
    t.equal(await store.sweep(T0 + MINUTE), 1)
    t.equal(await count('sessions'), 5, 'the live sessions stay')
    t.equal(await store.sweep(T0 + MINUTE), 0)
  })

  t.test('useOnce: a row per proof id; the sweep deletes expired ones in bounded batches, skips locked ones, keeps live ones', async (t) => {
    const store = await freshStore(t, { sweepBatchSize: 10, sweepMaxBatches: 2 })
    const schema = store.channel.split('.')[0] as string
    const table = `"${schema}".token_auth_proof_ids`
    const rows = async (): Promise<number> => Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n)
    const key = (): string => randomBytes(16).toString('base64url')
    const expired = Array.from({ length: 25 }, key)
    const live = Array.from({ length: 5 }, key)
    for (const id of expired) t.equal(await store.useOnce(id, T0 + MINUTE, T0), true)
    for (const id of live) t.equal(await store.useOnce(id, T0 + 10 * MINUTE, T0), true)
    t.same((await pool.query(`SELECT expires_at FROM ${table} WHERE key = $1`, [live[0]])).rows, [{ expires_at: String(T0 + 10 * MINUTE) }])

    t.equal(await store.sweep(T0 + MINUTE - 1), 0, 'nothing has expired yet')
    t.equal(await rows(), 30)
    t.equal(await store.sweep(T0 + MINUTE), 0, 'proof ids are not sessions: not counted')
    t.equal(await rows(), 10, 'two batches of 10, then the call stops')
    const locker = await pool.connect()
    t.teardown(() => locker.release())
    await locker.query('BEGIN')
    await locker.query(`SELECT key FROM ${table} WHERE key = $1 FOR UPDATE`, [expired[24]])
    await store.sweep(T0 + MINUTE)
    t.equal(await rows(), 6, 'a short batch ends the call; the row in use is left for the next sweep')
    await locker.query('ROLLBACK')
    await store.sweep(T0 + MINUTE)
    t.same((await pool.query(`SELECT key FROM ${table} ORDER BY key`)).rows.map((row) => row.key), [...live].sort(), 'the live ones stay')
    for (const id of live) t.equal(await store.useOnce(id, T0 + 11 * MINUTE, T0 + MINUTE), false, 'and are still refused')

    await migrate(pool, { schema })
    await migrate(pool, { schema })
    t.equal(await rows(), 5, 'migrating again (twice) keeps the table and its rows')
    t.equal(await store.useOnce(live[0] as string, T0 + 11 * MINUTE, T0 + MINUTE), false)
  })

  t.test('prepared statements: named per text by default; plain statements when turned off', async (t) => {
    const schema = await freshSchema(t)
    await migrate(pool, { schema })
    for (const preparedStatements of [true, false]) {
      const single = newPool({ max: 1 }) // one connection, so its prepared statements can be inspected
      t.teardown(() => single.end())
      const store = new PostgresStore({ pool: single, schema, ...(preparedStatements ? {} : { preparedStatements }) })
      const session = record()
      await store.createSession(session)
      t.equal((await store.rotate(rotation(session))).outcome, 'rotated')
      t.equal((await store.rotate(rotation(session))).outcome, 'grace', 'twice on one connection')
      t.equal(await store.sweep(T0), 0)
      const names = await single.query("SELECT name FROM pg_prepared_statements WHERE name LIKE 'fastify\\_token\\_auth\\_%'")
      t.equal(names.rows.length, preparedStatements ? 5 : 0, `preparedStatements: ${preparedStatements}`)
    }
  })

  t.test('a table prefix of its own, or none, in one schema', async (t) => {
    const schema = await freshSchema(t)
    await migrate(pool, { schema, tablePrefix: '' })
    await migrate(pool, { schema, tablePrefix: 'app_' })
    const bare = new PostgresStore({ pool, schema, tablePrefix: '' })
    const app = new PostgresStore({ pool, schema, tablePrefix: 'app_' })
    const session = record()
    await bare.createSession(session)
    t.same(await bare.listUserSessions(session.userId, T0), [session])
    t.same(await app.listUserSessions(session.userId, T0), [], 'separate tables')
    t.equal(bare.channel, `${schema}.revocations`)
    t.equal(app.channel, `${schema}.app_revocations`)
  })

  /** How many connections are LISTENing on a channel right now. */
  async function listeners (channel: string): Promise<number> {
    const result = await pool.query('SELECT count(*) AS n FROM pg_stat_activity WHERE query = $1 AND state = $2', [`LISTEN "${channel}"`, 'idle'])
    return Number(result.rows[0].n)
  }

  /** The functions of a schema, as name/number of arguments. */
  async function functions (schema: string): Promise<string[]> {
    const { rows } = await pool.query('SELECT proname, pronargs FROM pg_proc WHERE pronamespace = $1::regnamespace ORDER BY proname, pronargs', [schema])
    return rows.map((row) => `${row.proname}/${row.pronargs}`)
  }

  /** The sessions table's storage options. */
  async function fillfactor (schema: string): Promise<string[] | null> {
    const { rows } = await pool.query(`SELECT reloptions FROM pg_class WHERE oid = '"${schema}".token_auth_sessions'::regclass`)
    return rows[0].reloptions
  }

  /** Updates of a table so far, and how many of them were HOT (the statistics of this backend's transactions included). */
  async function hotUpdates (table: string): Promise<{ updates: number, hot: number }> {
    const { rows } = await pool.query(`SELECT pg_stat_get_xact_tuples_updated(oid) + pg_stat_get_tuples_updated(oid) AS updates,
      pg_stat_get_xact_tuples_hot_updated(oid) + pg_stat_get_tuples_hot_updated(oid) AS hot FROM pg_class WHERE oid = $1::regclass`, [table])
    return { updates: Number(rows[0].updates), hot: Number(rows[0].hot) }
  }

  /** The pid of a statement on `schema`'s tables, once it waits for a lock. */
  async function blockedOn (schema: string): Promise<number> {
    return await waitFor(async () => {
      const { rows } = await pool.query("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", [`%"${schema}".%`])
      return rows[0]?.pid as number | undefined
    }, { timeout: 5000, message: `no statement on ${schema} waits for a lock` })
  }

  /** Revokes a fresh session every 50 ms until the listener hears one: proof it listens again. */
  async function waitUntilHeard (t: Test, store: PostgresStore, heard: RevocationRecord[]): Promise<void> {
    const before = heard.length
    const ids: string[] = []
    await waitFor(async () => {
      const session = record()
      ids.push(session.id)
      await store.createSession(session)
      await store.revokeSession(session.id, undefined, { now: T0 + 100, keepFor: KEEP })
      await new Promise((resolve) => setTimeout(resolve, 50))
      return heard.length > before
    }, { timeout: 10_000 })
    t.ok(heard.slice(before).every((entry) => ids.includes(entry.sessionId)), 'listening again')
  }
}

let sequence = 0

/** The kit's record, at T0 + n with the kit's lifetimes, numbered in its claims. */
function record (overrides: Partial<SessionRecord> = {}): SessionRecord {
  sequence++
  return sessionRecord({ claims: { username: 'alice', n: sequence }, createdAt: T0 + sequence, expiresAt: T0 + 10 * MINUTE, absoluteExpiresAt: T0 + 60 * MINUTE, ...overrides })
}

/** The migration of schema version 1 (fastify-token-auth before the sweep_at column), `{schema}` to fill in. */
const VERSION_1_SQL = `CREATE TABLE "{schema}"."token_auth_sessions" (
  id text PRIMARY KEY, user_id text NOT NULL, claims jsonb NOT NULL, created_at bigint NOT NULL,
  last_used_at bigint NOT NULL, expires_at bigint NOT NULL, absolute_expires_at bigint NOT NULL,
  token_hash text NOT NULL, previous_token_hash text, rotated_at bigint, grace_uses integer NOT NULL DEFAULT 0,
  user_agent text, ip text
);
CREATE INDEX "token_auth_sessions_user_created_idx" ON "{schema}"."token_auth_sessions" (user_id, created_at);
CREATE INDEX "token_auth_sessions_expires_idx" ON "{schema}"."token_auth_sessions" (expires_at);
CREATE TABLE "{schema}"."token_auth_revocations" (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, session_id text NOT NULL, revoked_at bigint NOT NULL, keep_until bigint NOT NULL
);
CREATE INDEX "token_auth_revocations_revoked_idx" ON "{schema}"."token_auth_revocations" (revoked_at);
CREATE INDEX "token_auth_revocations_keep_idx" ON "{schema}"."token_auth_revocations" (keep_until);`
