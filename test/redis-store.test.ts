import { createHash, randomBytes, randomUUID } from 'node:crypto'
import net from 'node:net'
import { Redis } from 'ioredis'
import { createClient, RESP_TYPES } from 'redis'
import t, { type Test } from 'tap'
import { type Arg, type IoredisLike, type NodeRedisClientLike, type NodeRedisCommandOptions, RedisStore, type RedisStoreOptions } from '../lib/stores/redis/index.js'
import { BUCKET_SIZE } from '../lib/stores/redis/bucket.js'
import { encodeRecord } from '../lib/stores/redis/record.js'
import { type RevocationRecord, StoreDeadlineError } from '../lib/stores/types.js'
import { defineStoreConformance, rotationRequest as rotation, sessionRecord as session } from '../lib/testing.js'
import { build, login, refresh, refreshCookie, storedHashOf, tokenSecrets, waitFor } from './helpers.js'
import { freePort } from './private-servers/process.js'
import { PrivateRedis, privateRedisUnavailable } from './private-servers/redis.js'
import { TcpProxy } from './tcp-proxy.js'
import { REDIS_URL, redisAvailable } from './services.js'
// The conformance kit's lifetimes, which its `sessionRecord` and `rotationRequest` use.
import { GRACE, IDLE, KEEP, MINUTE } from '../lib/testing/fixtures.js'

const skip = await redisAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  await suite()
}

async function suite (): Promise<void> {
  const client = createClient({ url: REDIS_URL })
  await client.connect()
  const io = new Redis(REDIS_URL)
  /** The same client, answering strings as Buffers: packed records are bytes. */
  const bytes = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
  t.teardown(async () => {
    await client.close()
    await io.quit()
  })

  /** A key prefix no other test (or run) uses; its keys are deleted when `t` ends. */
  function freshPrefix (t?: Test, tail = ''): string {
    const prefix = `fta-test:${randomBytes(6).toString('hex')}:${tail}`
    t?.teardown(async () => { await deleteKeys(prefix) })
    return prefix
  }

  async function keysOf (prefix: string): Promise<string[]> {
    const keys: string[] = []
    for await (const batch of client.scanIterator({ MATCH: `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, COUNT: 1000 })) keys.push(...batch)
    return keys.sort()
  }

  async function deleteKeys (prefix: string): Promise<void> {
    const keys = await keysOf(prefix)
    if (keys.length > 0) await client.del(keys)
  }

  /** A store on the file's node-redis client (or the one given), closed when `t` ends. */
  function freshStore (t: Test, options: Partial<RedisStoreOptions> = {}): RedisStore {
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client, prefix, ...options })
    storePrefixes.set(store, prefix)
    t.teardown(() => store.close())
    return store
  }

  /** Asserts `key` expires `ttl` ms after some instant of `window` (Redis shares this machine's clock). */
  async function expiresWithin (t: Test, key: string, window: [number, number], ttl: number, message = `${key} expires ${ttl} ms after its write`): Promise<void> {
    const at = Number(await client.pExpireTime(key))
    t.ok(at >= window[0] + ttl && at <= window[1] + ttl, `${message} (${at - window[0] - ttl} ms into the window)`)
  }

  /** Every key under `prefix` with its value (a string, or a sorted set with scores) and its expiry time. */
  async function snapshot (prefix: string): Promise<Record<string, unknown>> {
    const state: Record<string, unknown> = {}
    for (const key of await keysOf(prefix)) {
      const value = await client.type(key) === 'string' ? await client.get(key) : await client.zRangeWithScores(key, 0, -1)
      state[key] = [value, await client.pExpireTime(key)]
    }
    return state
  }

  // ---- The conformance kit, once per client kind, each test on a prefix of its own. ----

  const prefixes = new WeakMap<object, string>()
  const kits: Array<[string, () => RedisStore]> = [
    ['node-redis', () => new RedisStore({ client, prefix: kitPrefix() })],
    ['ioredis', () => new RedisStore({ client: io, prefix: kitPrefix() })],
    ['node-redis, recordFormat json', () => new RedisStore({ client, prefix: kitPrefix(), recordFormat: 'json' })]
  ]
  let lastKitPrefix = ''
  function kitPrefix (): string {
    lastKitPrefix = freshPrefix()
    return lastKitPrefix
  }
  for (const [name, create] of kits) {
    t.test(`conformance kit through ${name}`, async (t) => {
      defineStoreConformance({
        test: (name, fn) => t.test(name, fn),
        createStore: () => {
          const store = create()
          prefixes.set(store, lastKitPrefix)
          return store
        },
        destroyStore: async (store) => {
          await store.close()
          await deleteKeys(prefixes.get(store) as string)
        }
      })
    })
  }

  t.test('conformance kit through node-redis speaking RESP3', async (t) => {
    const resp3 = createClient({ url: REDIS_URL, RESP: 3 })
    await resp3.connect()
    t.teardown(() => resp3.close())
    defineStoreConformance({
      test: (name, fn) => t.test(name, fn),
      createStore: () => {
        const store = new RedisStore({ client: resp3, prefix: kitPrefix() })
        prefixes.set(store, lastKitPrefix)
        return store
      },
      destroyStore: async (store) => {
        await store.close()
        await deleteKeys(prefixes.get(store) as string)
      }
    })
  })

  // ---- Options ----

  t.test('options are checked at construction', async (t) => {
    t.throws(() => new RedisStore({}), { name: 'TypeError', message: /exactly one of the options "client" and "url"/ })
    t.throws(() => new RedisStore({ client, url: REDIS_URL }), { name: 'TypeError', message: /exactly one/ })
    t.throws(() => new RedisStore({ client, prefix: 'a{b' }), { name: 'TypeError', message: /"prefix" must be a string without "\{" or "\}", got "a\{b"/ })
    t.throws(() => new RedisStore({ client, prefix: 'a}' }), { name: 'TypeError', message: /"prefix"/ })
    t.throws(() => new RedisStore({ client, prefix: 42 as unknown as string }), { name: 'TypeError', message: /got 42/ })
    t.throws(() => new RedisStore({ client, sweepBatchSize: 0 }), { name: 'TypeError', message: /"sweepBatchSize" must be a positive integer, got 0/ })
    t.throws(() => new RedisStore({ client, sweepBatchSize: 1.5 }), { name: 'TypeError', message: /got 1.5/ })
    t.throws(() => new RedisStore({ client: {} as NodeRedisClientLike }), { name: 'TypeError', message: /must be a node-redis client or cluster, or an ioredis client or cluster/ })
    t.ok(new RedisStore({ client }), 'the default prefix is valid')
  })

  // ---- Key layout, TTLs, contents ----

  t.test('every key carries a TTL that ends with its session (records, index, pointer, feed; recordFormat json)', async (t) => {
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client, prefix, recordFormat: 'json' })
    t.teardown(() => store.close())
    const userId = `user-${randomUUID()}`
    const start = Date.now()
    const pointed = session({ userId, createdAt: start })
    const tagged = session({ id: store.sessionIdFor(userId), userId, createdAt: start, expiresAt: start + 5 * MINUTE })

    const created = await timed(async () => {
      await store.createSession(pointed)
      await store.createSession(tagged)
    })
    const keys = await keysOf(prefix)
    t.equal(keys.length, 4, `record ×2, index, one pointer: ${keys.join(' ')}`)
    for (const key of keys) t.ok(Number(await client.pTTL(key)) > 0, `${key} has a TTL`)
    const tag = tagged.id.slice(0, 8)
    const recordKey = (id: string): string => `${prefix}{${tag}}:s:${id}`
    t.strictSame(keys, [recordKey(pointed.id), recordKey(tagged.id), `${prefix}{${tag}}:i`, `${prefix}p:${pointed.id}`].sort(),
      'both records and the index share the user\'s tag; only the id without a tag has a pointer')
    // TTLs are relative to the record's lastUsedAt, the caller's "now".
    await expiresWithin(t, recordKey(pointed.id), created, pointed.expiresAt - pointed.lastUsedAt)
    await expiresWithin(t, `${prefix}{${tag}}:i`, created, pointed.expiresAt - pointed.lastUsedAt, 'the index lives as long as its longest session')
    await expiresWithin(t, `${prefix}p:${pointed.id}`, created, pointed.absoluteExpiresAt - pointed.lastUsedAt, 'the pointer lives to the absolute expiry')

    const now = pointed.lastUsedAt + 1000
    const rotated = await timed(async () => {
      const result = await store.rotate(rotation(pointed, pointed.tokenHash, hash('2'), now))
      t.equal(result.outcome, 'rotated')
    })
    await expiresWithin(t, recordKey(pointed.id), rotated, IDLE, 'a rotation renews the record\'s TTL from the rotation\'s now')
    await expiresWithin(t, `${prefix}{${tag}}:i`, rotated, IDLE, 'and the index\'s')

    const revoked = await timed(async () => {
      t.ok(await store.revokeSession(pointed.id, undefined, { now, keepFor: KEEP }))
    })
    t.equal(await client.exists(`${prefix}p:${pointed.id}`), 0, 'the pointer goes with its session')
    await expiresWithin(t, `${prefix}{${tag}}:i`, revoked, tagged.expiresAt - now, 'the index now lives as long as the remaining session')
    await expiresWithin(t, `${prefix}{feed}:at`, revoked, KEEP, 'the feed lives as long as its longest-kept entry')
    await expiresWithin(t, `${prefix}{feed}:until`, revoked, KEEP)

    t.ok(await store.revokeSession(tagged.id, userId, { now, keepFor: KEEP }))
    t.strictSame(await keysOf(prefix), [`${prefix}{feed}:at`, `${prefix}{feed}:until`], 'nothing is left of the user once their sessions are gone')
  })

  t.test('no key or value holds a token or a jti: only SHA-256 hashes (through the plugin)', async (t) => {
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client, prefix })
    t.teardown(() => store.close())
    const app = await build(t, { store, loginRateLimit: false })
    const first = await login(app)
    const refreshed = await refresh(app, first.refreshToken)
    t.equal(refreshed.statusCode, 200)
    const secondRefresh = refreshCookie(refreshed)?.value as string
    const secondAccess = refreshed.json().accessToken as string
    const secrets = [first.refreshToken, first.accessToken, secondRefresh, secondAccess].map(tokenSecrets)

    // Values as bytes: a packed record holds hashes as raw bytes, so secrets are looked for both
    // as text and as the bytes their base64url stands for.
    const dump: Buffer[] = []
    for (const key of await keysOf(prefix)) {
      const type = await client.type(key)
      const values = type === 'string' ? [await bytes.get(key) as Buffer] : await client.zRange(key, 0, -1)
      dump.push(Buffer.from(key), ...values.map((value) => Buffer.from(value)))
    }
    const all = Buffer.concat(dump)
    for (const secret of secrets.flatMap(({ token, jti, signature }) => [token, jti, signature])) {
      t.notOk(all.includes(secret), `Redis holds no ${secret.slice(0, 12)}…`)
      t.notOk(all.includes(Buffer.from(secret, 'base64url')), `nor its bytes (${secret.slice(0, 12)}…)`)
    }
    const [record] = await store.listUserSessions('user-1', Date.now())
    t.equal(record?.tokenHash, storedHashOf(secondRefresh), 'the record keeps the hash of the current jti')
    t.equal(record?.previousTokenHash, storedHashOf(first.refreshToken), 'and of its predecessor')
    t.ok(all.includes(Buffer.from(record?.tokenHash as string, 'base64url')), 'as raw bytes')
  })

  t.test('memory per session (MEMORY USAGE), with and without ids from sessionIdFor, in both formats', async (t) => {
    const count = 200
    const figures: Record<string, number> = {}
    for (const recordFormat of ['packed', 'json'] as const) {
      for (const tagged of [false, true]) {
        const prefix = freshPrefix(t)
        // The default prefix's length, so the figure is the one an app sees.
        const store = new RedisStore({ client, prefix, recordFormat })
        t.teardown(() => store.close())
        const now = Date.now()
        for (let i = 0; i < count; i++) {
          const userId = randomUUID()
          await store.createSession(session({
            id: tagged ? store.sessionIdFor(userId) : randomBytes(16).toString('base64url'),
            userId,
            claims: { username: `user${i}`, role: 'user' },
            createdAt: now,
            lastUsedAt: now,
            expiresAt: now + 14 * 24 * 60 * MINUTE,
            absoluteExpiresAt: now + 30 * 24 * 60 * MINUTE,
            userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0',
            ip: '203.0.113.45'
          }))
        }
        const keys = await keysOf(prefix)
        // Packed, a user's one session is an entry of their bucket; JSON, a record and an index.
        const perUser = (recordFormat === 'packed' ? 1 : 2) + (tagged ? 0 : 1)
        t.equal(keys.length, count * perUser, `${recordFormat}: ${perUser} keys per user${tagged ? '' : ', a pointer included'}`)
        let total = 0
        for (const key of keys) {
          // Measured under the default prefix's length: this test's prefix is longer.
          total += Number(await client.memoryUsage(key, { SAMPLES: 0 })) - (prefix.length - 'fta:'.length)
        }
        figures[`${recordFormat}, ${tagged ? 'sessionIdFor ids' : 'random ids (pointer)'}`] = total / count
      }
      t.ok((figures[`${recordFormat}, random ids (pointer)`] as number) - (figures[`${recordFormat}, sessionIdFor ids`] as number) > 50,
        `${recordFormat}: ids from sessionIdFor save the pointer key`)
    }
    t.comment(`bytes per session, one session per user: ${JSON.stringify(figures)}`)
    t.ok((figures['json, sessionIdFor ids'] as number) < 600, 'json: a record and a one-entry index stay under 600 bytes')
    t.ok((figures['packed, sessionIdFor ids'] as number) < 350, 'packed: a bucket with one session stays under 350 bytes')
  })

  t.test('useOnce: one key per proof id under the prefix, with a TTL from the caller\'s times; through node-redis and ioredis', async (t) => {
    for (const [name, redis] of [['node-redis', client], ['ioredis', io]] as const) {
      const prefix = freshPrefix(t)
      const store = new RedisStore({ client: redis, prefix })
      t.teardown(() => store.close())
      const key = randomBytes(16).toString('base64url')
      const now = Date.now() - 5000 // the caller's clock, behind Redis's: the TTL is relative all the same
      const used = await timed(async () => { t.equal(await store.useOnce(key, now + MINUTE, now), true, `${name}: first use`) })
      t.equal(await store.useOnce(key, now + 2 * MINUTE, now + 1), false, `${name}: second use`)
      t.strictSame(await keysOf(prefix), [`${prefix}once:${key}`], `${name}: one key, ${prefix}once:<key>`)
      t.equal(await client.get(`${prefix}once:${key}`), '1', 'holding only a marker')
      const pttl = Number(await client.pTTL(`${prefix}once:${key}`))
      t.ok(pttl > MINUTE - 1000 && pttl <= MINUTE, `${name}: PTTL ${pttl}, expiresAt - now (the second call changed nothing)`)
      await expiresWithin(t, `${prefix}once:${key}`, used, MINUTE, `${name}: it expires expiresAt - now after the write`)

      const brief = randomBytes(16).toString('base64url')
      t.equal(await store.useOnce(brief, now + 1, now), true, 'one ms left: PX 1')
      t.ok(Number(await client.pTTL(`${prefix}once:${brief}`)) <= 1, 'gone within a ms')
    }
  })

  t.test('useOnce: memory per proof id (MEMORY USAGE), and nothing for the sweep to do', async (t) => {
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client, prefix })
    t.teardown(() => store.close())
    const count = 200
    const now = Date.now()
    for (let i = 0; i < count; i++) await store.useOnce(randomBytes(16).toString('base64url'), now + MINUTE, now)
    let total = 0
    // Measured under the default prefix's length: this test's prefix is longer.
    for (const key of await keysOf(prefix)) total += Number(await client.memoryUsage(key, { SAMPLES: 0 })) - (prefix.length - 'fta:'.length)
    t.comment(`bytes per proof id: ${total / count}`)
    t.ok(total / count < 100, 'under 100 bytes of Redis memory each')
    t.equal(await store.sweep(now + 2 * MINUTE), 0)
    t.equal((await keysOf(prefix)).length, count, 'the sweep leaves proof ids to their TTL')
  })

  t.test('records round-trip exactly through rotations: integers beyond cjson\'s 14 digits, unicode, escapes', async (t) => {
    const store = freshStore(t)
    const awkward = session({
      claims: { big: 2 ** 53 - 1, tiny: 5e-324, pi: Math.PI, text: 'a/b "q" \\ \u2028 \u0001 ✓ 😀', list: [], object: {}, none: null },
      createdAt: 1_700_000_000_001,
      lastUsedAt: 1_700_000_000_001,
      expiresAt: 9_007_199_254_740_990,
      absoluteExpiresAt: Number.MAX_SAFE_INTEGER,
      userAgent: 'agent/1 "quoted" ✓ \\ /',
      ip: '2001:db8::1'
    })
    await store.createSession(awkward)
    t.strictSame(await store.listUserSessions(awkward.userId, 0), [awkward])
    const now = 1_700_000_000_123
    const result = await store.rotate(rotation(awkward, awkward.tokenHash, hash('2'), now, { idleTtl: 1e15 }))
    t.strictSame(result, {
      outcome: 'rotated',
      session: { ...awkward, tokenHash: hash('2'), previousTokenHash: awkward.tokenHash, rotatedAt: now, lastUsedAt: now, expiresAt: now + 1e15 }
    }, 'the Lua rewrite keeps every untouched value byte for byte')
    const grace = await store.rotate(rotation(awkward, awkward.tokenHash, hash('2'), now + 1))
    t.equal(grace.outcome, 'grace')
    t.strictSame(grace.outcome === 'grace' && grace.session.claims, awkward.claims)

    const imported = session({ userId: 'user-imported', previousTokenHash: hash('older'), rotatedAt: 1_893_456_000_007, graceUses: 3, userAgent: null, ip: null })
    await store.createSession(imported)
    t.strictSame(await store.listUserSessions(imported.userId, imported.createdAt), [imported],
      'a record created mid-life (a predecessor, a rotation time, grace uses, no client) lists back as it was')
  })

  // ---- Concurrency and scripts ----

  t.test('100 concurrent rotations of one token from two clients (node-redis and ioredis): exactly one rotated', async (t) => {
    const prefix = freshPrefix(t)
    const stores = [new RedisStore({ client, prefix }), new RedisStore({ client: io, prefix })]
    t.teardown(async () => { for (const store of stores) await store.close() })
    const original = session()
    await stores[0]?.createSession(original)
    const now = original.createdAt + MINUTE
    const results = await Promise.all(Array.from({ length: 100 }, async (_, i) =>
      await stores[i % 2]?.rotate(rotation(original, original.tokenHash, hash(`next-${i}`), now, { grace: 0 }))))
    const outcomes = results.map((result) => result?.outcome)
    t.equal(outcomes.filter((outcome) => outcome === 'rotated').length, 1)
    t.equal(outcomes.filter((outcome) => outcome === 'superseded').length, 99,
      'the others found the token spent by a successor they cannot replace in the same ms: nothing minted')
    const winner = results.find((result) => result?.outcome === 'rotated')
    const next = winner?.outcome === 'rotated' ? winner.session.tokenHash : ''
    t.equal((await stores[1]?.listUserSessions(original.userId, now))?.[0]?.tokenHash, next, 'the winner\'s successor is current')
    t.strictSame(await stores[1]?.revokedSince(0), [])
    // Theft across clients: the successor used through one, the predecessor presented through the other.
    t.equal((await stores[0]?.rotate(rotation(original, next, hash('3'), now + 1, { grace: 0 })))?.outcome, 'rotated')
    t.equal((await stores[1]?.rotate(rotation(original, original.tokenHash, hash('x'), now + 2, { grace: 0 })))?.outcome, 'reused',
      'a predecessor whose successor was used ends the session')
    t.strictSame(await stores[0]?.revokedSince(0), [{ sessionId: original.id, revokedAt: now + 2 }])
  })

  t.test('scripts are reloaded after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async (t) => {
    const store = freshStore(t)
    const original = session()
    await store.createSession(original)
    t.equal((await store.rotate(rotation(original, original.tokenHash, hash('2'), original.createdAt + 1))).outcome, 'rotated')
    const evals = async (): Promise<number> => Number(/cmdstat_eval:calls=(\d+)/.exec(await client.info('commandstats'))?.[1] ?? 0)
    const before = await evals()
    await client.scriptFlush()
    t.equal((await store.rotate(rotation(original, hash('2'), hash('3'), original.createdAt + 2))).outcome, 'rotated')
    t.ok(await evals() > before, 'the script was sent again in full')
    t.equal((await store.rotate(rotation(original, hash('3'), hash('4'), original.createdAt + 3))).outcome, 'rotated', 'and is known again')
  })

  t.test('a script error is not mistaken for NOSCRIPT', async (t) => {
    const store = freshStore(t, { recordFormat: 'json' })
    const original = session()
    await store.createSession(original)
    // A record that is not JSON: the rotate script fails in cjson, and the error surfaces.
    const [key] = (await keysOf(prefixOf(store))).filter((key) => key.includes(':s:'))
    await client.set(key as string, '[not json', { KEEPTTL: true })
    await t.rejects(store.rotate(rotation(original, original.tokenHash, hash('2'), original.createdAt + 1)), /cjson|JSON|Expected/i)
  })

  // ---- Deadlines (a 503 never costs a session) and recovery ----

  t.test('a late createSession stores nothing and rejects, through node-redis and ioredis; in time it stores', async (t) => {
    for (const [name, base] of [['node-redis', client], ['ioredis', io]] as const) {
      const prefix = freshPrefix(t)
      const store = new RedisStore({ client: base, prefix })
      t.teardown(() => store.close())
      const tagged = session({ id: store.sessionIdFor('user-a') })
      await rejectsLate(t, store.createSession(tagged, { deadline: Date.now() - 1000 }), 'createSession', `${name}: late`)
      t.strictSame(await keysOf(prefix), [], `${name}: no record, no index`)
      const pointed = session({ createdAt: tagged.createdAt + 1 }) // listed after it
      await rejectsLate(t, store.createSession(pointed, { deadline: Date.now() - 1000 }), 'createSession', `${name}: late, an id with a pointer`)
      t.strictSame(await keysOf(prefix), [`${prefix}p:${pointed.id}`], `${name}: only the pointer written before the script, pointing to nothing`)
      t.strictSame(await store.rotate(rotation(pointed, pointed.tokenHash, hash('2'), pointed.createdAt + 1)), { outcome: 'missing' })
      await store.createSession(tagged, { deadline: Date.now() + MINUTE })
      await store.createSession(pointed, { deadline: Date.now() + MINUTE })
      t.strictSame(await store.listUserSessions('user-a', tagged.createdAt), [tagged, pointed], `${name}: stored in time`)
    }
  })

  t.test('a late rotate changes nothing (no rotation, expiry, grace use or revocation) and rejects; in time it rotates', async (t) => {
    for (const [name, base] of [['node-redis', client], ['ioredis', io]] as const) {
      const prefix = freshPrefix(t)
      const store = new RedisStore({ client: base, prefix })
      t.teardown(() => store.close())
      const original = session()
      await store.createSession(original)
      const rotatedAt = original.createdAt + MINUTE
      t.equal((await store.rotate(rotation(original, original.tokenHash, hash('2'), rotatedAt))).outcome, 'rotated')
      const before = await snapshot(prefix)
      const late = { deadline: Date.now() - 1000 }
      const calls: Array<[string, string, number]> = [
        ['current', hash('2'), rotatedAt + 1],
        ['predecessor in the grace window', original.tokenHash, rotatedAt + 1],
        ['predecessor after it', original.tokenHash, rotatedAt + GRACE + 1],
        ['unknown hash', hash('never'), rotatedAt + 1],
        ['at expiry', hash('2'), rotatedAt + IDLE]
      ]
      for (const [what, presented, now] of calls) {
        await rejectsLate(t, store.rotate(rotation(original, presented, hash('3'), now, late)), 'rotate', `${name}: ${what}, late`)
      }
      t.strictSame(await snapshot(prefix), before, `${name}: record, index and their TTLs as before; no feed`)
      t.equal((await store.rotate(rotation(original, hash('2'), hash('3'), rotatedAt + 2, { deadline: Date.now() + MINUTE }))).outcome, 'rotated',
        `${name}: in time, it rotates`)
      t.equal((await store.rotate(rotation(original, hash('3'), hash('4'), rotatedAt + 3, { deadline: undefined }))).outcome, 'rotated',
        `${name}: without a deadline, no check`)
    }
  })

  t.test('the deadline is met or missed on Redis\'s clock when the script runs: writes queued behind a frozen Redis are dropped', async (t) => {
    const skip = privateRedisUnavailable()
    if (skip !== undefined) {
      t.plan(0, skip)
      return
    }
    const server = await PrivateRedis.start({ persistence: false })
    const nodeRedis = createClient({ url: server.url })
    nodeRedis.on('error', () => {})
    const ioredis = new Redis({ port: server.port })
    ioredis.on('error', () => {})
    t.teardown(async () => {
      nodeRedis.destroy()
      ioredis.disconnect()
      await server.stop()
    })
    await nodeRedis.connect()
    for (const [name, base] of [['node-redis', nodeRedis], ['ioredis', ioredis]] as const) {
      const store = new RedisStore({ client: base, prefix: `fta-test:${name}:` })
      t.teardown(() => store.close())
      const make = (userId: string): ReturnType<typeof session> => session({ id: store.sessionIdFor(userId), userId })
      const kept = make('user-kept')
      const patient = make('user-patient')
      const fresh = make('user-fresh')
      await store.createSession(kept)
      await store.createSession(patient)

      // Sent well within their deadlines, run by Redis only after them (as after a storeTimeout).
      server.pause()
      const deadline = Date.now() + 200
      const settled = async (call: Promise<unknown>): Promise<unknown> => await call.then((value) => value, (error: unknown) => error)
      const login = settled(store.createSession(fresh, { deadline }))
      const refresh = settled(store.rotate(rotation(kept, kept.tokenHash, hash('2'), kept.createdAt + 1, { deadline })))
      const slow = settled(store.rotate(rotation(patient, patient.tokenHash, hash('2'), patient.createdAt + 1, { deadline: deadline + MINUTE })))
      await new Promise((resolve) => setTimeout(resolve, 500))
      server.resume()

      t.ok(await login instanceof StoreDeadlineError, `${name}: the login queued past its deadline was dropped`)
      t.ok(await refresh instanceof StoreDeadlineError, `${name}: so was the refresh`)
      t.match(await slow, { outcome: 'rotated' }, `${name}: a write whose deadline Redis had not reached was applied`)
      t.strictSame(await store.listUserSessions(fresh.userId, fresh.createdAt), [], `${name}: no session from the dropped login`)
      t.strictSame(await store.listUserSessions(kept.userId, kept.createdAt), [kept], `${name}: the dropped refresh rotated nothing`)
      t.equal((await store.rotate(rotation(kept, kept.tokenHash, hash('2'), kept.createdAt + 2))).outcome, 'rotated',
        `${name}: the client's retry with the token it kept rotates`)
    }
  })

  t.test('recovered and superseded, through node-redis and ioredis: recovery renews as a rotation does; superseded writes nothing', async (t) => {
    for (const [name, base, recordFormat] of [['node-redis', client, 'packed'], ['ioredis', io, 'packed'], ['node-redis, json', client, 'json']] as const) {
      const prefix = freshPrefix(t)
      const store = new RedisStore({ client: base, prefix, recordFormat })
      t.teardown(() => store.close())
      const original = session({ id: store.sessionIdFor('user-a'), claims: { role: 'user' } })
      const tag = tagOf(store, 'user-a')
      // Packed, the user's first session is an entry of the bucket, which has no index.
      const [recordKey, indexKey] = recordFormat === 'json' ? [`${prefix}{${tag}}:s:${original.id}`, `${prefix}{${tag}}:i`] : [`${prefix}{${tag}}:b`, undefined]
      await store.createSession(original)
      const rotatedAt = original.createdAt + MINUTE
      const rotated = await store.rotate(rotation(original, original.tokenHash, hash('2'), rotatedAt))
      t.equal(rotated.outcome, 'rotated')
      const before = await snapshot(prefix)
      const asBefore = { outcome: 'superseded', session: rotated.outcome === 'rotated' ? rotated.session : original }
      t.strictSame(await store.rotate(rotation(original, original.tokenHash, hash('2x'), rotatedAt, { grace: 0 })), asBefore,
        `${name}: grace 0, the same ms: superseded`)
      t.strictSame(await store.rotate(rotation(original, original.tokenHash, hash('2x'), rotatedAt - 1, { grace: 0 })), asBefore,
        `${name}: grace 0, a caller behind the rotation: superseded`)
      t.strictSame(await store.rotate(rotation(original, original.tokenHash, hash('2'), rotatedAt + 1, { graceLimit: 0 })), asBefore,
        `${name}: in the window, over the limit: superseded`)
      t.strictSame(await snapshot(prefix), before, `${name}: superseded wrote nothing, TTLs included`)

      const retry = rotatedAt + GRACE + 1
      let result: Awaited<ReturnType<RedisStore['rotate']>> | undefined
      const window = await timed(async () => {
        result = await store.rotate({ ...rotation(original, original.tokenHash, hash('2b'), retry, { userAgent: 'agent/3', ip: null }), claims: { role: 'admin' } })
      })
      const expected = {
        ...original,
        claims: { role: 'admin' },
        tokenHash: hash('2b'),
        previousTokenHash: original.tokenHash,
        rotatedAt: retry,
        graceUses: 0,
        lastUsedAt: retry,
        expiresAt: retry + IDLE,
        userAgent: 'agent/3',
        ip: null
      }
      t.strictSame(result, { outcome: 'recovered', session: expected }, `${name}: recovered, the predecessor kept`)
      t.strictSame(await store.listUserSessions('user-a', retry), [expected], `${name}: as stored`)
      await expiresWithin(t, recordKey, window, IDLE, `${name}: the record's TTL is renewed from the recovery's now`)
      if (indexKey !== undefined) {
        await expiresWithin(t, indexKey, window, IDLE, `${name}: and the index's`)
        t.equal(await client.zScore(indexKey, original.id), retry + IDLE, `${name}: the index score is the new expiresAt`)
      }
      t.equal((await store.rotate(rotation(original, original.tokenHash, hash('2c'), retry + 1))).outcome, 'grace',
        `${name}: the recovery opened a grace window of its own`)

      const stolen = await store.rotate(rotation(original, hash('2'), hash('3'), retry + 2))
      t.equal(stolen.outcome, 'reused', `${name}: the successor the recovery replaced is theft`)
      t.strictSame(await store.revokedSince(0), [{ sessionId: original.id, revokedAt: retry + 2 }])
      t.strictSame(await keysOf(prefix), [`${prefix}{feed}:at`, `${prefix}{feed}:until`], `${name}: the session is gone`)
    }
  })

  // ---- Session ids from sessionIdFor, and ids that only look like them ----

  t.test('sessionIdFor: ids name their user\'s slot, so no pointer is written or read', async (t) => {
    const store = freshStore(t)
    const a = store.sessionIdFor('alice')
    const b = store.sessionIdFor('alice')
    t.match(a, /^[A-Za-z0-9_-]{30}$/)
    t.equal(a.slice(0, 8), b.slice(0, 8), 'the same tag for the same user')
    t.not(a, b)
    t.not(store.sessionIdFor('bob').slice(0, 8), a.slice(0, 8))

    const first = session({ id: a, userId: 'alice' })
    const second = session({ id: b, userId: 'alice' })
    await store.createSession(first)
    await store.createSession(second)
    t.equal((await keysOf(prefixOf(store))).filter((key) => key.includes(':p:')).length, 0, 'no pointer')
    t.equal((await store.rotate(rotation(first, first.tokenHash, hash('2'), first.createdAt + 1))).outcome, 'rotated')
    t.strictSame(await store.revokeSession(first.id, undefined, { now: first.createdAt + 2, keepFor: KEEP }),
      { ...first, tokenHash: hash('2'), previousTokenHash: first.tokenHash, rotatedAt: first.createdAt + 1, lastUsedAt: first.createdAt + 1, expiresAt: first.createdAt + 1 + IDLE })
    t.equal(await store.revokeSession(second.id, 'bob', { now: first.createdAt + 2, keepFor: KEEP }), null, 'not bob\'s')
    t.strictSame(await store.revokeSession(second.id, 'alice', { now: first.createdAt + 2, keepFor: KEEP }), second)
    t.strictSame(await store.revokeUserSessions('alice', { now: first.createdAt + 3, keepFor: KEEP }), [])
  })

  t.test('an id of the tagged length that is not tagged falls back to its pointer', async (t) => {
    const store = freshStore(t)
    const lookalike = session({ id: randomBytes(30).toString('base64url').slice(0, 30) })
    await store.createSession(lookalike)
    t.equal((await keysOf(prefixOf(store))).filter((key) => key.includes(':p:')).length, 1, 'it got a pointer')
    t.equal((await store.rotate(rotation(lookalike, lookalike.tokenHash, hash('2'), lookalike.createdAt + 1))).outcome, 'rotated')
    t.equal((await store.rotate(rotation(lookalike, lookalike.tokenHash, hash('3'), lookalike.createdAt + MINUTE))).outcome, 'recovered',
      'the predecessor of an unused successor, after the grace window')
    t.equal((await store.rotate(rotation(lookalike, hash('2'), hash('4'), lookalike.createdAt + MINUTE + 1))).outcome, 'reused',
      'the successor the recovery replaced is theft')
    t.strictSame(await store.rotate(rotation(lookalike, hash('3'), hash('4'), lookalike.createdAt + MINUTE + 2)), { outcome: 'missing' })
    t.equal(await store.revokeSession(randomBytes(30).toString('base64url').slice(0, 30), undefined, { now: 1, keepFor: KEEP }), null,
      'an unknown id of that length is missing in both places')
    t.equal((await keysOf(prefixOf(store))).filter((key) => key.includes(':p:')).length, 0, 'the pointer went with the session')
  })

  t.test('an expired session loses its pointer too', async (t) => {
    const store = freshStore(t)
    const original = session()
    await store.createSession(original)
    t.equal((await store.rotate(rotation(original, original.tokenHash, hash('2'), original.expiresAt))).outcome, 'expired')
    t.strictSame(await keysOf(prefixOf(store)), [], 'record, index and pointer are gone')
    t.strictSame(await store.revokedSince(0), [])
  })

  t.test('a pointer that cannot be deleted is left to expire: the revocation still succeeds', async (t) => {
    const failingDel = wrap(client, async (args, send) => {
      if (args[0] === 'DEL') throw new Error('DEL refused')
      return await send()
    })
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client: failingDel, prefix })
    t.teardown(() => store.close())
    const original = session()
    await store.createSession(original)
    t.strictSame(await store.revokeSession(original.id, undefined, { now: original.createdAt, keepFor: KEEP }), original)
    t.equal(await client.get(`${prefix}p:${original.id}`), tagOf(store, original.userId), 'the pointer stayed')
    t.strictSame(await store.rotate(rotation(original, original.tokenHash, hash('2'), original.createdAt)), { outcome: 'missing' },
      'the stale pointer leads nowhere')
  })

  // ---- revokeUserSessions under concurrent change ----

  t.test('revokeUserSessions reads again when the user\'s index changes under it, and revokes what is there then', async (t) => {
    const prefix = freshPrefix(t)
    const plain = new RedisStore({ client, prefix })
    t.teardown(() => plain.close())
    const first = session()
    await plain.createSession(first)
    const late = session({ createdAt: first.createdAt + 1 })
    let injected = false
    const racing = wrap(client, async (args, send) => {
      const reply = await send()
      if (args[0] === 'ZRANGE' && !injected) {
        injected = true
        await plain.createSession(late) // a login lands between the read and the script
      }
      return reply
    })
    const store = new RedisStore({ client: racing, prefix })
    t.teardown(() => store.close())
    t.strictSame((await store.revokeUserSessions(first.userId, { now: first.createdAt + 2, keepFor: KEEP })).sort(), [first.id, late.id].sort())
    t.strictSame(await plain.listUserSessions(first.userId, first.createdAt), [])
  })

  t.test('revokeUserSessions gives up after 5 reads if the index never holds still', async (t) => {
    const prefix = freshPrefix(t)
    const plain = new RedisStore({ client, prefix })
    t.teardown(() => plain.close())
    // The bucket full, so the logins below go to the index.
    for (let i = 0; i < BUCKET_SIZE; i++) await plain.createSession(session())
    let logins = 0
    const churning = wrap(client, async (args, send) => {
      const reply = await send()
      if (args[0] === 'ZRANGE') {
        logins++
        await plain.createSession(session())
      }
      return reply
    })
    const store = new RedisStore({ client: churning, prefix })
    t.teardown(() => store.close())
    await t.rejects(store.revokeUserSessions('user-a', { now: 1, keepFor: KEEP }), { message: /kept changing during 5 attempts/ })
    t.equal(logins, 5)
    t.equal((await plain.listUserSessions('user-a', 0)).length, BUCKET_SIZE + 5, 'nothing was revoked')
  })

  t.test('revokeUserSessions drops index entries whose record already expired, and leaves a tag-sharing user alone', async (t) => {
    // JSON records, which have keys of their own and index entries; the stranger's is packed.
    const store = freshStore(t, { recordFormat: 'json' })
    const prefix = prefixOf(store)
    const alive = session()
    const gone = session()
    await store.createSession(alive)
    await store.createSession(gone)
    await client.del(`${prefix}{${tagOf(store, 'user-a')}}:s:${gone.id}`) // as its TTL would
    // Another user whose records share user-a's tag (a 48-bit collision, forced here).
    const stranger = session({ userId: 'user-z' })
    const strangerRecord = encodeRecord(stranger, 'packed')
    await client.set(`${prefix}{${tagOf(store, 'user-a')}}:s:${stranger.id}`, strangerRecord, { PX: MINUTE })
    await client.zAdd(`${prefix}{${tagOf(store, 'user-a')}}:i`, { score: stranger.expiresAt, value: stranger.id })
    t.strictSame(await store.listUserSessions('user-a', alive.createdAt), [alive], 'listing skips the missing record and the stranger')
    t.strictSame(await store.revokeUserSessions('user-a', { now: alive.createdAt, keepFor: KEEP }), [alive.id])
    t.strictSame(await client.zRange(`${prefix}{${tagOf(store, 'user-a')}}:i`, 0, -1), [stranger.id], 'only the stranger is left')
    t.strictSame(await store.revokeUserSessions('user-a', { now: alive.createdAt + 1, keepFor: KEEP }), [], 'then nothing is user-a\'s')
    t.strictSame((await store.revokedSince(0)).map((entry) => entry.sessionId), [alive.id])
  })

  // ---- Sweep ----

  t.test('sweep works in batches across indexes and the feed, re-scores renewed entries, and matches its prefix literally', async (t) => {
    const prefix = freshPrefix(t, 'a*')
    const store = new RedisStore({ client, prefix, sweepBatchSize: 2 })
    t.teardown(() => store.close())
    // A neighbour whose keys the unescaped glob `…a*{????????}:i` would match.
    const neighbour = new RedisStore({ client, prefix: prefix.replace(/a\*$/, 'ab') })
    t.teardown(async () => {
      await neighbour.close()
      await deleteKeys(prefix.replace(/a\*$/, 'ab'))
    })
    const base = Date.UTC(2030, 0, 1)
    const users = ['u1', 'u2', 'u3']
    for (const userId of users) {
      for (let i = 0; i < 3; i++) await store.createSession(session({ userId, createdAt: base, lastUsedAt: base, expiresAt: base + MINUTE }))
      await store.createSession(session({ userId, createdAt: base, lastUsedAt: base, expiresAt: base + IDLE }))
    }
    const outsider = session({ createdAt: base, lastUsedAt: base, expiresAt: base + MINUTE })
    await neighbour.createSession(outsider)
    // An entry scored too early (a renewal the index did not see): re-scored, not removed.
    const renewed = session({ userId: 'u1', createdAt: base, lastUsedAt: base, expiresAt: base + IDLE })
    await store.createSession(renewed)
    await client.zAdd(`${prefix}{${tagOf(store, 'u1')}}:i`, { score: base, value: renewed.id })
    // An entry whose record is already gone (TTL): dropped and counted.
    const vanished = session({ userId: 'u2', createdAt: base, lastUsedAt: base, expiresAt: base + IDLE })
    await store.createSession(vanished)
    await client.del(`${prefix}{${tagOf(store, 'u2')}}:s:${vanished.id}`)
    await client.zAdd(`${prefix}{${tagOf(store, 'u2')}}:i`, { score: base, value: vanished.id })
    for (let i = 0; i < 5; i++) {
      const revoked = session({ userId: 'u4' })
      await store.createSession(revoked)
      await store.revokeSession(revoked.id, undefined, { now: base + i, keepFor: MINUTE - 10 })
    }

    t.equal(await store.sweep(base + MINUTE), 3 * 3 + 1, 'nine expired sessions and the vanished one')
    for (const userId of users) t.equal((await store.listUserSessions(userId, base)).length, userId === 'u1' ? 2 : 1)
    t.equal(await client.zScore(`${prefix}{${tagOf(store, 'u1')}}:i`, renewed.id), base + IDLE, 're-scored from its record')
    t.strictSame(await store.revokedSince(0), [], 'all five feed entries went, two per batch')
    t.strictSame(await neighbour.listUserSessions(outsider.userId, base), [outsider], 'the neighbour\'s keys were not touched')
    t.equal(await store.sweep(base + MINUTE), 0, 'a second sweep finds nothing')
  })

  // ---- The push feed ----

  t.test('subscribeRevocations ignores foreign messages on the channel; unsubscribing twice is harmless', async (t) => {
    const store = freshStore(t)
    const heard: RevocationRecord[] = []
    const unsubscribe = await store.subscribeRevocations((record) => heard.push(record))
    const channel = `${prefixOf(store)}revocations`
    for (const message of ['not json', 'null', '{"revokedAt":"1","sessionIds":["x"]}', '{"revokedAt":1,"sessionIds":"x"}', '{"revokedAt":7,"sessionIds":["a",2,"b"]}',
      '{"revokedAt":8,"claimsChanged":[["c",3],["d","4"],"e",[5,1]]}']) {
      await client.publish(channel, message)
    }
    await waitFor(() => heard.length >= 3)
    t.strictSame(heard, [{ sessionId: 'a', revokedAt: 7 }, { sessionId: 'b', revokedAt: 7 }, { sessionId: 'c', revokedAt: 8, claimsVersion: 3 }])
    await unsubscribe()
    await unsubscribe()
  })

  t.test('claims changes in the feed: `<id>:<version>` beside the revocation of the same session; polled and pushed with their version, swept alike', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const pushed: RevocationRecord[] = []
    const messages: string[] = []
    const unsubscribe = await store.subscribeRevocations((record) => pushed.push(record))
    const listener = client.duplicate()
    await listener.connect()
    t.teardown(async () => { await unsubscribe(); await listener.close() })
    await listener.subscribe(`${prefix}revocations`, (message) => { messages.push(message) })
    const one = session({ id: store.sessionIdFor('user-a') })
    await store.createSession(one)
    const now = one.createdAt
    await store.updateUserClaims('user-a', { role: 'x' }, { now, keepFor: KEEP })
    await store.updateUserClaims('user-a', { role: 'y' }, { now: now + 1, keepFor: KEEP })
    await store.revokeSession(one.id, undefined, { now: now + 2, keepFor: KEEP })
    t.strictSame(await client.zRangeWithScores(`${prefix}{feed}:at`, 0, -1),
      [{ value: `${one.id}:1`, score: now }, { value: `${one.id}:2`, score: now + 1 }, { value: one.id, score: now + 2 }], 'three members: versions never hide each other')
    const expected: RevocationRecord[] = [
      { sessionId: one.id, revokedAt: now, claimsVersion: 1 }, { sessionId: one.id, revokedAt: now + 1, claimsVersion: 2 }, { sessionId: one.id, revokedAt: now + 2 }
    ]
    const polled = await store.revokedSince(now)
    t.strictSame(polled, expected)
    t.notOk('claimsVersion' in (polled[2] as RevocationRecord), 'a revocation has no claimsVersion property at all')
    await waitFor(() => pushed.length >= 3 && messages.length >= 3)
    t.strictSame(pushed, expected, 'pushed as polled')
    t.strictSame(messages.map((message) => JSON.parse(message)), [
      { revokedAt: now, claimsChanged: [[one.id, 1]] }, { revokedAt: now + 1, claimsChanged: [[one.id, 2]] }, { revokedAt: now + 2, sessionIds: [one.id] }
    ], 'claims changes travel under a name the earlier release does not read as revocations')
    t.equal(await store.sweep(now + 1 + KEEP), 0)
    t.strictSame(await store.revokedSince(0), [expected[2]], 'each leaves the feed at its own keep time')
  })

  t.test('close() ends the subscriptions still open', async (t) => {
    for (const [name, base] of [['node-redis', client], ['ioredis', io]] as const) {
      const prefix = freshPrefix(t)
      const store = new RedisStore({ client: base, prefix })
      const heard: RevocationRecord[] = []
      await store.subscribeRevocations((record) => heard.push(record))
      const channel = `${prefix}revocations`
      t.strictSame(await client.pubSubNumSub(channel), { [channel]: 1 }, `${name}: subscribed`)
      await store.close()
      await waitFor(async () => (await client.pubSubNumSub(channel))[channel] === 0)
      t.equal(await client.publish(channel, '{"revokedAt":1,"sessionIds":["late"]}'), 0, `${name}: nobody listens after close`)
      t.strictSame(heard, [])
    }
  })

  t.test('a subscription that cannot connect rejects and leaves no connection behind', async (t) => {
    const port = await freePort()
    let duplicate: ReturnType<typeof createClient> | undefined
    const nodeRedis = wrap(client, async (_args, send) => await send(), () => {
      duplicate = createClient({ url: `redis://127.0.0.1:${port}`, socket: { reconnectStrategy: false } })
      return duplicate as unknown as NodeRedisClientLike
    })
    const store = new RedisStore({ client: nodeRedis, prefix: freshPrefix(t) })
    t.teardown(() => store.close())
    await t.rejects(store.subscribeRevocations(() => {}), /ECONNREFUSED/)
    t.equal(duplicate?.isOpen, false, 'node-redis: the duplicate was destroyed')

    const dead = new Redis({ port, lazyConnect: true, retryStrategy: () => null, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    dead.on('error', () => {})
    const ioredisLike: IoredisLike = { isCluster: false, status: 'ready', call: async (command, args) => await io.call(command, args), callBuffer: async (command, args) => await io.callBuffer(command, args), duplicate: () => dead, quit: async () => 'OK' }
    const ioStore = new RedisStore({ client: ioredisLike, prefix: freshPrefix(t) })
    t.teardown(() => ioStore.close())
    await t.rejects(ioStore.subscribeRevocations(() => {}))
    await waitFor(() => dead.status === 'end')
    t.equal(dead.status, 'end', 'ioredis: the duplicate was disconnected')
  })

  // ---- Connections: passed, owned, closed ----

  t.test('close(): a passed client stays open unless closeClient is set', async (t) => {
    const store = new RedisStore({ client, prefix: freshPrefix(t) })
    await store.listUserSessions('user-a', 0)
    await store.close()
    await store.close()
    t.equal(client.isOpen, true, 'the file\'s client is still open')
    await t.rejects(store.listUserSessions('user-a', 0), { message: 'RedisStore is closed' })

    const own = createClient({ url: REDIS_URL })
    await own.connect()
    const closing = new RedisStore({ client: own, prefix: freshPrefix(t), closeClient: true })
    await closing.listUserSessions('user-a', 0)
    await closing.close()
    t.equal(own.isOpen, false, 'node-redis: closed with closeClient')

    const ownIo = new Redis(REDIS_URL)
    const closingIo = new RedisStore({ client: ownIo, prefix: freshPrefix(t), closeClient: true })
    await closingIo.listUserSessions('user-a', 0)
    await closingIo.close()
    await waitFor(() => ownIo.status === 'end')
    t.equal(ownIo.status, 'end', 'ioredis: closed with closeClient')
  })

  t.test('a node-redis client not yet connected is connected on first use', async (t) => {
    const fresh = createClient({ url: REDIS_URL })
    t.teardown(() => fresh.close())
    const store = new RedisStore({ client: fresh, prefix: freshPrefix(t) })
    t.teardown(() => store.close())
    t.strictSame(await store.listUserSessions('user-a', 0), [])
    t.equal(fresh.isReady, true)
  })

  t.test('a failed first connection is tried again on the next call', async (t) => {
    let attempts = 0
    const flaky = wrap(client, async (_args, send) => await send())
    flaky.connect = async () => {
      attempts++
      if (attempts === 1) throw new Error('connect failed')
    }
    Object.defineProperty(flaky, 'isOpen', { value: false })
    const store = new RedisStore({ client: flaky, prefix: freshPrefix(t) })
    t.teardown(() => store.close())
    await t.rejects(store.listUserSessions('user-a', 0), { message: 'connect failed' })
    t.strictSame(await store.listUserSessions('user-a', 0), [])
    t.equal(attempts, 2)
  })

  t.test('with a URL the store owns its connection (and its subscriber\'s) and closes them', async (t) => {
    const proxy = await CountingProxy.start(new URL(REDIS_URL))
    t.teardown(() => proxy.close())
    const prefix = freshPrefix(t)
    const store = new RedisStore({ url: `redis://127.0.0.1:${proxy.port}`, prefix })
    t.equal(proxy.open, 0, 'nothing is opened before the first call')
    const original = session()
    await store.createSession(original)
    t.strictSame(await store.listUserSessions(original.userId, original.createdAt), [original])
    t.equal(proxy.open, 1)
    await store.subscribeRevocations(() => {})
    t.equal(proxy.open, 2, 'the subscriber has a connection of its own')
    await store.close()
    await waitFor(() => proxy.open === 0)
    t.equal(proxy.open, 0, 'both connections are closed')
  })

  t.test('with a URL that never answers, calls wait for the connection and fail when the store is closed', async (t) => {
    // A server that accepts connections and never answers: the client's handshake hangs.
    const accepted: net.Socket[] = []
    const silent = net.createServer((socket) => { accepted.push(socket.on('error', () => {})) })
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
    t.teardown(() => new Promise((resolve) => {
      for (const socket of accepted) socket.destroy()
      silent.close(resolve)
    }))
    const store = new RedisStore({ url: `redis://127.0.0.1:${(silent.address() as net.AddressInfo).port}`, prefix: freshPrefix(t) })
    const pending = store.listUserSessions('user-a', 0)
    await waitFor(() => accepted.length === 1)
    await store.close()
    await t.rejects(pending, 'the waiting call fails')

    const closedEarly = new RedisStore({ url: REDIS_URL, prefix: freshPrefix(t) })
    const early = closedEarly.listUserSessions('user-a', 0)
    await closedEarly.close()
    await t.rejects(early, { message: 'RedisStore is closed' }, 'closed before the client existed: none is created')
  })

  // ---- The eviction-policy check ----

  t.test('a Redis that may evict keys gets a warning at first use; a refused or silent INFO does not', async (t) => {
    const warnings: Error[] = []
    const onWarning = (warning: Error): void => { warnings.push(warning) }
    process.on('warning', onWarning)
    t.teardown(() => { process.off('warning', onWarning) })
    const cases: Array<[string, string | Error, boolean]> = [
      ['allkeys-lru with a limit', 'maxmemory:1048576\r\nmaxmemory_policy:allkeys-lru\r\n', true],
      ['volatile-ttl with a limit', 'maxmemory:1048576\r\nmaxmemory_policy:volatile-ttl\r\n', true],
      ['allkeys-lru without a limit', 'maxmemory:0\r\nmaxmemory_policy:allkeys-lru\r\n', false],
      ['noeviction with a limit', 'maxmemory:1048576\r\nmaxmemory_policy:noeviction\r\n', false],
      ['an INFO without those fields', '# Memory\r\n', false],
      ['INFO refused', new Error('ERR unknown command \'INFO\''), false]
    ]
    for (const [name, info, warns] of cases) {
      const faked = wrap(client, async (args, send) => {
        if (args[0] !== 'INFO') return await send()
        if (info instanceof Error) throw info
        return info
      })
      const store = new RedisStore({ client: faked, prefix: freshPrefix(t) })
      const before = warnings.length
      t.strictSame(await store.listUserSessions('user-a', 0), [], `${name}: the store works`)
      await store.listUserSessions('user-a', 0)
      await new Promise((resolve) => setImmediate(resolve))
      t.equal(warnings.length - before, warns ? 1 : 0, `${name}: ${warns ? 'one warning' : 'no warning'}`)
      await store.close()
    }
    t.match(warnings[0], { name: 'Warning', code: 'FST_TOKEN_AUTH_REDIS_EVICTION', message: /maxmemory-policy allkeys-lru.*noeviction/ })
  })
}

// ---- Helpers ----

function hash (text: string): string {
  return createHash('sha256').update(text).digest().toString('base64url', 0, 16)
}

const storePrefixes = new WeakMap<RedisStore, string>()

/** The prefix of a store made by `freshStore` (or registered in `storePrefixes`). */
function prefixOf (store: RedisStore): string {
  const prefix = storePrefixes.get(store)
  if (prefix === undefined) throw new Error('store not registered')
  return prefix
}

/** The slot tag the store gives a user (the first 8 characters of its sessionIdFor ids). */
function tagOf (store: RedisStore, userId: string): string {
  return store.sessionIdFor(userId).slice(0, 8)
}

/** Asserts that `call` rejects with the StoreDeadlineError of `what`. */
async function rejectsLate (t: Test, call: Promise<unknown>, what: 'createSession' | 'rotate', message: string): Promise<void> {
  const error = await call.then(() => undefined, (error: unknown) => error)
  t.ok(error instanceof StoreDeadlineError, message)
  t.match(error, { name: 'StoreDeadlineError', message: `${what} reached the store after its deadline: nothing was changed` })
}

/** Runs `body` and returns the wall-clock window it ran in. */
async function timed (body: () => Promise<void>): Promise<[number, number]> {
  const start = Date.now()
  await body()
  return [start, Date.now()]
}

/**
 * A node-redis-like client around a real one: every command goes through `hook`, which can
 * answer, fail or act before or after sending it; `duplicate` can be replaced.
 */
function wrap (
  base: NodeRedisClientLike,
  hook: (args: string[], send: () => Promise<unknown>) => Promise<unknown>,
  duplicate: () => NodeRedisClientLike = () => base.duplicate()
): NodeRedisClientLike {
  return {
    get isOpen () { return base.isOpen },
    get isReady () { return base.isReady },
    connect: async () => await base.connect(),
    sendCommand: async (args: Arg[], options?: NodeRedisCommandOptions) =>
      await hook(args.map(String), async () => await base.sendCommand(args, options)),
    duplicate,
    subscribe: async () => { throw new Error('not used') },
    on: () => undefined,
    close: async () => undefined,
    destroy: () => undefined
  }
}

/** A TCP proxy to Redis that counts the connections open through it. */
class CountingProxy {
  open = 0
  readonly #sockets = new Set<net.Socket>()
  private constructor (readonly server: net.Server) {}

  static async start (target: URL): Promise<CountingProxy> {
    const server = net.createServer()
    const proxy = new CountingProxy(server)
    server.on('connection', (socket) => {
      proxy.open++
      const upstream = net.connect(Number(target.port || 6379), target.hostname)
      proxy.#sockets.add(socket).add(upstream)
      socket.pipe(upstream).pipe(socket)
      const end = (): void => {
        if (!proxy.#sockets.has(socket)) return
        proxy.#sockets.delete(socket)
        proxy.#sockets.delete(upstream)
        proxy.open--
        socket.destroy()
        upstream.destroy()
      }
      socket.on('close', end).on('error', end)
      upstream.on('close', end).on('error', end)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return proxy
  }

  get port (): number {
    return (this.server.address() as net.AddressInfo).port
  }

  async close (): Promise<void> {
    for (const socket of this.#sockets) socket.destroy()
    await new Promise((resolve) => this.server.close(resolve))
  }
}

t.test('a client that lost its connection fails at once: nothing waits in an offline queue to run after a 503', async (t) => {
  const proxy = await TcpProxy.start(Number(new URL(REDIS_URL).port || 6379))
  t.teardown(() => proxy.close())
  const nodeRedis = createClient({ url: `redis://${proxy.url}`, socket: { reconnectStrategy: () => 50 } })
  nodeRedis.on('error', () => {})
  const io = new Redis({ port: proxy.port, retryStrategy: () => 50 })
  io.on('error', () => {})
  t.teardown(async () => { nodeRedis.destroy(); io.disconnect() })
  const session = { id: 'x', userId: 'u' }
  for (const [name, client] of [['node-redis', nodeRedis], ['ioredis', io]] as const) {
    const store = new RedisStore({ client: client as never, prefix: `fta-test:${randomUUID()}:` })
    t.same(await store.listUserSessions(session.userId, Date.now()), [], `${name}: works while connected`)
  }
  proxy.refuse()
  await new Promise((resolve) => setTimeout(resolve, 100))
  for (const [name, client] of [['node-redis', nodeRedis], ['ioredis', io]] as const) {
    const store = new RedisStore({ client: client as never, prefix: `fta-test:${randomUUID()}:` })
    await t.rejects(store.listUserSessions(session.userId, Date.now()), /Redis connection is not ready/, `${name}: refused at once`)
  }
})
