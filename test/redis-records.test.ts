import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { createClient, RESP_TYPES } from 'redis'
import t, { type Test } from 'tap'
import { BUCKET_SIZE, decodeBucket } from '../lib/stores/redis/bucket.js'
import { RedisStore, type RedisStoreOptions } from '../lib/stores/redis/index.js'
import { decodePacked, encodePacked, packable } from '../lib/stores/redis/packed.js'
import { decodeRecord } from '../lib/stores/redis/record.js'
import type { SessionRecord } from '../lib/stores/types.js'
import { rotationRequest as rotation, sessionRecord as session } from '../lib/testing.js'
import { REDIS_URL, redisAvailable } from './services.js'
// The conformance kit's lifetimes, which its `sessionRecord` and `rotationRequest` use.
import { GRACE, IDLE, KEEP, MINUTE } from '../lib/testing/fixtures.js'

/*
 * The Redis store's record formats (lib/stores/redis/packed-layout.ts, packed.ts, packed-lua.ts, record.ts, bucket.ts): packed
 * records round-trip every field, in a user's bucket and in keys of their own; JSON records of
 * the earlier release are read, rotated and revoked; `recordFormat: 'json'` writes what that
 * release reads. The conformance kit runs in both formats in redis-store.test.ts.
 */

const skip = await redisAvailable()
if (skip !== undefined) {
  t.plan(0, skip)
} else {
  await suite()
}

async function suite (): Promise<void> {
  const client = createClient({ url: REDIS_URL })
  await client.connect()
  /** The same client, answering strings as Buffers: packed records are bytes. */
  const bytes = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer })
  t.teardown(async () => { await client.close() })
  const storePrefixes = new WeakMap<RedisStore, string>()

  async function keysOf (prefix: string): Promise<string[]> {
    const keys: string[] = []
    for await (const batch of client.scanIterator({ MATCH: `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`, COUNT: 1000 })) keys.push(...batch)
    return keys.sort()
  }

  /** A store on a key prefix of its own, its keys deleted and the store closed when `t` ends. */
  function freshStore (t: Test, options: Partial<RedisStoreOptions> = {}): RedisStore {
    const prefix = freshPrefix(t)
    const store = new RedisStore({ client, prefix, ...options })
    storePrefixes.set(store, prefix)
    t.teardown(() => store.close())
    return store
  }

  function freshPrefix (t: Test): string {
    const prefix = `fta-test:${randomBytes(6).toString('hex')}:`
    t.teardown(async () => {
      const keys = await keysOf(prefix)
      if (keys.length > 0) await client.del(keys)
    })
    return prefix
  }

  function prefixOf (store: RedisStore): string {
    const prefix = storePrefixes.get(store)
    if (prefix === undefined) throw new Error('store not registered')
    return prefix
  }

  /** Records that use every corner of the packed layout, and the JSON one. */
  function awkwardSessions (userId: string): SessionRecord[] {
    const long = 'ü'.repeat(200) // 400 bytes: a length beyond one byte
    return [
      session({ userId, userAgent: null, ip: null }),
      session({ userId, userAgent: `agent ✓ 😀 "q" \\ ${long}`, ip: '192.0.2.1', claims: { text: long, list: [1, 'two', null], big: 2 ** 53 - 1, tiny: 5e-324 } }),
      // Not canonical IPv4: kept as text. Re-authenticated with acr and amr; a version beyond one byte.
      session({ userId, ip: '010.0.0.1', userAgent: '', authentication: { time: Date.UTC(2030, 0, 1) + 7, acr: 'mfa ✓', amr: ['pwd', 'otp'] }, claimsVersion: 300 }),
      session({ userId, ip: '2001:db8::1', tokenHash: 'not-base64url-of-32-bytes', previousTokenHash: 'x'.repeat(43), rotatedAt: 1_893_456_000_007, graceUses: 300 }),
      session({
        userId,
        claims: { blob: 'z'.repeat(70_000) },
        createdAt: 1.5,
        lastUsedAt: -2,
        expiresAt: Number.MAX_SAFE_INTEGER,
        absoluteExpiresAt: Number.MAX_SAFE_INTEGER,
        authentication: { time: -3.25, amr: [] },
        firstUserAgent: null,
        firstIp: '2001:db8::2',
        claimsVersion: 1
      }),
      session({ userId, previousTokenHash: hash('p'), rotatedAt: Date.UTC(2030, 0, 1) + 5, lastUsedAt: Date.UTC(2030, 0, 1) + 5, graceUses: 2 })
    ]
  }

  t.test('a truncated bucket, or a record a client answered as text, is refused rather than misread', async (t) => {
    const entry = encodePacked(session({ id: 'in-bucket' }), true)
    t.throws(() => decodeBucket(Buffer.concat([Buffer.from([entry.length + 5]), entry])), /a bucket ends early/)
    t.throws(() => decodePacked('s1', entry.subarray(0, 10)), /a packed record ends early/)
    t.throws(() => decodeRecord('s1', entry.toString('latin1') as unknown as Buffer), TypeError)
  })

  t.test('packed records round-trip every field: nulls, unicode, long values, odd hashes, ips and times', async (t) => {
    for (const recordFormat of ['packed', 'json'] as const) {
      const store = freshStore(t, { recordFormat })
      const sessions = awkwardSessions(`user-${recordFormat}`)
      for (const one of sessions) await store.createSession(one)
      t.strictSame(byId(await store.listUserSessions(sessions[0]!.userId, -10)), byId(sessions),
        `${recordFormat}: every record lists back exactly (packed: ${BUCKET_SIZE} in the bucket, the rest in keys of their own)`)
      for (const one of sessions) {
        const next = { ...one, previousTokenHash: one.tokenHash, tokenHash: hash(`next-${one.id}`), rotatedAt: 10, lastUsedAt: 10, graceUses: 0, expiresAt: Math.min(10 + IDLE, one.absoluteExpiresAt), userAgent: 'agent/2 ✓', ip: '198.51.100.7' }
        const result = await store.rotate(rotation(one, one.tokenHash, next.tokenHash, 10, { userAgent: next.userAgent, ip: next.ip }))
        t.strictSame(result, { outcome: 'rotated', session: next }, `${recordFormat}: ${one.id} rotates, the rest kept byte for byte`)
        const grace = await store.rotate(rotation(one, one.tokenHash, next.tokenHash, 11))
        t.strictSame(grace, { outcome: 'grace', session: { ...next, graceUses: 1 } }, `${recordFormat}: ${one.id} grace`)
      }
    }
    // The Node codec alone, for any record: every field round-trips.
    fc.assert(fc.property(arbitrarySession(), (record) => {
      assert.deepStrictEqual(decodePacked(record.id, encodePacked(record)), record)
      assert.deepStrictEqual(decodePacked('', encodePacked(record, true)), record)
      assert.deepStrictEqual(decodePacked('', encodePacked(record, ARBITRARY_TAG), ARBITRARY_TAG), record)
      assert.deepStrictEqual(decodeBucket(bucketOf(encodePacked(record, ARBITRARY_TAG)), ARBITRARY_TAG), [record])
    }), { numRuns: 500 })
    t.pass('500 random records round-trip through the Node codec, with and without their ids')
  })

  t.test('packed: ids and times that do not fit the compact forms keep their fallbacks, in Node and in the scripts', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const userId = 'user-odd'
    const tag = tagOf(store, userId)
    const now = Date.UTC(2030, 0, 1)
    const canonical = store.sessionIdFor(userId)
    const sessions = [
      // The bucket's tag and 16 bytes (stored raw); times before createdAt, fractional, 2^32 ms on.
      session({ userId, id: canonical, lastUsedAt: now - 1, expiresAt: now + 0.5, absoluteExpiresAt: now + 2 ** 32, rotatedAt: now + 2 ** 32 - 1, previousTokenHash: hash('p'), graceUses: 3 }),
      // The tag, then 22 characters that are not canonical base64url; createdAt beyond 48 bits.
      session({ userId, id: `${tag}${'A'.repeat(21)}B`, createdAt: 2 ** 48 + 2, lastUsedAt: 2 ** 48 + 3, expiresAt: 2 ** 48 + 10, absoluteExpiresAt: 2 ** 48 + 11 }),
      // Another tag; a negative createdAt.
      session({ userId, id: `other-tg${canonical.slice(8)}`, createdAt: -5, lastUsedAt: -4, absoluteExpiresAt: now }),
      // Too short to be tagged; a fractional createdAt.
      session({ userId, id: `${tag}short`, createdAt: 1.5, rotatedAt: 2, lastUsedAt: 2, absoluteExpiresAt: now })
    ]
    for (const one of sessions) await store.createSession(one)
    t.strictSame(await keysOf(prefix), [`${prefix}{${tag}}:b`, ...sessions.slice(2).map((one) => `${prefix}p:${one.id}`)].sort(), 'all four in the bucket')
    t.strictSame(byId(await store.listUserSessions(userId, -10)), byId(sessions), 'every entry reads back exactly')
    const bucket = await bytes.get(`${prefix}{${tag}}:b`) as unknown as Buffer
    t.notOk(bucket.includes(Buffer.from(canonical)), 'the tagged id is held as its bytes')
    t.ok(bucket.includes(Buffer.from(sessions[1]!.id)) && bucket.includes(Buffer.from(sessions[2]!.id)), 'the others as text')
    const renewed = []
    for (const [i, one] of sessions.entries()) {
      const at = one.lastUsedAt + 1
      const next = { ...one, previousTokenHash: one.tokenHash, tokenHash: hash(`odd-${i}`), rotatedAt: at, lastUsedAt: at, graceUses: 0, expiresAt: Math.min(at + IDLE, one.absoluteExpiresAt) }
      t.strictSame(await store.rotate(rotation(one, one.tokenHash, next.tokenHash, at)), { outcome: 'rotated', session: next }, `entry ${i} rotates in Lua`)
      renewed.push(next)
    }
    t.strictSame(byId(await store.listUserSessions(userId, -10)), byId(renewed), 'and every entry, rewritten by the scripts, reads back exactly')
  })

  t.test('packed: claims whose JSON is not an object are stored as JSON; a rotation or a claims update to them is refused', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const odd = { toJSON: () => ['not', 'an', 'object'] } as unknown as Record<string, unknown>
    t.notOk(packable(session({ claims: odd })))
    t.notOk(packable(session({ claims: { toJSON: () => undefined } as unknown as Record<string, unknown> })), 'nor claims with no JSON at all')
    const one = session({ claims: odd })
    await store.createSession(one)
    const raw = await bytes.get(`${prefix}{${tagOf(store, one.userId)}}:s:${one.id}`) as unknown as Buffer
    t.equal(raw[0], 0x5B, 'a JSON record of its own')
    const packed = session()
    await store.createSession(packed)
    await t.rejects(store.rotate(rotation(packed, packed.tokenHash, hash('n'), packed.createdAt + 1, { claims: odd })), /claims must be a JSON object/)
    await t.rejects(store.updateUserClaims(packed.userId, odd, { now: packed.createdAt + 1, keepFor: KEEP }), /claims must be a JSON object/)
    t.strictSame((await store.getSession(packed.id, packed.createdAt + 1))?.claimsVersion, 0, 'nothing changed')
  })

  t.test('packed: a user\'s first sessions share a bucket; more get records of their own, listed in the index', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const tag = tagOf(store, 'user-a')
    const now = Date.UTC(2030, 0, 1)
    const sessions = Array.from({ length: BUCKET_SIZE + 2 }, (_, i) => session({ ...(i % 2 === 0 ? { id: store.sessionIdFor('user-a') } : {}), createdAt: now + i, lastUsedAt: now + i }))
    for (const one of sessions) await store.createSession(one)
    const own = sessions.slice(BUCKET_SIZE)
    t.strictSame(await keysOf(prefix), [`${prefix}{${tag}}:b`, `${prefix}{${tag}}:i`, ...own.map((one) => `${prefix}{${tag}}:s:${one.id}`),
      ...sessions.filter((one) => !one.id.startsWith(tag)).map((one) => `${prefix}p:${one.id}`)].sort())
    for (const one of own) {
      const raw = await bytes.get(`${prefix}{${tag}}:s:${one.id}`) as unknown as Buffer
      t.not(raw[0], 0x5B, 'a record of its own is packed, not JSON')
      t.notOk(raw.includes(Buffer.from(one.id)), 'and does not repeat its id, which its key holds')
    }
    t.ok(Number(await client.pTTL(`${prefix}{${tag}}:b`)) > 0, 'the bucket has a TTL')
    t.strictSame(await store.listUserSessions('user-a', now), sessions)
    // A session in the bucket and one in a key of its own rotate, are revoked, are swept.
    for (const one of [sessions[1]!, own[1]!]) {
      t.equal((await store.rotate(rotation(one, one.tokenHash, hash(`2-${one.id}`), now + MINUTE))).outcome, 'rotated')
      t.equal((await store.rotate(rotation(one, hash('stolen'), hash('3'), now + MINUTE + 1))).outcome, 'reused')
    }
    t.strictSame((await store.revokeSession(sessions[0]!.id, 'user-b', { now, keepFor: KEEP })), null, 'not another user\'s to revoke')
    t.strictSame((await store.revokeSession(sessions[0]!.id, 'user-a', { now, keepFor: KEEP }))?.id, sessions[0]!.id)
    t.equal(await store.sweep(now + IDLE + BUCKET_SIZE + 2), 3, 'the three sessions left expired: two in the bucket, one in a key of its own')
    t.strictSame(await keysOf(prefix), [`${prefix}{feed}:at`, `${prefix}{feed}:until`], 'nothing is left of the user, pointers included')
  })

  t.test('packed: revokeUserSessions leaves the bucket entries of a tag-sharing user alone', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const mine = session()
    await store.createSession(mine)
    // Another user whose tag is user-a's (a 48-bit collision, forced here): an entry added by hand.
    const stranger = session({ userId: 'user-z' })
    const bucketKey = `${prefix}{${tagOf(store, 'user-a')}}:b`
    const entry = encodePacked(stranger, true)
    const length = Buffer.alloc(5, 255)
    length.writeUInt32BE(entry.length, 1) // the long form, as for an entry of 255 bytes or more
    await bytes.set(bucketKey, Buffer.concat([await bytes.get(bucketKey) as unknown as Buffer, length, entry]), { KEEPTTL: true })
    t.strictSame(await store.listUserSessions('user-a', mine.createdAt), [mine], 'listing skips the stranger')
    const now = mine.createdAt
    t.strictSame(await store.updateUserClaims('user-a', { role: 'x' }, { now, keepFor: KEEP }), [{ sessionId: mine.id, revokedAt: now, claimsVersion: 1 }],
      'a claims update skips the stranger')
    const next = session({ createdAt: now + 1, lastUsedAt: now + 1 })
    t.strictSame(await store.createSession(next, { sessionLimit: { max: 1, policy: 'end-least-recent', keepRevocationFor: KEEP } }),
      { outcome: 'created', ended: [{ ...mine, claims: { role: 'x' }, claimsVersion: 1 }] }, 'a cap neither counts nor ends the stranger')
    t.strictSame(await store.revokeUserSessions('user-a', { now, keepFor: KEEP }), [next.id])
    t.strictSame(await store.revokeSession(stranger.id, 'user-a', { now: mine.createdAt, keepFor: KEEP }), null)
    t.strictSame(decodeBucket(await bytes.get(bucketKey) as unknown as Buffer), [stranger], 'the stranger\'s entry is all the bucket holds')
  })

  t.test('upgrading: records of the earlier release (JSON) are read, rotated (staying JSON) and revoked by a packed store', async (t) => {
    const store = freshStore(t)
    const prefix = prefixOf(store)
    const tag = tagOf(store, 'user-a')
    const now = Date.UTC(2030, 0, 1)
    // Written as the earlier release writes them: a record key, a JSON array of strings, an index entry.
    // Read back with the policy defaults: the first client is the latest, authenticated at login, version 0.
    const legacy = (one: SessionRecord): SessionRecord => ({ ...one, firstUserAgent: one.userAgent, firstIp: one.ip, authentication: { time: one.createdAt }, claimsVersion: 0 })
    const old = legacy(session({ id: store.sessionIdFor('user-a'), claims: { role: 'user', name: 'ünï' }, userAgent: 'agent/1', ip: '192.0.2.1' }))
    const older = legacy(session({ previousTokenHash: hash('p'), rotatedAt: now - 5, graceUses: 1, userAgent: null, ip: null, createdAt: now - 10 }))
    for (const one of [old, older]) {
      const json = JSON.stringify([one.userId, JSON.stringify(one.claims), String(one.createdAt), String(one.lastUsedAt), String(one.expiresAt),
        String(one.absoluteExpiresAt), one.tokenHash, one.previousTokenHash, one.rotatedAt === null ? null : String(one.rotatedAt), String(one.graceUses),
        one.userAgent, one.ip])
      await client.set(`${prefix}{${tag}}:s:${one.id}`, json, { PX: MINUTE })
      await client.zAdd(`${prefix}{${tag}}:i`, { score: one.expiresAt, value: one.id })
      if (one === older) await client.set(`${prefix}p:${one.id}`, tag, { PX: MINUTE })
    }
    const fresh = session()
    await store.createSession(fresh)
    t.strictSame(byId(await store.listUserSessions('user-a', now)), byId([old, older, fresh]), 'both formats list together')
    const rotated = await store.rotate(rotation(old, old.tokenHash, hash('2'), now + 1, { userAgent: 'agent/2', ip: null, claims: { role: 'admin' } }))
    const expected = { ...old, tokenHash: hash('2'), previousTokenHash: old.tokenHash, rotatedAt: now + 1, lastUsedAt: now + 1, expiresAt: now + 1 + IDLE, claims: { role: 'admin' }, userAgent: 'agent/2', ip: null }
    t.strictSame(rotated, { outcome: 'rotated', session: expected })
    const raw = await client.get(`${prefix}{${tag}}:s:${old.id}`) as string
    t.equal(raw[0], '[', 'the rotated record stays JSON, so instances of the earlier release can still read it')
    t.strictSame(JSON.parse(raw), [old.userId, '{"role":"admin"}', String(old.createdAt), String(now + 1), String(now + 1 + IDLE), String(old.absoluteExpiresAt),
      hash('2'), old.tokenHash, String(now + 1), '0', 'agent/2', null, 'agent/1', '192.0.2.1', `{"time":${old.createdAt}}`, '0'],
    'the earlier release\'s fields in place, the policy fields after them (which it ignores), the defaults made explicit')
    t.equal((await store.rotate(rotation(old, old.tokenHash, hash('2'), now + 2))).outcome, 'grace')
    t.equal((await store.rotate(rotation(older, older.previousTokenHash as string, hash('r'), now + GRACE + 10))).outcome, 'recovered', 'the pointer of an id without a tag is followed')
    const changed = await store.updateUserClaims('user-a', { role: 'x' }, { now: now + 20, keepFor: KEEP })
    t.strictSame(changed.map((entry) => entry.claimsVersion), [1, 1, 1], 'a claims update reaches records of the earlier release too')
    const updated = await store.getSession(older.id, now + 20)
    t.strictSame(updated && [updated.claimsVersion, updated.firstUserAgent, updated.authentication, JSON.parse((await client.get(`${prefix}{${tag}}:s:${older.id}`)) as string).length],
      [1, null, { time: older.createdAt }, 16], 'rewritten by a script with the defaults it was read with')
    t.strictSame((await store.revokeSession(older.id, undefined, { now, keepFor: KEEP }))?.id, older.id)
    t.strictSame((await store.revokeUserSessions('user-a', { now, keepFor: KEEP })).sort(), [old.id, fresh.id].sort())
  })

  t.test('a session cap and a claims update reach sessions in the bucket and in keys of their own, in both formats', async (t) => {
    for (const recordFormat of ['packed', 'json'] as const) {
      const store = freshStore(t, { recordFormat })
      const base = Date.UTC(2030, 0, 1)
      // Least recently used: the 2nd (in the bucket, when packed) and the 6th (a key of its own): ties by createdAt, then id.
      const lastUsed = [base + 5, base, base + 3, base + 4, base + 2, base]
      const sessions = lastUsed.map((at, i) => session({ id: store.sessionIdFor('user-a'), createdAt: base - 10 + i, lastUsedAt: at }))
      for (const one of sessions) await store.createSession(one)
      const newest = session({ id: store.sessionIdFor('user-a'), createdAt: base + 10, lastUsedAt: base + 10 })
      const result = await store.createSession(newest, { sessionLimit: { max: 3, policy: 'end-least-recent', keepRevocationFor: KEEP } })
      const ended = [sessions[1], sessions[5], sessions[4], sessions[2]] as SessionRecord[]
      t.strictSame(result, { outcome: 'created', ended }, `${recordFormat}: the four least recently used end, from the bucket and from keys`)
      t.strictSame((await store.revokedSince(base)).map((entry) => entry.sessionId).sort(), ended.map((one) => one.id).sort(), `${recordFormat}: fed as revoked`)
      const live = [sessions[0], sessions[3], newest] as SessionRecord[]
      t.strictSame(await store.listUserSessions('user-a', base + 10), live)
      const changes = await store.updateUserClaims('user-a', { role: 'x' }, { now: base + 11, keepFor: KEEP })
      t.strictSame(changes.map((entry) => entry.sessionId).sort(), live.map((one) => one.id).sort())
      t.strictSame(await store.listUserSessions('user-a', base + 11), live.map((one) => ({ ...one, claims: { role: 'x' }, claimsVersion: 1 })),
        `${recordFormat}: every live session took the claims and the version`)
      t.strictSame(await store.createSession(session({ createdAt: base + 12 }), { sessionLimit: { max: 3, policy: 'refuse', keepRevocationFor: KEEP } }),
        { outcome: 'refused' }, `${recordFormat}: refused at the cap`)
    }
  })

  t.test('recordFormat json writes what the earlier release reads: JSON records in keys of their own, no bucket', async (t) => {
    t.throws(() => new RedisStore({ client, recordFormat: 'binary' as 'json' }), { name: 'TypeError', message: /"recordFormat" must be 'packed' or 'json', got "binary"/ })
    const prefix = freshPrefix(t)
    const json = new RedisStore({ client, prefix, recordFormat: 'json' })
    const packed = new RedisStore({ client, prefix })
    t.teardown(async () => { await json.close(); await packed.close() })
    const one = session({ id: json.sessionIdFor('user-a') })
    await json.createSession(one)
    const tag = tagOf(json, 'user-a')
    t.strictSame(await keysOf(prefix), [`${prefix}{${tag}}:i`, `${prefix}{${tag}}:s:${one.id}`])
    t.equal((await client.get(`${prefix}{${tag}}:s:${one.id}`))?.[0], '[')
    // Switched back from packed: a json store still finds the sessions the packed one wrote.
    const two = session({ createdAt: one.createdAt + 1 })
    await packed.createSession(two)
    t.strictSame(await json.listUserSessions('user-a', one.createdAt), [one, two])
    t.equal((await json.rotate(rotation(two, two.tokenHash, hash('2'), two.createdAt + 1))).outcome, 'rotated')
    const bucket = await bytes.get(`${prefix}{${tag}}:b`) as unknown as Buffer
    t.not(bucket[bucket[0] === 255 ? 5 : 1], 0x5B, 'the packed record stays packed')
  })
}

function hash (text: string): string {
  return createHash('sha256').update(text).digest().toString('base64url', 0, 16)
}

function tagOf (store: RedisStore, userId: string): string {
  return store.sessionIdFor(userId).slice(0, 8)
}

/** A bucket of one entry: its length (a packed count), then the entry. */
function bucketOf (entry: Buffer): Buffer {
  const length = entry.length < 255 ? Buffer.of(entry.length) : Buffer.of(255, 0, 0, 0, 0)
  if (entry.length >= 255) length.writeUInt32BE(entry.length, 1)
  return Buffer.concat([length, entry])
}

/** The tag of a bucket the random records are entries of: some of their ids are tagged with it. */
const ARBITRARY_TAG = 'Tag-_t09'

/** Any record the contract allows (well-formed strings without U+0000, finite numbers). */
function arbitrarySession (): fc.Arbitrary<SessionRecord> {
  const text = fc.string({ unit: 'grapheme', maxLength: 300 }).filter((value) => !value.includes('\u0000'))
  // Times near a ms time (offsets that fit 32 bits, or just do not), and any number at all.
  const near = fc.integer({ min: -5, max: 2 ** 32 + 5 }).map((offset) => Date.UTC(2030, 0, 1) + offset)
  const time = fc.oneof(near, near, fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.constantFrom(0, -0, 2 ** 48 - 1, 2 ** 48, -1))
  const base64url = (length: number): fc.Arbitrary<string> => fc.uint8Array({ minLength: length, maxLength: length }).map((raw) => Buffer.from(raw).toString('base64url'))
  const id = fc.oneof(fc.string({ minLength: 1, maxLength: 64 }), base64url(16).map((tail) => ARBITRARY_TAG + tail),
    base64url(16).map((tail) => 'other-tg' + tail), fc.string({ minLength: 22, maxLength: 22 }).map((tail) => ARBITRARY_TAG + tail))
  const tokenHash = fc.oneof(fc.uint8Array({ minLength: 32, maxLength: 32 }).map((raw) => Buffer.from(raw).toString('base64url')), text)
  const ip = fc.oneof(fc.ipV4(), fc.ipV4Extended(), fc.ipV6(), text)
  return fc.record({
    id,
    userId: text,
    claims: fc.dictionary(text, fc.jsonValue()).map((value) => JSON.parse(JSON.stringify(value)) as Record<string, unknown>),
    createdAt: time,
    lastUsedAt: time,
    expiresAt: time,
    absoluteExpiresAt: time,
    tokenHash,
    previousTokenHash: fc.option(tokenHash),
    rotatedAt: fc.option(time),
    graceUses: fc.integer({ min: 0, max: 0xFFFFFFFF }),
    userAgent: fc.option(text),
    ip: fc.option(ip),
    firstUserAgent: fc.option(text),
    firstIp: fc.option(ip),
    authentication: fc.record({ time, acr: text, amr: fc.array(text) }, { requiredKeys: ['time'] }),
    claimsVersion: fc.integer({ min: 0, max: 0xFFFFFFFF }),
    // The common session: its first client the current one, authenticated at login.
    sameFirst: fc.boolean(),
    atLogin: fc.boolean()
  }).map(({ sameFirst, atLogin, ...record }) => ({
    ...record,
    authentication: { ...record.authentication }, // fast-check's records have no prototype
    ...(sameFirst ? { firstUserAgent: record.userAgent, firstIp: record.ip } : {}),
    ...(atLogin ? { authentication: { time: record.createdAt } } : {})
  }))
}

/** Sessions in id order, for lists whose order is decided by equal creation times. */
function byId (sessions: SessionRecord[]): SessionRecord[] {
  return [...sessions].sort((a, b) => a.id < b.id ? -1 : 1)
}
